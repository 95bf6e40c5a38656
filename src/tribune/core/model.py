"""Tribune's domain model: plain, immutable values with no I/O.

People (users, groups), agents with entitlements, tools with risk facts and extractors, tasks
with a declared intent (scope) and session state, decisions and audit records, agent keys,
leases, sealed secrets and approval tickets.

Over 600 lines on purpose: one module is the one vocabulary every layer imports, and the store
codec round-trips every dataclass in it (tests/store/test_codec.py checks each is covered); the
sections below keep each kind of value together.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from tribune.errors import InvalidInput

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
TRUST_DOMAIN_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{0,253}$")


def check_name(kind: str, value: str) -> str:
    """Return ``value`` if it is a valid name (1-128 of ``[A-Za-z0-9_.-]``), else raise."""
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise InvalidInput(
            f"invalid {kind} name `{value}`",
            hint="use 1-128 characters of letters, digits, `_`, `.` and `-`",
        )
    return value


def agent_spiffe_id(trust_domain: str, name: str) -> str:
    """The workload id of agent ``name``: ``spiffe://<trust-domain>/agent/<name>``."""
    if not TRUST_DOMAIN_RE.match(trust_domain):
        raise InvalidInput(f"invalid trust domain `{trust_domain}`")
    return f"spiffe://{trust_domain}/agent/{check_name('agent', name)}"


class Effect(StrEnum):
    """What a decision says: the call may run, may not, or needs human approval first."""

    ALLOW = "allow"
    DENY = "deny"
    APPROVAL_REQUIRED = "approval_required"


class AgentStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    RETIRED = "retired"


class TaskState(StrEnum):
    ACTIVE = "active"
    ENDED = "ended"


class ResultStatus(StrEnum):
    OK = "ok"
    ERROR = "error"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"


class RecordKind(StrEnum):
    INTENT = "intent"
    DECISION = "decision"
    RESULT = "result"
    EVENT = "event"  # administrative: task started/ended, policy activated, agent changed


class TargetClass(StrEnum):
    INTERNAL = "internal"
    NAMED = "named"
    KNOWN = "known"
    UNKNOWN = "unknown"


TARGET_KINDS = frozenset({"email", "person", "account", "iban", "url", "host"})
DATA_LEVELS = {"public": 0, "internal": 1, "confidential": 2, "restricted": 3}


# --------------------------------------------------------------------------- people


@dataclass(frozen=True, slots=True)
class User:
    name: str
    display_name: str = ""
    email: str = ""
    groups: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Group:
    name: str
    description: str = ""


@dataclass(frozen=True, slots=True)
class OwnerRef:
    """An agent's accountable owner: a user or a group. Text form ``user:alice`` / ``group:sre``."""

    kind: str  # "user" | "group"
    name: str

    @classmethod
    def parse(cls, text: str) -> OwnerRef:
        kind, sep, name = text.partition(":")
        if not sep or kind not in ("user", "group"):
            raise InvalidInput(f"invalid owner `{text}`", hint="write `user:NAME` or `group:NAME`")
        return cls(kind, check_name(kind, name))

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


class Role(StrEnum):
    """What an API key may do in Tribune's own API. Users hold the first three; agents only
    ``agent``; downstream services only ``resource``."""

    ADMIN = "admin"
    APPROVER = "approver"
    AUDITOR = "auditor"
    AGENT = "agent"
    RESOURCE = "resource"  # a downstream service (``service:<name>``): introspects tokens only


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A credential for Tribune's own API, held by a user or an agent.

    The token handed out once is ``trb_<id>_<secret>``; only a SHA-256 of the secret is kept.
    ``principal`` is ``user:<name>`` or ``agent:<spiffe id>``.
    """

    id: str
    principal: str
    role: Role
    secret_hash: str = field(repr=False)  # hex SHA-256 of the secret part of the token
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    note: str = ""

    def active(self, now: datetime) -> bool:
        """Not revoked, and not expired at ``now``."""
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


# --------------------------------------------------------------------------- agents and tools


@dataclass(frozen=True, slots=True)
class Limits:
    """Numeric ceilings. ``None`` means no limit at this level."""

    max_amount: int | None = None  # total amount per call, minor units (cents)
    max_count: int | None = None  # items affected per call
    max_calls: int | None = None  # calls per task

    def __post_init__(self) -> None:
        for name in ("max_amount", "max_count", "max_calls"):
            value = getattr(self, name)
            if value is not None and (type(value) is not int or value < 0):
                raise InvalidInput(f"`{name}` must be a whole number of at least 0")

    def inherit(self, outer: Limits) -> Limits:
        """These limits, with each one left unset taken from ``outer``."""
        return Limits(
            self.max_amount if self.max_amount is not None else outer.max_amount,
            self.max_count if self.max_count is not None else outer.max_count,
            self.max_calls if self.max_calls is not None else outer.max_calls,
        )

    def within(self, outer: Limits) -> bool:
        """True if every limit here is at most the matching limit of ``outer``."""
        for mine, theirs in (
            (self.max_amount, outer.max_amount),
            (self.max_count, outer.max_count),
            (self.max_calls, outer.max_calls),
        ):
            if theirs is not None and (mine is None or mine > theirs):
                return False
        return True


@dataclass(frozen=True, slots=True)
class Entitlements:
    """The most an agent may ever be granted. A task's scope must lie within these."""

    tools: frozenset[str] = frozenset()
    tool_groups: frozenset[str] = frozenset()
    environments: frozenset[str] = frozenset()
    limits: Limits = field(default_factory=Limits)
    open_scope: bool = False  # may start open-scope tasks


