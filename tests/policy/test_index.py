"""The scope index: only policies that can apply are evaluated, with unchanged results."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tribune.core.model import AgentStatus, RiskFacts
from tribune.policy import PolicyRequest, compile_bundle
from tribune.policy.index import ScopeIndex

MakeRequest = Callable[..., PolicyRequest]
CALL = 'action == Action::"call"'


def test_applicable_set_follows_tool_and_groups() -> None:
    text = "\n".join(
        [
            f'@id("any") permit (principal, {CALL}, resource);',
            '@id("unscoped-action") permit (principal, action, resource);',
            f'@id("tool") permit (principal, {CALL}, resource == Tool::"crm.read");',
            f'@id("in-tool") permit (principal, {CALL}, resource in Tool::"crm.read");',
            f'@id("group") permit (principal, {CALL}, resource in ToolGroup::"crm");',
            f'@id("is") permit (principal, {CALL}, resource is Tool);',
            f'@id("is-in") permit (principal, {CALL}, resource is Tool in ToolGroup::"hr");',
            f'@id("other-tool") permit (principal, {CALL}, resource == Tool::"db.drop");',
            f'@id("other-group") forbid (principal, {CALL}, resource in ToolGroup::"payments");',
        ]
    )
    compiled = compile_bundle({"p.cedar": text})
    assert compiled.applicable("call", "crm.read", ["crm"]) == (
        "any",
        "unscoped-action",
        "tool",
        "in-tool",
        "group",
        "is",
    )
    assert compiled.applicable("call", "hr.read", ["hr", "crm"]) == (
        "any",
        "unscoped-action",
        "group",
        "is",
        "is-in",
    )
    assert "other-group" not in compiled.applicable("call", "crm.read", ["crm", "hr"])
    assert compiled.applicable("call", "pay", ["payments"])[-1] == "other-group"
    unindexed = compile_bundle({"p.cedar": text}, indexed=False)
    assert len(unindexed.applicable("call", "crm.read", ["crm"])) == 9


def test_index_filters_actions_and_impossible_scopes() -> None:
    def est(action: dict[str, Any], resource: dict[str, Any]) -> dict[str, Any]:
        return {"action": action, "resource": resource}

    call = {"op": "==", "entity": {"type": "Action", "id": "call"}}
    delegate = {"op": "==", "entity": {"type": "Action", "id": "delegate"}}
    group_of_actions = {"op": "in", "entity": {"type": "Action", "id": "writes"}}
    everything = {"op": "All"}
    index = ScopeIndex(
        [
            ("call", est(call, everything)),
            ("delegate", est(delegate, everything)),
            ("action-group", est(group_of_actions, everything)),
            ("eq-group", est(call, {"op": "==", "entity": {"type": "ToolGroup", "id": "g"}})),
            ("slot", est(call, {"op": "==", "slot": "?resource"})),
            ("is-other", est(call, {"op": "is", "entity_type": "Agent"})),
            ("in-user", est(call, {"op": "in", "entity": {"type": "User", "id": "u"}})),
        ]
    )
    # `action in` may name a group and unknown shapes may match: both are kept, never dropped.
    assert index.applicable("call", "t", ["g"]) == (
        "call",
        "action-group",
        "slot",
        "is-other",
        "in-user",
    )
    assert index.applicable("delegate", "t", []) == (
        "delegate",
        "action-group",
    )


def test_a_thousand_policies_for_other_groups_are_not_evaluated(make_request: MakeRequest) -> None:
    crowd = "\n".join(
        f'@id("g{i}") forbid (principal, {CALL}, resource in ToolGroup::"group{i}");'
        for i in range(1000)
    )
    mine = f'@id("mine") permit (principal, {CALL}, resource in ToolGroup::"crm");'
    compiled = compile_bundle({"crowd.cedar": crowd, "mine.cedar": mine})
    assert compiled.applicable("call", "crm.read", ["crm"]) == ("mine",)
    assert compiled.decide(make_request(groups=("crm",))).policy_ids == ("mine",)
    denied = compiled.decide(make_request(groups=("crm", "group7")))
    assert denied.policy_ids == ("g7",)


# --------------------------------------------------------------------------- agreement

TOOLS = ["t0", "t1", "t2", "t3"]
GROUPS = ["g0", "g1", "g2", "g3"]
CONDITIONS = [
    "",
    "when { resource.read_only }",
    "when { resource.destructive && context.targets.any_unknown }",
    "unless { context.task.tainted }",
    'when { context.environment == "production" }',
    "when { resource.open_world || context.args.secrets > 0 }",
    'when { principal.status != "active" }',
]


def random_policies(seed: int, count: int) -> str:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        resource = rng.choice(
            [
                "resource",
                f'resource == Tool::"{rng.choice(TOOLS)}"',
                f'resource in Tool::"{rng.choice(TOOLS)}"',
                f'resource in ToolGroup::"{rng.choice(GROUPS)}"',
                "resource is Tool",
                f'resource is Tool in ToolGroup::"{rng.choice(GROUPS)}"',
            ]
        )
        principal = rng.choice(
            ["principal", 'principal in Group::"eng"', 'principal in User::"alice"']
        )
        action = rng.choice([CALL, "action"])
        condition = rng.choice(CONDITIONS)
        if rng.random() < 0.5:
            out.append(f'@id("p{i}") permit ({principal}, {action}, {resource}) {condition};')
        elif rng.random() < 0.5:
            q = rng.randint(1, 3)
            out.append(
                f'@id("a{i}") @approval("{q}") forbid ({principal}, {action}, {resource}) '
                f"{condition} unless {{ context.approvals >= {q} }};"
            )
        else:
            out.append(f'@id("f{i}") forbid ({principal}, {action}, {resource}) {condition};')
    return "\n".join(out)


FILES = {"r.cedar": random_policies(seed=7, count=80)}
INDEXED = compile_bundle(FILES, cache_size=16)
FULL = compile_bundle(FILES, indexed=False)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    tool=st.sampled_from([*TOOLS, "t9"]),
    groups=st.lists(st.sampled_from([*GROUPS, "g9"]), max_size=3, unique=True),
    risk=st.builds(RiskFacts),
    owner=st.sampled_from(["user:alice", "user:bob", "group:eng", "group:ops"]),
    owner_groups=st.lists(st.sampled_from(["eng", "ops"]), max_size=2, unique=True),
    status=st.sampled_from(list(AgentStatus)),
    approvals=st.integers(0, 3),
    tainted=st.booleans(),
    production=st.booleans(),
    any_unknown=st.booleans(),
    secrets=st.integers(0, 1),
)
def test_index_and_full_set_agree_on_random_requests(
    make_request: MakeRequest,
    tool: str,
    groups: list[str],
    risk: RiskFacts,
    owner: str,
    owner_groups: list[str],
    status: AgentStatus,
    approvals: int,
    tainted: bool,
    production: bool,
    any_unknown: bool,
    secrets: int,
) -> None:
    req = make_request(
        tool=tool,
        groups=tuple(groups),
        risk=risk,
        owner=owner,
        owner_groups=tuple(owner_groups) if owner.startswith("user:") else (),
        status=status,
        context={
            "approvals": approvals,
            "environment": "production" if production else "development",
            "task": {"tainted": tainted},
            "targets": {"any_unknown": any_unknown},
            "args": {"secrets": secrets},
        },
    )
    indexed, full = INDEXED.decide(req), FULL.decide(req)
    assert indexed == full
    assert not indexed.errors
    assert len(INDEXED.applicable("call", tool, groups)) <= len(FULL.policies)
