"""Ports: the interfaces services depend on. Adapters implement them; services never import an
adapter. Time and randomness enter only through ``Clock`` and ``Ids``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Protocol

from tribune.core.model import (
    Agent,
    AgentKey,
    AgentStatus,
    ApiKey,
    ApprovalTicket,
    AuditEntry,
    AuditRecord,
    Checkpoint,
    Group,
    Lease,
    LeaseState,
    PolicyVersion,
    RecordKind,
    SealedSecret,
    SessionState,
    Task,
    TicketState,
    TokenState,
    Tool,
    User,
    Vote,
)


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class Ids(Protocol):
    def new(self) -> str:
        """A fresh, unique, time-ordered id."""
        ...


class Signer(Protocol):
    key_id: str

    def sign(self, message: bytes) -> bytes: ...


class Verifier(Protocol):
    def verify(self, key_id: str, message: bytes, signature: bytes) -> bool: ...


class Registry(Protocol):
    """People, agents and tools."""

    def put_user(self, user: User) -> None: ...
    def get_user(self, name: str) -> User | None: ...
    def list_users(self) -> list[User]: ...
    def put_group(self, group: Group) -> None: ...
    def get_group(self, name: str) -> Group | None: ...
    def list_groups(self) -> list[Group]: ...

    def add_agent(self, agent: Agent) -> None:
        """Insert a new agent; raise ``Conflict`` if the id exists."""
        ...

    def get_agent(self, agent_id: str) -> Agent | None: ...
    def list_agents(self) -> list[Agent]: ...
    def set_agent_status(self, agent_id: str, status: AgentStatus) -> None: ...

    def put_tool(self, tool: Tool) -> None:
        """Insert or replace a tool by name."""
        ...

    def get_tool(self, name: str) -> Tool | None: ...
    def list_tools(self) -> list[Tool]: ...


class ApiKeys(Protocol):
    """Credentials for Tribune's own API. Only a hash of each secret is stored."""

    def add_api_key(self, key: ApiKey) -> None:
        """Insert a new key; raise ``Conflict`` if the id exists."""
        ...

    def get_api_key(self, key_id: str) -> ApiKey | None: ...

    def list_api_keys(self) -> list[ApiKey]:
        """Keys, oldest first (then by id)."""
        ...

    def revoke_api_key(self, key_id: str, at: datetime) -> bool:
        """Mark the key revoked at ``at``; True only when it was active then (not revoked, not
        expired), False (and nothing changed) otherwise or when there is no such key."""
        ...


class TaskStore(Protocol):
    def add_task(self, task: Task) -> None: ...
    def get_task(self, task_id: str) -> Task | None: ...
    def list_tasks(
        self, *, agent_id: str | None = None, active_at: datetime | None = None
    ) -> list[Task]:
        """Tasks, newest first; with ``active_at``, only those active at that time."""
        ...

    def end_task(self, task_id: str, ended_at: datetime) -> bool:
        """Mark the task ended; False if it was not active."""
        ...

    def update_session(self, task_id: str, session: SessionState) -> None: ...

    def merge_session(
        self, task_id: str, *, tainted: bool, data_read: frozenset[str], calls: int
    ) -> SessionState:
        """Atomically fold one call's effects into the task's session state: taint only ever
        turns on, data classes accumulate, ``calls`` is added. Concurrent calls lose nothing."""
        ...

    def reserve_call(self, task_id: str, limit: int) -> bool:
        """Atomically count one more call in the task if it has made fewer than ``limit``;
        False (and nothing changed) when the limit is reached."""
        ...


class PolicyStore(Protocol):
    def add_policy_version(self, version: PolicyVersion) -> None: ...
    def get_policy_version(self, version_id: str) -> PolicyVersion | None: ...
    def active_policy_version(self) -> PolicyVersion | None: ...
    def active_policy_id(self) -> str | None:
        """The active version's id alone: a cheap check for a change of version."""
        ...

    def activate_policy_version(self, version_id: str) -> None:
        """Make exactly this version active, atomically."""
        ...

    def list_policy_versions(self) -> list[PolicyVersion]: ...


class DirectoryStore(Protocol):
    """Targets learned from past allowed actions (the configured directory lives in config)."""

    def learn_targets(self, targets: Sequence[str], at: datetime) -> None: ...
    def learned_targets(self) -> frozenset[str]: ...