@dataclass(frozen=True, slots=True)
class Agent:
    id: str  # spiffe://<trust-domain>/agent/<name>
    name: str
    owner: OwnerRef
    purpose: str
    environment: str
    entitlements: Entitlements
    status: AgentStatus
    created_at: datetime


@dataclass(frozen=True, slots=True)
class RiskFacts:
    """What a tool can do. MCP annotations are hints; configuration may override them.

    The defaults are MCP's: an unannotated tool is treated as destructive and open-world.
    """

    read_only: bool = False
    destructive: bool = True
    idempotent: bool = False
    open_world: bool = True
    untrusted_output: bool = False  # its results taint the task

    def reversible(self) -> bool:
        return not self.read_only and not self.destructive

    def to_dict(self) -> dict[str, bool]:
        return {
            "read_only": self.read_only,
            "destructive": self.destructive,
            "idempotent": self.idempotent,
            "open_world": self.open_world,
            "untrusted_output": self.untrusted_output,
        }


@dataclass(frozen=True, slots=True)
class ExtractorSpec:
    """How to read one typed fact from a tool's arguments.

    ``pointer`` is a JSON pointer; a ``*`` segment walks every item of a list. ``aggregate``:
    ``each`` (every value found), ``sum`` (amounts) or ``count`` (how many values).
    ``target`` marks values that are targets (recipients, payees, hosts) to be classified;
    left unset, e-mail, person, account, IBAN, URL and host values are targets.
    """

    kind: str  # email|person|account|iban|url|host|amount|count|object_id|secret|text
    pointer: str
    role: str = ""
    target: bool | None = None  # None: by kind (identities and hosts are targets)
    aggregate: str = "each"
    required: bool = False
    literal: str = ""  # for kind=secret: the task literal this value must equal

    @property
    def is_target(self) -> bool:
        if self.target is not None:
            return self.target
        return self.kind in TARGET_KINDS


@dataclass(frozen=True, slots=True)
class Tool:
    """A tool agents call: its risk facts, groups, argument extractors and what the audit log
    keeps of its arguments."""

    name: str
    description: str = ""
    input_schema: dict[str, Any] = field(default_factory=dict)
    risk: RiskFacts = field(default_factory=RiskFacts)
    groups: tuple[str, ...] = ()
    extractors: tuple[ExtractorSpec, ...] = ()
    sensitive_args: tuple[str, ...] = ()  # JSON pointers stored as digests in the audit log
    data_classes: tuple[str, ...] = ()  # classification of the data the tool touches


# --------------------------------------------------------------------------- tasks


@dataclass(frozen=True, slots=True)
class Scope:
    """A task's declared intent: purpose plus what it may reach."""

    purpose: str
    tools: frozenset[str] = frozenset()
    tool_groups: frozenset[str] = frozenset()
    targets: frozenset[str] = frozenset()  # normalised: emails, hosts, accounts, resources
    literal_digests: dict[str, str] = field(default_factory=dict)  # name -> sha256 hex
    environment: str | None = None
    limits: Limits = field(default_factory=Limits)
    open_scope: bool = False


