"""Tasks: an agent starts one with a declared intent (scope within its entitlements) and a TTL."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from tribune.core.model import (
    Agent,
    AgentStatus,
    Limits,
    RecordKind,
    Scope,
    Task,
    TaskState,
    check_name,
)
from tribune.errors import (
    AgentInactive,
    InvalidInput,
    ScopeExceedsEntitlements,
    UnknownTask,
)
from tribune.ports import Clock, Ids, Store
from tribune.services.registry import Events, RegistryService


@dataclass(frozen=True, slots=True)
class ScopeRequest:
    """What an agent asks for when it starts a task. Literals arrive in clear and are kept only
    as digests."""

    purpose: str
    tools: Iterable[str] = ()
    tool_groups: Iterable[str] = ()
    targets: Iterable[str] = ()
    literals: Mapping[str, str] = field(default_factory=dict)
    environment: str | None = None
    limits: Limits = field(default_factory=Limits)
    open_scope: bool = False


def literal_digest(value: str, key: bytes | None = None) -> str:
    """The stored form of a task literal: HMAC-SHA256 under the home's digest key (plain
    SHA-256 without one), so a guessable literal cannot be recovered from the store."""
    data = value.encode("utf-8")
    if key is None:
        return hashlib.sha256(data).hexdigest()
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def name_list(kind: str, values: Iterable[str]) -> tuple[str, ...]:
    """``values`` as a tuple; a lone string is refused (it would be read letter by letter)."""
    if isinstance(values, str | bytes):
        raise InvalidInput(f"{kind} must be a list, not `{values!r}`", hint=f'write ["{values}"]')
    return tuple(values)


def _literals(literals: Mapping[str, str], key: bytes | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in literals.items():
        if not isinstance(value, str):
            raise InvalidInput(f"literal `{name}` must be text")
        out[check_name("literal", name)] = literal_digest(value, key)
    return out


def check_within(agent: Agent, scope: Scope) -> None:
    """Raise ``ScopeExceedsEntitlements`` naming the first part of ``scope`` the agent may never
    be granted."""
    ent = agent.entitlements
    if scope.open_scope and not ent.open_scope:
        raise ScopeExceedsEntitlements(
            f"agent `{agent.name}` may not start open-scope tasks",
            hint="declare the tools and targets the task needs",
        )
    for tool in sorted(scope.tools):
        if tool not in ent.tools:
            raise ScopeExceedsEntitlements(
                f"tool `{tool}` is outside the entitlements of `{agent.name}`"
            )
    for group in sorted(scope.tool_groups):
        if group not in ent.tool_groups:
            raise ScopeExceedsEntitlements(
                f"tool group `{group}` is outside the entitlements of `{agent.name}`"
            )
    if scope.environment is not None and scope.environment not in ent.environments:
        raise ScopeExceedsEntitlements(
            f"environment `{scope.environment}` is outside the entitlements of `{agent.name}`"
        )
    if not scope.limits.within(ent.limits):
        raise ScopeExceedsEntitlements(f"limits exceed the entitlements of `{agent.name}`")


class TaskService:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        ids: Ids,
        events: Events,
        registry: RegistryService,
        normalise_target: object,
        *,
        default_ttl: int = 3600,
        max_ttl: int = 86400,
        digest_key: bytes | None = None,
    ) -> None:
        self.store = store
        self.digest_key = digest_key
        self.clock = clock
        self.ids = ids
        self.events = events
        self.registry = registry
        self.normalise = normalise_target
        self.default_ttl = default_ttl
        self.max_ttl = max_ttl
        self.on_end: list[Callable[[str, str], None]] = []  # (task id, reason), after ending

    def start(self, agent_ref: str, request: ScopeRequest, *, ttl: int | None = None) -> Task:
        """Start a task for an active agent; its scope must lie within the agent's entitlements."""
        agent = self.registry.resolve_agent(agent_ref)
        if agent.status is not AgentStatus.ACTIVE:
            raise AgentInactive(f"agent `{agent.name}` is {agent.status.value}")
        if not request.purpose.strip():
            raise InvalidInput("a task needs a purpose", hint="say what the task is for")
        ttl = self.default_ttl if ttl is None else ttl
        if not 0 < ttl <= self.max_ttl:
            raise InvalidInput(f"ttl `{ttl}` must be between 1 and {self.max_ttl} seconds")
        environment = request.environment or agent.environment
        normalise = self.normalise
        assert callable(normalise)
        try:
            targets = frozenset(normalise(t) for t in name_list("targets", request.targets))
        except InvalidInput:
            raise
        except Exception as exc:
            raise InvalidInput(f"invalid target in scope: {exc}") from None
        scope = Scope(
            purpose=request.purpose.strip(),
            tools=frozenset(check_name("tool", t) for t in name_list("tools", request.tools)),
            tool_groups=frozenset(
                check_name("tool group", g) for g in name_list("tool groups", request.tool_groups)
            ),
            targets=targets,
            literal_digests=_literals(request.literals, self.digest_key),
            environment=check_name("environment", environment),
            limits=request.limits.inherit(agent.entitlements.limits),
            open_scope=request.open_scope,
        )
        if not (scope.open_scope or scope.tools or scope.tool_groups):
            raise InvalidInput(
                "a task must declare the tools or tool groups it needs, or be open-scope"
            )
        check_within(agent, scope)
        now = self.clock.now()
        task_id = self.ids.new()
        task = Task(
            id=task_id,
            agent_id=agent.id,
            scope=scope,
            state=TaskState.ACTIVE,
            created_at=now,
            expires_at=now + timedelta(seconds=ttl),
            root_id=task_id,
        )
        self.store.add_task(task)
        self.events.record(
            RecordKind.EVENT,
            {
                "event": "task_started",
                "purpose": scope.purpose,
                "tools": sorted(scope.tools),
                "tool_groups": sorted(scope.tool_groups),
                "targets": sorted(scope.targets),
                "literals": sorted(scope.literal_digests),
                "environment": scope.environment,
                "open_scope": scope.open_scope,
                "expires_at": task.expires_at.isoformat(),
            },
            task_id=task.id,
            agent_id=agent.id,
        )
        return task

    def get(self, task_id: str) -> Task:
        task = self.store.get_task(task_id)
        if task is None:
            raise UnknownTask(f"unknown task `{task_id}`")
        return task

    def end(self, task_id: str, reason: str = "") -> Task:
        """End a task; later calls in it are denied and ``on_end`` listeners (lease revocation)
        run. Ending an ended task changes nothing."""
        task = self.get(task_id)
        if self.store.end_task(task_id, self.clock.now()):
            body = {"event": "task_ended", "reason": reason} if reason else {"event": "task_ended"}
            self.events.record(RecordKind.EVENT, body, task_id=task_id, agent_id=task.agent_id)
            for listener in self.on_end:
                listener(task_id, reason or "task_ended")
        return self.get(task_id)

    def list(self, *, agent_ref: str | None = None, active_only: bool = False) -> list[Task]:
        agent_id = self.registry.resolve_agent(agent_ref).id if agent_ref else None
        return self.store.list_tasks(
            agent_id=agent_id, active_at=self.clock.now() if active_only else None
        )
