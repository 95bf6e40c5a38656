"""Request and response bodies of the HTTP API (pydantic; they are the OpenAPI document).

Requests reject unknown fields and bound every size. Responses are built from the domain model
by the ``*_out`` functions in the route modules, never by serialising internals wholesale.

Over 600 lines on purpose: these classes together are the API's published schema, kept in one
place so the OpenAPI document, the access-control matrix and schemathesis read one source.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
PathName = Annotated[str, Path(min_length=1, max_length=128, pattern=NAME_PATTERN)]
Name = Annotated[str, Field(min_length=1, max_length=128, pattern=NAME_PATTERN)]
AgentRef = Annotated[str, Field(min_length=1, max_length=512)]
Text = Annotated[str, Field(max_length=4096)]
Id = Annotated[str, Field(min_length=1, max_length=128)]
Count = Annotated[int, Field(ge=0, le=2**53)]
Names = Annotated[list[Name], Field(max_length=1000)]
Pointer = Annotated[str, Field(max_length=512)]


class Strict(BaseModel):
    """Request bodies: unknown fields rejected, no coercion (`0` is not `false`)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Problem(BaseModel):
    """Every error: a stable code, a message for people, sometimes a hint."""

    code: str
    message: str
    hint: str | None = None
    problems: list[str] | None = Field(None, description="each problem found (policy errors)")


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "description": description}
    for status, description in (
        (400, "invalid input (a value the domain refuses)"),
        (401, "no valid API key"),
        (403, "the key's role or agent may not do this"),
        (404, "not found (or not the calling agent's)"),
        (409, "conflicts with stored state"),
        (413, "request body over 2 MiB"),
        (422, "the request does not match this schema"),
        (503, "the store is unavailable: nothing was decided or changed"),
    )
}


# ----------------------------------------------------------------------------- people, agents


class LimitsIn(Strict):
    max_amount: Count | None = None
    max_count: Count | None = None
    max_calls: Count | None = None


class LimitsOut(BaseModel):
    max_amount: int | None
    max_count: int | None
    max_calls: int | None


class EntitlementsIn(Strict):
    tools: Names = []
    tool_groups: Names = []
    environments: Names = []
    limits: LimitsIn = LimitsIn()
    open_scope: bool = False


class EntitlementsOut(BaseModel):
    tools: list[str]
    tool_groups: list[str]
    environments: list[str]
    limits: LimitsOut
    open_scope: bool


class AgentIn(Strict):
    name: Name
    owner: Annotated[
        str,
        Field(max_length=140, pattern=r"^(user|group):[A-Za-z0-9][A-Za-z0-9_.\-]*$"),
    ] = Field(description="user:NAME or group:NAME")
    purpose: Annotated[str, Field(min_length=1, max_length=4096)]
    environment: Name
    entitlements: EntitlementsIn = EntitlementsIn()
    key: AgentKeyIn | None = Field(None, description="a key pair to create, or the agent's own")


class AgentKeyIn(Strict):
    """Exactly one: `generate` (Tribune makes an Ed25519 pair and hands the private key over
    once), the agent's own `public_key` (PEM text or a JWK) or a `jwks` document."""

    generate: bool = False
    public_key: Annotated[str, Field(max_length=16_384)] | dict[str, Any] | None = None
    jwks: dict[str, Any] | None = None


class AgentKeyOut(BaseModel):
    kid: str
    agent: str
    alg: str | None
    source: Literal["generated", "given"]
    status: Literal["active", "revoked"]
    created_at: str
    revoked_at: str | None


class AgentKeysOut(BaseModel):
    keys: list[AgentKeyOut]
    private_key: str | None = Field(
        None, description="PKCS#8 PEM of a generated key: shown once, Tribune keeps no copy"
    )


class AgentOut(BaseModel):
    id: str
    name: str
    owner: str
    purpose: str
    environment: str
    entitlements: EntitlementsOut
    status: Literal["active", "suspended", "retired"]
    created_at: str


class AgentRegistered(AgentOut):
    keys: list[AgentKeyOut] = []
    private_key: str | None = Field(None, description="shown once, when a key was generated")


class AgentStatusIn(Strict):
    status: Literal["active", "suspended", "retired"]