@dataclass(frozen=True, slots=True)
class SessionState:
    """What a task has done so far: taint, data classes read, calls counted."""

    tainted: bool = False
    data_read: frozenset[str] = frozenset()
    calls: int = 0

    def merged(self, *, tainted: bool, data_read: frozenset[str], calls: int) -> SessionState:
        """This state with one call's effects folded in: taint only turns on, data classes
        accumulate, calls add up."""
        return SessionState(self.tainted or tainted, self.data_read | data_read, self.calls + calls)

    def reserved(self, limit: int) -> SessionState | None:
        """One more call counted, or None when ``limit`` calls were already made."""
        if self.calls >= limit:
            return None
        return SessionState(self.tainted, self.data_read, self.calls + 1)


@dataclass(frozen=True, slots=True)
class Task:
    id: str
    agent_id: str
    scope: Scope
    state: TaskState
    created_at: datetime
    expires_at: datetime
    ended_at: datetime | None = None
    parent_id: str | None = None
    root_id: str = ""
    depth: int = 0
    session: SessionState = field(default_factory=SessionState)

    def is_active(self, now: datetime) -> bool:
        return self.state is TaskState.ACTIVE and now < self.expires_at


# --------------------------------------------------------------------------- directory


@dataclass(frozen=True, slots=True)
class Directory:
    """The organisation as policy sees it. All entries are normalised (lowercase)."""

    domains: frozenset[str] = frozenset()  # e-mail / web domains the organisation owns
    members: frozenset[str] = frozenset()  # e-mail addresses of people in the organisation
    accounts: frozenset[str] = frozenset()  # own bank accounts (IBANs) and account ids
    hosts: frozenset[str] = frozenset()  # own hosts
    counterparties: frozenset[str] = frozenset()  # known outside emails, domains, accounts, hosts


# --------------------------------------------------------------------------- decisions


@dataclass(frozen=True, slots=True)
class ApprovalRequirement:
    """Who must approve before an approval-required call may run: ``quorum`` distinct people
    from the ``approvers`` groups (any approver when empty), the agent's owner only if
    ``owner_may_approve``."""

    quorum: int
    approvers: tuple[str, ...]  # group names; empty means any approver
    owner_may_approve: bool = False


@dataclass(frozen=True, slots=True)
class DecisionError:
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Decision:
    """A decision is a value: the effect, why (determining policy ids), and what went wrong."""

    effect: Effect
    tool: str
    policy_ids: tuple[str, ...] = ()
    policy_version: str | None = None
    errors: tuple[DecisionError, ...] = ()
    approval: ApprovalRequirement | None = None
    reasons: tuple[str, ...] = ()  # the determining policies' `@reason` texts, in id order

    @property
    def allowed(self) -> bool:
        return self.effect is Effect.ALLOW

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "effect": self.effect.value,
            "tool": self.tool,
            "policy_ids": list(self.policy_ids),
            "policy_version": self.policy_version,
            "errors": [{"code": e.code, "message": e.message} for e in self.errors],
            "reasons": list(self.reasons),
        }
        if self.approval is not None:
            out["approval"] = {
                "quorum": self.approval.quorum,
                "approvers": list(self.approval.approvers),
                "owner_may_approve": self.approval.owner_may_approve,
            }
        return out


def deny(tool: str, code: str, message: str, policy_version: str | None = None) -> Decision:
    """A fail-closed denial carrying one error."""
    return Decision(Effect.DENY, tool, (), policy_version, (DecisionError(code, message),), None)


