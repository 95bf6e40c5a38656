"""The registry: people, agents and tools; every change audited, every bad input refused."""

from __future__ import annotations

from typing import Any

import pytest

from tribune.core.model import AgentStatus, Entitlements, OwnerRef, Tool
from tribune.errors import TribuneError
from tribune.services.registry import RegistryService

from .conftest import START, World

ENT = Entitlements(tools=frozenset({"crm.read"}), environments=frozenset({"development"}))


def register(world: World, name: str = "scout", **kw: Any) -> Any:
    kw.setdefault("owner", "user:alice")
    kw.setdefault("purpose", "finds things")
    kw.setdefault("environment", "development")
    kw.setdefault("entitlements", ENT)
    return world.tr.registry.register_agent(name, **kw)


def events(world: World, name: str) -> list[dict[str, Any]]:
    return [r for r in world.records() if r["data"].get("event") == name]


def code_of(fn: Any, *args: Any, **kw: Any) -> str:
    with pytest.raises(TribuneError) as info:
        fn(*args, **kw)
    return info.value.code


# --------------------------------------------------------------------------- agents


@pytest.mark.parametrize("owner", ["user:alice", "group:support"])
def test_register_agent_owned_by_a_user_or_group(world: World, owner: str) -> None:
    agent = register(world, owner=owner, purpose="  finds things ")
    assert agent.id == "spiffe://acme.test/agent/scout"
    assert agent.name == "scout" and str(agent.owner) == owner
    assert agent.purpose == "finds things" and agent.status is AgentStatus.ACTIVE
    assert agent.created_at == START and agent.entitlements == ENT
    assert world.tr.store.get_agent(agent.id) == agent
    event = events(world, "agent_registered")[-1]
    assert event["data"] == {"event": "agent_registered", "agent": agent.id, "owner": owner}
    assert event["agent_id"] == agent.id


def test_owner_must_exist(world: World) -> None:
    before = world.tr.store.count()
    for owner in ("user:nobody", "group:nobody", "group:alice", "user:support"):
        assert code_of(register, world, owner=owner) == "unknown_principal", owner
    assert world.tr.store.count() == before
    assert world.tr.store.get_agent("spiffe://acme.test/agent/scout") is None


def test_owner_must_be_well_formed(world: World) -> None:
    for owner in ("alice", "team:alice", "user:", "user:a b", ":alice", ""):
        assert code_of(register, world, owner=owner) == "invalid_input", owner


def test_duplicate_agent_is_a_conflict(world: World) -> None:
    register(world)
    before = world.tr.store.count()
    assert code_of(register, world, purpose="another") == "conflict"
    world.tr.registry.set_status("scout", AgentStatus.RETIRED)
    assert code_of(register, world) == "conflict"  # a retired name is not free again
    assert world.tr.store.count() == before + 1  # only the status change
    assert world.tr.registry.resolve_agent("scout").purpose == "finds things"


def test_bad_agent_names_are_refused(world: World) -> None:
    before = world.tr.store.count()
    for name in ("", "a b", "../etc", "spiffe://x/agent/y", "-lead", "a/b", "é", "x" * 129):
        assert code_of(register, world, name) == "invalid_input", name
    assert world.tr.store.count() == before
    assert world.tr.store.list_agents() == [
        world.tr.registry.resolve_agent(n) for n in ("helper", "ops")
    ]


def test_longest_name_is_accepted(world: World) -> None:
    name = "a" + "b-c_d.9" * 18 + "z" * 1
    assert len(name) == 128
    assert register(world, name).id.endswith("/agent/" + name)


def test_purpose_and_environment_are_checked(world: World) -> None:
    for kw in (
        {"purpose": ""},
        {"purpose": "   "},
        {"environment": "dev env"},
        {"environment": ""},
    ):
        assert code_of(register, world, **kw) == "invalid_input", kw