class UserIn(Strict):
    name: Name
    email: Annotated[str, Field(max_length=320)] = ""
    display_name: Annotated[str, Field(max_length=256)] = ""
    groups: Names = []


class UserOut(BaseModel):
    name: str
    email: str
    display_name: str
    groups: list[str]


class GroupIn(Strict):
    name: Name
    description: Annotated[str, Field(max_length=1024)] = ""


class GroupOut(BaseModel):
    name: str
    description: str


# ----------------------------------------------------------------------------- tools


class RiskIn(Strict):
    read_only: bool = False
    destructive: bool = True
    idempotent: bool = False
    open_world: bool = True
    untrusted_output: bool = False


class RiskOut(BaseModel):
    read_only: bool
    destructive: bool
    idempotent: bool
    open_world: bool
    untrusted_output: bool


ExtractorKind = Literal[
    "email", "person", "account", "iban", "url", "host", "amount", "count", "object_id",
    "secret", "text",
]  # fmt: skip


class ExtractorIn(Strict):
    kind: ExtractorKind
    pointer: Annotated[str, Field(max_length=512)]
    role: Annotated[str, Field(max_length=64)] = ""
    target: bool | None = None
    aggregate: Literal["each", "sum", "count"] = "each"
    required: bool = False
    literal: Annotated[str, Field(max_length=128)] = ""


class ExtractorOut(BaseModel):
    kind: str
    pointer: str
    role: str
    target: bool | None
    aggregate: str
    required: bool
    literal: str


class ToolIn(Strict):
    description: Text = ""
    input_schema: dict[str, Any] = {}
    risk: RiskIn = RiskIn()
    groups: Names = []
    extractors: Annotated[list[ExtractorIn], Field(max_length=100)] = []
    sensitive_args: Annotated[
        list[Annotated[str, Field(max_length=512)]], Field(max_length=100)
    ] = []
    data_classes: Names = []


class ToolOut(BaseModel):
    name: str
    description: str
    input_schema: dict[str, Any]
    risk: RiskOut
    groups: list[str]
    extractors: list[ExtractorOut]
    sensitive_args: list[str]
    data_classes: list[str]


# ----------------------------------------------------------------------------- tasks


class TaskIn(Strict):
    agent: AgentRef | None = Field(
        None, description="agent name or id; an agent's own key may leave it out"
    )
    purpose: Annotated[str, Field(min_length=1, max_length=4096)]
    tools: Names = []
    tool_groups: Names = []
    targets: Annotated[list[Annotated[str, Field(max_length=512)]], Field(max_length=1000)] = []
    literals: Annotated[
        dict[Name, Annotated[str, Field(max_length=4096)]], Field(max_length=100)
    ] = {}
    environment: Name | None = None
    limits: LimitsIn = LimitsIn()
    open_scope: bool = False
    ttl: Annotated[int, Field(ge=1, le=10 * 365 * 86400)] | None = None


class ScopeOut(BaseModel):
    purpose: str
    tools: list[str]
    tool_groups: list[str]
    targets: list[str]
    literals: list[str] = Field(description="names only: values are kept as keyed digests")
    environment: str | None
    limits: LimitsOut
    open_scope: bool


class SessionOut(BaseModel):
    tainted: bool
    data_read: list[str]
    calls: int


class TaskOut(BaseModel):
    id: str
    agent: str
    state: Literal["active", "ended"]
    active: bool
    scope: ScopeOut
    session: SessionOut
    created_at: str
    expires_at: str
    ended_at: str | None


class TaskStarted(TaskOut):
    """A task just started, with its task token (a JWT, EdDSA; verify it with the JWKS)."""

    token: str


# ----------------------------------------------------------------------------- decisions

JsonObject = dict[str, Any]


class DecisionIn(Strict):
    task: Id
    tool: Name
    arguments: JsonObject = {}
    environment: Name | None = None
    expects_result: bool = Field(
        True,
        description="false for a check: nothing will run and no result is expected",
    )
    ticket: Id | None = Field(
        None, description="an approved ticket for exactly this call (found by itself if left out)"
    )
    wait: int = Field(
        0,
        ge=0,
        le=3600,
        description="seconds to hold the answer while approval is pending (capped by the "
        "server's approvals.max_wait); 0 answers at once with the ticket",
    )