class AuditLog(Protocol):
    def append(
        self,
        kind: RecordKind,
        ts: datetime,
        body: dict[str, object],
        *,
        action_id: str | None = None,
        task_id: str | None = None,
        agent_id: str | None = None,
    ) -> AuditRecord:
        """Append one record to the chain and make it durable before returning."""
        ...

    def append_many(self, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        """Append consecutive records in one transaction (group commit): all are durable when
        this returns, or none is."""
        ...

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the last record; (0, GENESIS) when empty."""
        ...

    def records(self, *, after_seq: int = 0, limit: int | None = None) -> Iterator[AuditRecord]:
        """Records in chain order with seq > after_seq."""
        ...

    def find_records(
        self,
        *,
        after_seq: int = 0,
        limit: int = 100,
        kinds: Sequence[RecordKind] = (),
        action_id: str | None = None,
        task_id: str | None = None,
        agent_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[AuditRecord]:
        """Up to ``limit`` (1..10,000) records with seq > ``after_seq`` matching every filter
        given, in chain order; ``since`` inclusive, ``until`` exclusive."""
        ...

    def count(self) -> int: ...
    def add_checkpoint(self, checkpoint: Checkpoint) -> None: ...
    def checkpoints(self) -> list[Checkpoint]: ...


class Credentials(Protocol):
    """Agents' public keys, single-use and revoked token ids, leases and sealed secrets."""

    def add_agent_key(self, key: AgentKey) -> None:
        """Insert a key; ``Conflict`` if the agent already has this kid."""
        ...

    def list_agent_keys(self, agent_id: str) -> list[AgentKey]:
        """The agent's keys, oldest first, revoked ones included."""
        ...

    def revoke_agent_key(self, agent_id: str, kid: str, at: datetime) -> bool:
        """Mark the key revoked; False (nothing changed) if missing or already revoked."""
        ...

    def use_jti(self, issuer: str, jti: str, expires_at: datetime) -> bool:
        """Record a single-use token id; False if ``(issuer, jti)`` was seen before. Atomic:
        of two racing calls exactly one gets True."""
        ...

    def revoke_token(self, jti: str, expires_at: datetime, at: datetime) -> bool:
        """Put a token id on the revocation list; False if it was already there."""
        ...

    def token_revoked(self, jti: str) -> bool: ...

    def token_state(self, task_id: str, jti: str) -> TokenState | None:
        """The task's agent and state, its agent's status and whether ``jti`` is revoked, in
        one read; None when there is no such task."""
        ...

    def prune_token_ids(self, before: datetime) -> int:
        """Forget used and revoked ids of tokens that expired before ``before``; their count."""
        ...

    def add_lease(self, lease: Lease) -> None:
        """Insert a new lease; ``Conflict`` if the id exists, ``UnknownTask`` without its task."""
        ...

    def get_lease(self, lease_id: str) -> Lease | None: ...

    def list_leases(
        self,
        *,
        task_ids: Sequence[str] | None = None,
        state: LeaseState | None = None,
        expired_at: datetime | None = None,
        limit: int = 1000,
    ) -> list[Lease]:
        """Leases, oldest first, matching every filter given: among ``task_ids``; in ``state``;
        with ``expired_at``, only those whose expiry is at or before it."""
        ...

    def replace_lease(self, lease: Lease, expected: LeaseState) -> bool:
        """Store ``lease`` over the one with its id if that one is still in ``expected`` state
        and has the same task and issue time (compare and set); False, nothing changed,
        otherwise."""
        ...

    def put_secret(self, secret: SealedSecret) -> None:
        """Insert or replace a sealed secret by name."""
        ...

    def get_secret(self, name: str) -> SealedSecret | None: ...
    def list_secrets(self) -> list[SealedSecret]: ...
    def delete_secret(self, name: str) -> bool: ...


class Approvals(Protocol):
    """Approval tickets and the votes on them."""

    def add_ticket(self, ticket: ApprovalTicket) -> None:
        """Insert a new ticket (its ``votes`` are ignored); ``Conflict`` if the id exists."""
        ...

    def get_ticket(self, ticket_id: str) -> ApprovalTicket | None:
        """The ticket with its votes, oldest first."""
        ...

    def find_ticket(
        self, action_digest: str, states: Sequence[TicketState]
    ) -> ApprovalTicket | None:
        """The newest ticket for this action digest in one of ``states``."""
        ...

    def list_tickets(
        self, *, state: TicketState | None = None, task_id: str | None = None, limit: int = 100
    ) -> list[ApprovalTicket]:
        """Tickets, newest first, with their votes; ``limit`` 1..1,000."""
        ...

    def add_vote(self, ticket_id: str, vote: Vote) -> bool:
        """Record a vote; False (nothing changed) if this user already voted on the ticket.
        Atomic: of two racing votes by one user exactly one is kept."""
        ...

    def move_ticket(
        self,
        ticket_id: str,
        expected: TicketState,
        new: TicketState,
        at: datetime,
        *,
        consumed_by: str | None = None,
    ) -> bool:
        """Change the ticket's state if it is in ``expected`` (compare and set); False,
        nothing changed, otherwise."""
        ...


class Store(
    Registry,
    ApiKeys,
    Credentials,
    Approvals,
    TaskStore,
    PolicyStore,
    DirectoryStore,
    AuditLog,
    Protocol,
):
    """Everything one database provides."""

    def close(self) -> None: ...