def test_resolve_by_name_or_id(world: World) -> None:
    agent = register(world)
    assert world.tr.registry.resolve_agent("scout") == agent
    assert world.tr.registry.resolve_agent(agent.id) == agent
    for ref in ("nobody", "spiffe://other.test/agent/scout", "spiffe://acme.test/agent/Scout"):
        assert code_of(world.tr.registry.resolve_agent, ref) == "unknown_agent"
    assert code_of(world.tr.registry.resolve_agent, "not a name") == "invalid_input"


def test_status_changes_are_stored_and_audited(world: World) -> None:
    agent = register(world)
    calls: list[int] = []
    world.tr.registry.on_change.append(lambda: calls.append(1))
    changed = world.tr.registry.set_status("scout", AgentStatus.SUSPENDED)
    assert changed.status is AgentStatus.SUSPENDED
    assert world.tr.registry.resolve_agent(agent.id).status is AgentStatus.SUSPENDED
    world.tr.registry.set_status(agent.id, AgentStatus.ACTIVE)
    assert world.tr.registry.resolve_agent("scout").status is AgentStatus.ACTIVE
    status_events = events(world, "agent_status")
    assert [e["data"]["status"] for e in status_events] == ["suspended", "active"]
    assert {e["agent_id"] for e in status_events} == {agent.id}
    assert calls == [1, 1]  # decision caches are told each time
    before = world.tr.store.count()
    assert code_of(world.tr.registry.set_status, "nobody", AgentStatus.ACTIVE) == "unknown_agent"
    assert world.tr.store.count() == before


def test_a_bad_trust_domain_refuses_registration(world: World) -> None:
    tr = world.tr
    registry = RegistryService(tr.store, tr.clock, tr.audit, "Not A Domain")
    kw = {"owner": "user:alice", "purpose": "p", "environment": "development"}
    assert code_of(registry.register_agent, "scout", entitlements=ENT, **kw) == "invalid_input"
    assert tr.store.list_agents() == [tr.registry.resolve_agent(n) for n in ("helper", "ops")]


# --------------------------------------------------------------------------- people and tools


def test_user_with_unknown_group_is_refused(world: World) -> None:
    before = world.tr.store.count()
    add = world.tr.registry.add_user
    assert code_of(add, "carol", groups=("support", "wizards")) == "unknown_principal"
    assert world.tr.store.get_user("carol") is None
    assert world.tr.store.count() == before
    user = add("carol", email=" Carol@ACME.com ", groups=("support",))
    assert user.email == "carol@acme.com" and user.groups == ("support",)
    assert world.tr.store.get_user("carol") == user
    assert events(world, "user_put")[-1]["data"] == {
        "event": "user_put",
        "user": "carol",
        "groups": ["support"],
    }


def test_users_and_groups_need_valid_names(world: World) -> None:
    registry = world.tr.registry
    before = world.tr.store.count()
    assert code_of(registry.add_user, "carol smith") == "invalid_input"
    assert code_of(registry.add_group, "sre team") == "invalid_input"
    assert code_of(registry.add_group, "") == "invalid_input"
    assert world.tr.store.count() == before
    registry.add_group("sre", "site reliability")
    assert world.tr.store.get_group("sre") is not None
    assert events(world, "group_put")[-1]["data"]["group"] == "sre"
    # a group owner works once the group exists
    assert register(world, owner="group:sre").owner == OwnerRef("group", "sre")


def test_tools_need_valid_names_and_groups(world: World) -> None:
    registry = world.tr.registry
    before = world.tr.store.count()
    assert code_of(registry.register_tool, Tool("bad name")) == "invalid_input"
    assert (
        code_of(registry.register_tool, Tool("ok.tool", groups=("bad group",))) == "invalid_input"
    )
    assert world.tr.store.count() == before
    assert world.tr.store.get_tool("ok.tool") is None
    tool = registry.register_tool(Tool("ok.tool", groups=("misc",)))
    assert world.tr.store.get_tool("ok.tool") == tool
    assert events(world, "tool_registered")[-1]["data"] == {
        "event": "tool_registered",
        "tool": "ok.tool",
        "groups": ["misc"],
    }