class ApprovalOut(BaseModel):
    quorum: int
    approvers: list[str]
    owner_may_approve: bool


class DecisionErrorOut(BaseModel):
    code: str
    message: str


class DecisionOut(BaseModel):
    effect: Literal["allow", "deny", "approval_required"]
    tool: str
    policy_ids: list[str]
    policy_version: str | None
    errors: list[DecisionErrorOut]
    reasons: list[str]
    approval: ApprovalOut | None = None


class TicketBrief(BaseModel):
    id: str
    state: Literal["pending", "approved", "denied", "expired", "consumed"]
    quorum: int
    approvals: int
    expires_at: str


class VerdictOut(BaseModel):
    action_id: str
    action_digest: str
    allowed: bool
    decision: DecisionOut
    task: str
    agent: str | None
    tool: str
    ticket: TicketBrief | None = Field(
        None, description="for approval_required: the ticket approvers answer"
    )


class VoteOut(BaseModel):
    user: str
    approve: bool
    at: str
    reason: str
    via: str


class TicketOut(BaseModel):
    id: str
    state: Literal["pending", "approved", "denied", "expired", "consumed"]
    action_id: str
    action_digest: str
    task: str
    agent: str
    owner: str
    tool: str
    quorum: int
    approvers: list[str]
    owner_may_approve: bool
    approvals: int
    reasons: list[str]
    shown: dict[str, Any]
    created_at: str
    expires_at: str
    resolved_at: str | None
    consumed_by: str | None
    votes: list[VoteOut]


class VoteIn(Strict):
    reason: Annotated[str, Field(max_length=1000)] = ""


class ResultIn(Strict):
    status: Literal["ok", "error", "cancelled"]
    output: Any = Field(None, description="the tool's output (digested and classified, not kept)")
    duration_ms: Annotated[float, Field(ge=0, le=1e12)] = 0.0
    error: Annotated[str, Field(max_length=500)] | None = Field(
        None, description="what failed (an exception type), never data"
    )


class ResultOut(BaseModel):
    action_id: str
    status: str
    seq: int


# ----------------------------------------------------------------------------- audit

ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def _iso_only(value: Any) -> Any:
    """A time in a query must be ISO 8601 text, as documented: not a Unix number."""
    if isinstance(value, str) and not ISO_DATE.match(value):
        raise ValueError("expected an ISO 8601 date-time such as 2026-11-28T12:00:00Z")
    return value


IsoTime = Annotated[datetime, BeforeValidator(_iso_only)]


class RecordOut(BaseModel):
    seq: int
    kind: str
    ts: str
    action_id: str | None
    task_id: str | None
    agent_id: str | None
    body: dict[str, Any]
    hash: str
    prev_hash: str


class RecordPage(BaseModel):
    records: list[RecordOut]
    next_after: int | None = Field(description="pass as `after` for the next page; null at the end")


class VerifyOut(BaseModel):
    ok: bool
    checked: int = Field(description="records found good")
    checkpoints_verified: int
    first_bad_seq: int | None
    problem: str | None = Field(description="what is wrong, as a stable code")
    message: str
    last_seq: int


# ----------------------------------------------------------------------------- policies


PolicyFiles = Annotated[
    dict[
        Annotated[str, Field(min_length=1, max_length=256)],
        Annotated[str, Field(max_length=1 << 20)],
    ],
    Field(min_length=1, max_length=500),
]


class PolicyFilesIn(Strict):
    files: PolicyFiles = Field(description="relative path -> text: .cedar, .cedarschema, tests")


class PolicyVersionIn(PolicyFilesIn):
    note: Annotated[str, Field(max_length=1024)] = ""
    allow_untested: bool = False


class PolicyVersionOut(BaseModel):
    id: str
    digest: str
    created_at: str
    note: str
    active: bool
    files: list[str]


class PolicyVersionFull(PolicyVersionOut):
    texts: dict[str, str]


class PolicyCheckOut(BaseModel):
    ok: bool = Field(description="compiles against the schema and every policy test passes")
    policies: int
    tests: int
    failures: list[str] = Field(description="`file:line: case: what differed` per failed test")


# ----------------------------------------------------------------------------- keys


