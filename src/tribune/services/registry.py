"""People, agents and tools: registering and changing them, each change audited."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from tribune.core.model import (
    Agent,
    AgentStatus,
    Entitlements,
    Group,
    OwnerRef,
    RecordKind,
    Tool,
    User,
    agent_spiffe_id,
    check_name,
)
from tribune.errors import Conflict, InvalidInput, UnknownAgent, UnknownPrincipal
from tribune.ports import Clock, Store


class Events(Protocol):
    """Audit sink for administrative events (satisfied by ``AuditService``)."""

    def record(
        self,
        kind: RecordKind,
        body: dict[str, Any],
        *,
        action_id: str | None = None,
        task_id: str | None = None,
        agent_id: str | None = None,
    ) -> Any: ...


class RegistryService:
    def __init__(self, store: Store, clock: Clock, events: Events, trust_domain: str) -> None:
        self.store = store
        self.clock = clock
        self.events = events
        self.trust_domain = trust_domain
        self.on_change: list[Callable[[], None]] = []  # e.g. drop decision-path caches

    def _changed(self) -> None:
        for listener in self.on_change:
            listener()

    # ----------------------------------------------------------------- people

    def add_group(self, name: str, description: str = "") -> Group:
        group = Group(check_name("group", name), description)
        self.store.put_group(group)
        self._changed()
        self.events.record(RecordKind.EVENT, {"event": "group_put", "group": name})
        return group

    def add_user(
        self, name: str, *, email: str = "", display_name: str = "", groups: tuple[str, ...] = ()
    ) -> User:
        for g in groups:
            if self.store.get_group(g) is None:
                raise UnknownPrincipal(
                    f"unknown group `{g}`", hint="add it with `tribune group add`"
                )
        user = User(check_name("user", name), display_name, email.strip().lower(), tuple(groups))
        self.store.put_user(user)
        self._changed()
        self.events.record(
            RecordKind.EVENT, {"event": "user_put", "user": name, "groups": list(groups)}
        )
        return user

    def owner_exists(self, owner: OwnerRef) -> bool:
        if owner.kind == "user":
            return self.store.get_user(owner.name) is not None
        return self.store.get_group(owner.name) is not None

    # ----------------------------------------------------------------- agents

    def register_agent(
        self,
        name: str,
        *,
        owner: str,
        purpose: str,
        environment: str,
        entitlements: Entitlements,
    ) -> Agent:
        """Register a new agent owned by an existing user or group."""
        ref = OwnerRef.parse(owner)
        if not self.owner_exists(ref):
            raise UnknownPrincipal(
                f"unknown owner `{owner}`", hint="add the user or group before the agent"
            )
        if not purpose.strip():
            raise InvalidInput("an agent needs a purpose")
        if not entitlements.environments:  # at least where the agent runs
            entitlements = replace(entitlements, environments=frozenset({environment}))
        agent_id = agent_spiffe_id(self.trust_domain, name)
        if self.store.get_agent(agent_id) is not None:
            raise Conflict(f"agent `{name}` already exists")
        agent = Agent(
            id=agent_id,
            name=name,
            owner=ref,
            purpose=purpose.strip(),
            environment=check_name("environment", environment),
            entitlements=entitlements,
            status=AgentStatus.ACTIVE,
            created_at=self.clock.now(),
        )
        self.store.add_agent(agent)
        self._changed()
        self.events.record(
            RecordKind.EVENT,
            {"event": "agent_registered", "agent": agent.id, "owner": str(ref)},
            agent_id=agent.id,
        )
        return agent

    def resolve_agent(self, name_or_id: str) -> Agent:
        """Find an agent by SPIFFE id or by plain name."""
        agent_id = (
            name_or_id
            if name_or_id.startswith("spiffe://")
            else agent_spiffe_id(self.trust_domain, name_or_id)
        )
        agent = self.store.get_agent(agent_id)
        if agent is None:
            raise UnknownAgent(f"unknown agent `{name_or_id}`")
        return agent

    def set_status(self, name_or_id: str, status: AgentStatus) -> Agent:
        agent = self.resolve_agent(name_or_id)
        self.store.set_agent_status(agent.id, status)
        self._changed()
        self.events.record(
            RecordKind.EVENT,
            {"event": "agent_status", "agent": agent.id, "status": status.value},
            agent_id=agent.id,
        )
        return replace(agent, status=status)

    # ----------------------------------------------------------------- tools

    def register_tool(self, tool: Tool) -> Tool:
        check_name("tool", tool.name)
        for g in tool.groups:
            check_name("tool group", g)
        self.store.put_tool(tool)
        self._changed()
        self.events.record(
            RecordKind.EVENT,
            {"event": "tool_registered", "tool": tool.name, "groups": list(tool.groups)},
        )
        return tool