def decision_from_dict(data: Mapping[str, Any]) -> Decision:
    """The inverse of ``Decision.to_dict`` (for clients reading a decision off the wire)."""
    approval = data.get("approval")
    return Decision(
        effect=Effect(data["effect"]),
        tool=str(data["tool"]),
        policy_ids=tuple(data.get("policy_ids") or ()),
        policy_version=data.get("policy_version"),
        errors=tuple(DecisionError(e["code"], e["message"]) for e in data.get("errors") or ()),
        approval=ApprovalRequirement(
            quorum=int(approval["quorum"]),
            approvers=tuple(approval.get("approvers") or ()),
            owner_may_approve=bool(approval.get("owner_may_approve", False)),
        )
        if approval
        else None,
        reasons=tuple(data.get("reasons") or ()),
    )


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of deciding one call: the action's id, its decision and what it was bound
    to. ``finish`` takes it back to record the result."""

    action_id: str
    action_digest: str
    decision: Decision
    task_id: str
    agent_id: str | None
    tool: str
    targets: tuple[str, ...] = ()  # unknown targets: learnable once a human approved the call
    approvals: int = 0
    reserved: bool = False  # counted against the task's max_calls when it was allowed
    ticket_id: str | None = None  # the approval ticket an approval-required call waits on

    @property
    def allowed(self) -> bool:
        return self.decision.allowed


# --------------------------------------------------------------------------- audit


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """A record to append: what ``AuditLog.append_many`` takes."""

    kind: RecordKind
    ts: datetime
    body: dict[str, Any]
    action_id: str | None = None
    task_id: str | None = None
    agent_id: str | None = None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One link of the hash chain. ``body`` is the canonical (RFC 8785) JSON text hashed."""

    seq: int
    kind: RecordKind
    ts: datetime
    action_id: str | None
    task_id: str | None
    agent_id: str | None
    body: str
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement that the chain had ``hash`` at ``seq``."""

    seq: int
    hash: str
    ts: datetime
    key_id: str
    signature: str  # base64url Ed25519 over the canonical checkpoint statement


@dataclass(frozen=True, slots=True)
class PolicyVersion:
    id: str
    created_at: datetime
    files: dict[str, str]  # relative path -> text (policies, schema, tests)
    digest: str  # sha256 over the canonical files map
    active: bool = False
    note: str = ""


# --------------------------------------------------------------------------- identity and leases


@dataclass(frozen=True, slots=True)
class AgentKey:
    """A public key an agent signs its assertions with. Only the public half is ever kept."""

    agent_id: str
    kid: str  # RFC 7638 thumbprint of ``jwk``
    jwk: dict[str, Any]  # the public key as a JWK (OKP/Ed25519, EC or RSA)
    created_at: datetime
    revoked_at: datetime | None = None
    source: str = "generated"  # generated (Tribune made the pair) | given (the agent's own)

    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True, slots=True)
class TokenState:
    """What a token check needs from the store, read at once: the task's agent, whether the
    task is active, the agent's status and whether the token id is revoked."""

    agent_id: str
    task_state: TaskState
    task_expires_at: datetime
    agent_status: AgentStatus | None
    revoked: bool

    def task_active(self, now: datetime) -> bool:
        return self.task_state is TaskState.ACTIVE and now < self.task_expires_at


class LeaseState(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class Lease:
    """A credential minted for one task (or one call), by one backend, that dies by itself.

    ``handle`` names what the backend made (a token's jti, a role name, a secret's name), never
    the credential itself. ``max_expires_at`` bounds every renewal.
    """

    id: str
    task_id: str
    agent_id: str
    backend: str
    scope: dict[str, Any]
    issued_at: datetime
    expires_at: datetime
    max_expires_at: datetime
    state: LeaseState = LeaseState.ACTIVE
    action_id: str | None = None
    handle: str = ""
    renewals: int = 0
    ended_at: datetime | None = None
    end_reason: str = ""  # why it was revoked (task_ended, kill_switch, requested) or "expired"

    def live(self, now: datetime) -> bool:
        return self.state is LeaseState.ACTIVE and now < self.expires_at


@dataclass(frozen=True, slots=True)
class SealedSecret:
    """A long-lived secret, kept only sealed (AES-GCM); opened at the enforcement point."""

    name: str
    sealed: str  # base64url of nonce || ciphertext || tag, bound to ``name`` as associated data
    key_id: str  # which sealing key
    updated_at: datetime
    note: str = ""


# --------------------------------------------------------------------------- approvals


class TicketState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"  # quorum reached; not used yet
    DENIED = "denied"
    EXPIRED = "expired"
    CONSUMED = "consumed"  # authorised its one call


@dataclass(frozen=True, slots=True)
class Vote:
    """One person's answer on a ticket, as authenticated (never a claimed name)."""

    user: str
    approve: bool
    at: datetime
    reason: str = ""
    via: str = "api"  # api | cli | console
    key_id: str = ""  # the credential it came with


@dataclass(frozen=True, slots=True)
class ApprovalTicket:
    """A request for humans to approve one exact action: bound to the action's digest, with
    the policy's quorum and approver groups, an expiry, and single use."""

    id: str
    action_id: str  # the call that asked
    action_digest: str  # agent (via task), task, tool, canonical arguments, environment
    task_id: str
    agent_id: str
    owner: str  # the agent's owner, `user:NAME` or `group:NAME`
    tool: str
    requirement: ApprovalRequirement
    reasons: tuple[str, ...]
    created_at: datetime
    expires_at: datetime
    shown: dict[str, Any] = field(default_factory=dict)  # what approvers see: recorded args etc.
    state: TicketState = TicketState.PENDING
    resolved_at: datetime | None = None
    consumed_by: str | None = None  # the action id that used it
    votes: tuple[Vote, ...] = ()

    def open(self, now: datetime) -> bool:
        return self.state is TicketState.PENDING and now < self.expires_at