class KeyIn(Strict):
    principal: Annotated[str, Field(max_length=600, pattern=r"^(user|agent|service):[^\s]+$")] = (
        Field(description="user:NAME, agent:NAME or agent:SPIFFE-ID, or service:NAME")
    )
    role: Literal["admin", "approver", "auditor", "agent", "resource"]
    note: Annotated[str, Field(max_length=256)] = ""
    ttl: Annotated[int, Field(ge=60, le=10 * 365 * 86400)] | None = None


class KeyOut(BaseModel):
    id: str
    principal: str
    role: str
    created_at: str
    expires_at: str | None
    revoked_at: str | None
    note: str


class NewKeyOut(KeyOut):
    token: str = Field(description="shown once: only a digest of it is kept")


# ----------------------------------------------------------------------------- AuthZEN

PropertyBag = dict[str, Any]


class AzSubject(Strict):
    type: Annotated[str, Field(max_length=64)]
    id: Annotated[str, Field(min_length=1, max_length=512)]
    properties: PropertyBag = {}


class AzAction(Strict):
    name: Annotated[str, Field(min_length=1, max_length=128)]
    properties: PropertyBag = {}


class AzResource(Strict):
    type: Annotated[str, Field(max_length=64)]
    id: Annotated[str, Field(min_length=1, max_length=128)]
    properties: PropertyBag = {}


class AzEvaluationIn(BaseModel):
    """AuthZEN 1.0 §6. Tribune reads ``context.task`` (required), ``context.environment``,
    ``context.expects_result`` and the call's arguments from ``resource.properties.arguments``."""

    model_config = ConfigDict(extra="allow")
    subject: AzSubject
    action: AzAction
    resource: AzResource
    context: PropertyBag = {}


class AzPartial(Strict):
    subject: AzSubject | None = None
    action: AzAction | None = None
    resource: AzResource | None = None
    context: PropertyBag | None = None


class AzOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    evaluations_semantic: Literal["execute_all", "deny_on_first_deny", "permit_on_first_permit"] = (
        "execute_all"
    )


class AzEvaluationsIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    subject: AzSubject | None = None
    action: AzAction | None = None
    resource: AzResource | None = None
    context: PropertyBag | None = None
    evaluations: Annotated[list[AzPartial], Field(max_length=100)] = []
    options: AzOptions = AzOptions()


class AzEvaluationOut(BaseModel):
    decision: bool
    context: PropertyBag = {}


class AzEvaluationsOut(BaseModel):
    evaluations: list[AzEvaluationOut]


# ----------------------------------------------------------------------------- system


class Jwk(BaseModel):
    kty: Literal["OKP"]
    crv: Literal["Ed25519"]
    x: str
    kid: str
    use: Literal["sig"]
    alg: Literal["EdDSA"]


class Jwks(BaseModel):
    """The keys that verify task tokens (RFC 7517)."""

    keys: list[Jwk]


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = {}
    version: str


# ----------------------------------------------------------------------------- leases, kill switch


class LeaseIn(Strict):
    source: Name = Field(description="a credential source from the configuration")
    action: Id | None = Field(None, description="an allowed call this credential is for")
    ttl: int | None = Field(None, ge=1, le=86_400, description="seconds; default: the source's")


class LeaseRenewIn(Strict):
    ttl: int | None = Field(None, ge=1, le=86_400)


class LeaseRevokeIn(Strict):
    reason: Literal["requested", "call_ended"] = "requested"


class LeaseOut(BaseModel):
    id: str
    task: str
    agent: str
    backend: str
    source: str | None
    action: str | None
    handle: str
    state: Literal["active", "revoked", "expired"]
    issued_at: datetime
    expires_at: datetime
    max_expires_at: datetime
    renewals: int
    ended_at: datetime | None
    end_reason: str | None


class LeaseIssued(LeaseOut):
    credential: dict[str, Any] = Field(description="shown once; Tribune keeps no copy")


class RevocationIn(Strict):
    task: Id | None = None
    agent: AgentRef | None = None
    owner: Annotated[str, Field(max_length=260)] | None = None
    all: bool = False
    suspend: bool = Field(False, description="also suspend the agents (not with `task`)")


class RevocationOut(BaseModel):
    tasks_ended: int
    leases_revoked: int
    leases_failed: int
    agents_suspended: int
