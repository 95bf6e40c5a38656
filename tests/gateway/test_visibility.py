"""Hiding a tool from `tools/list` must be sound: a hidden tool is denied for EVERY context a
real call could bring (arguments, targets, approvals, taint, data read, call counts). Checked
against full Cedar evaluation, for the shipped pack and for custom policies that break the
assumptions a plain scope filter would make."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tribune.core.context import tool_in_scope
from tribune.core.model import (
    Agent,
    AgentStatus,
    Effect,
    Entitlements,
    OwnerRef,
    RiskFacts,
    Scope,
    Task,
    TaskState,
    Tool,
)
from tribune.gateway.visibility import Visibility
from tribune.policy.bundle import builtin_schema, compile_bundle, default_pack
from tribune.policy.engine import CompiledPolicy
from tribune.policy.request import PolicyRequest

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
SHIPPED = compile_bundle(default_pack(), version_id="shipped")
# No intent policy at all: out-of-scope calls can pass, so they must stay listed.
NO_INTENT = compile_bundle(
    {
        "schema.cedarschema": builtin_schema(),
        "p.cedar": """
@id("anything-small") permit (principal, action, resource) when { context.args.amount < 100 };
@id("no-destructive") forbid (principal, action, resource) when { resource.destructive };
@id("prod-approval") @approval("1")
forbid (principal, action, resource) when { context.environment == "production" }
unless { context.approvals >= 1 };
""",
    },
    version_id="no-intent",
)
# Only ever permits tainted tasks: nothing can be hidden for an untainted task, either.
TAINT_ONLY = compile_bundle(
    {
        "schema.cedarschema": builtin_schema(),
        "p.cedar": '@id("t") permit (principal, action, resource) when { context.task.tainted };',
    },
    version_id="taint-only",
)
PACKS = {"shipped": SHIPPED, "no-intent": NO_INTENT, "taint-only": TAINT_ONLY}


def agent(status: AgentStatus = AgentStatus.ACTIVE, **ent: Any) -> Agent:
    return Agent(
        id="spiffe://t.test/agent/a",
        name="a",
        owner=OwnerRef("user", "alice"),
        purpose="p",
        environment="development",
        entitlements=Entitlements(**ent),
        status=status,
        created_at=NOW,
    )


def task(scope: Scope) -> Task:
    return Task("t1", "spiffe://t.test/agent/a", scope, TaskState.ACTIVE, NOW, NOW + timedelta(1))


risks = st.builds(
    RiskFacts,
    read_only=st.booleans(),
    destructive=st.booleans(),
    idempotent=st.booleans(),
    open_world=st.booleans(),
    untrusted_output=st.booleans(),
)
tools = st.builds(
    Tool,
    name=st.sampled_from(["up.a", "up.b", "x.c"]),
    risk=risks,
    groups=st.lists(st.sampled_from(["up", "x"]), max_size=2, unique=True).map(tuple),
)
names = st.frozensets(st.sampled_from(["up.a", "up.b", "x.c"]))
groups = st.frozensets(st.sampled_from(["up", "x"]))
scopes = st.builds(
    Scope,
    purpose=st.just("p"),
    tools=names,
    tool_groups=groups,
    environment=st.sampled_from(["development", "production"]),
    open_scope=st.booleans(),
)
classes = st.lists(st.sampled_from(["public", "confidential", "restricted"]), unique=True)
volatile = st.fixed_dictionaries(
    {
        "approvals": st.integers(0, 3),
        "tainted": st.booleans(),
        "data_read": classes,
        "calls": st.integers(0, 5),
        "within_limits": st.booleans(),
        "literals_ok": st.booleans(),
        "targets": st.fixed_dictionaries(
            {
                "count": st.integers(0, 3),
                "all_trusted": st.booleans(),
                "all_internal": st.booleans(),
                "any_unknown": st.booleans(),
                "classes": st.lists(st.sampled_from(["internal", "unknown"]), unique=True),
            }
        ),
        "args": st.fixed_dictionaries(
            {
                "amount": st.integers(0, 1000),
                "count": st.integers(0, 5),
                "secrets": st.integers(0, 2),
                "cards": st.integers(0, 2),
                "links": st.integers(0, 2),
                "links_unknown": st.booleans(),
            }
        ),
        "data": st.fixed_dictionaries({"classes": classes, "level": st.integers(0, 3)}),
    }
)


def full_context(t: Task, a: Agent, tool: Tool, v: dict[str, Any]) -> dict[str, Any]:
    """A context a real call of ``tool`` in ``t`` could bring: the known part as the governor
    builds it (no environment passed), the rest from ``v``."""
    return {
        "environment": t.scope.environment or "",
        "approvals": v["approvals"],
        "task": {
            "id": t.id,
            "open_scope": t.scope.open_scope,
            "tainted": v["tainted"],
            "data_read": v["data_read"],
            "depth": t.depth,
            "calls": v["calls"],
        },
        "intent": {
            "tool_in_scope": tool_in_scope(t.scope, tool, a.entitlements),
            "env_in_scope": True,
            "within_limits": v["within_limits"],
            "literals_ok": v["literals_ok"],
        },
        "targets": v["targets"],
        "args": v["args"],
        "data": v["data"],
    }


@pytest.mark.parametrize("pack", sorted(PACKS))
@settings(max_examples=150, deadline=None)
@given(
    scope=scopes,
    tool=tools,
    ent_tools=names,
    ent_groups=groups,
    active=st.booleans(),
    contexts=st.lists(volatile, min_size=1, max_size=6),
)
def test_a_hidden_tool_is_denied_in_every_context(
    pack: str,
    scope: Scope,
    tool: Tool,
    ent_tools: frozenset[str],
    ent_groups: frozenset[str],
    active: bool,
    contexts: list[dict[str, Any]],
) -> None:
    compiled = PACKS[pack]
    status = AgentStatus.ACTIVE if active else AgentStatus.SUSPENDED
    a = agent(status, tools=ent_tools, tool_groups=ent_groups)
    t = task(scope)
    if Visibility().could_allow(compiled, t, a, ((), "alice@acme.com"), tool):
        return
    for v in contexts:
        request = PolicyRequest(
            a, (), "alice@acme.com", tool, full_context(t, a, tool, v), "call", t.id
        )
        decision = compiled.decide(request)
        assert decision.effect is Effect.DENY, (pack, v, decision)


def shown(compiled: CompiledPolicy | None, scope: Scope, tool: Tool, **ent: Any) -> bool:
    return Visibility().could_allow(compiled, task(scope), agent(**ent), ((), ""), tool)


READ = Tool("up.a", risk=RiskFacts(read_only=True, destructive=False, open_world=False))
DESTROY = Tool("up.b", risk=RiskFacts(destructive=True, open_world=False), groups=("up",))


def test_shipped_pack_hides_exactly_what_is_outside_the_scope() -> None:
    declared = Scope("p", tools=frozenset({"up.a"}), environment="development")
    assert shown(SHIPPED, declared, READ)
    assert not shown(SHIPPED, declared, DESTROY)
    by_group = Scope("p", tool_groups=frozenset({"up"}), environment="production")
    assert shown(SHIPPED, by_group, DESTROY)  # needs two approvals in production: listed
    assert not shown(SHIPPED, by_group, READ)  # READ is in no group


def test_open_scope_tasks_see_what_the_entitlements_allow() -> None:
    open_scope = Scope("p", environment="development", open_scope=True)
    assert shown(SHIPPED, open_scope, READ, tools=frozenset({"up.a"}))
    assert not shown(SHIPPED, open_scope, DESTROY, tools=frozenset({"up.a"}))
    assert shown(SHIPPED, open_scope, DESTROY, tool_groups=frozenset({"up"}))


def test_inactive_agents_and_missing_policy_see_nothing() -> None:
    declared = Scope("p", tools=frozenset({"up.a"}), environment="development")
    assert not Visibility().could_allow(
        SHIPPED, task(declared), agent(AgentStatus.SUSPENDED), ((), ""), READ
    )
    assert not shown(None, declared, READ)


def test_custom_policies_are_evaluated_not_assumed() -> None:
    declared = Scope("p", tools=frozenset({"up.a"}), environment="development")
    # no intent policy: an out-of-scope read may be allowed, so it stays listed
    outside = Tool("x.c", risk=RiskFacts(read_only=True, destructive=False, open_world=False))
    assert shown(NO_INTENT, declared, outside)
    assert not shown(NO_INTENT, declared, DESTROY)  # a plain forbid on known facts
    assert shown(TAINT_ONLY, declared, READ)  # allowed once the task is tainted
