"""Decisions: allow, deny, approval tiers, fail-closed errors, and entity caching."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from tribune.core.model import AgentStatus, Effect, RiskFacts
from tribune.policy import PolicyRequest, compile_bundle
from tribune.policy.engine import LruCache

MakeRequest = Callable[..., PolicyRequest]

CALL = 'action == Action::"call"'
READS = f'@id("reads")\npermit (principal, {CALL}, resource) when {{ resource.read_only }};\n'
ALL = f'@id("all")\npermit (principal, {CALL}, resource);\n'


def tier(
    pid: str, quorum: int, extra: str = "", when: str = "true", need: int | None = None
) -> str:
    return (
        f'@id("{pid}") @approval("{quorum}") {extra}\n'
        f"forbid (principal, {CALL}, resource) when {{ {when} }}\n"
        f"unless {{ context.approvals >= {need or quorum} }};\n"
    )


def test_allow_names_the_permits_and_the_version(make_request: MakeRequest) -> None:
    compiled = compile_bundle({"p.cedar": READS + ALL}, version_id="v1")
    decision = compiled.decide(make_request())
    assert decision.effect is Effect.ALLOW
    assert decision.policy_ids == ("all", "reads")
    assert decision.policy_version == "v1"
    assert decision.tool == "crm.read"
    assert decision.errors == () and decision.approval is None


def test_no_permit_is_a_default_deny(make_request: MakeRequest) -> None:
    compiled = compile_bundle({"p.cedar": READS})
    decision = compiled.decide(make_request(risk=RiskFacts()))
    assert (decision.effect, decision.policy_ids, decision.errors) == (Effect.DENY, (), ())


def test_plain_forbid_denies(make_request: MakeRequest) -> None:
    text = (
        ALL
        + f'@id("no-prod") forbid (principal, {CALL}, resource)\n'
        + 'when { context.environment == "production" };'
    )
    compiled = compile_bundle({"p.cedar": text})
    assert compiled.decide(make_request()).effect is Effect.ALLOW
    decision = compiled.decide(make_request(context={"environment": "production"}))
    assert (decision.effect, decision.policy_ids) == (Effect.DENY, ("no-prod",))


def test_approval_takes_strictest_quorum_and_union_of_approvers(make_request: MakeRequest) -> None:
    text = (
        ALL
        + tier("one", 1, '@approvers("sre,ops") @owner_may_approve("true")')
        + tier("two", 2, '@approvers("leads") @owner_may_approve("true")')
    )
    decision = compile_bundle({"p.cedar": text}, version_id="v2").decide(make_request())
    assert decision.effect is Effect.APPROVAL_REQUIRED
    assert decision.policy_ids == ("one", "two")
    assert decision.policy_version == "v2"
    assert decision.approval is not None
    assert decision.approval.quorum == 2
    assert decision.approval.approvers == ("leads", "ops", "sre")
    assert decision.approval.owner_may_approve is True


def test_owner_may_approve_only_if_every_tier_allows_it(make_request: MakeRequest) -> None:
    text = ALL + tier("one", 1, '@owner_may_approve("true")') + tier("two", 1)
    decision = compile_bundle({"p.cedar": text}).decide(make_request())
    assert decision.approval is not None
    assert decision.approval.owner_may_approve is False
    assert decision.approval.approvers == ()  # none named: any approver


def test_enough_approvals_release_the_tier(make_request: MakeRequest) -> None:
    compiled = compile_bundle({"p.cedar": ALL + tier("two", 2)})
    assert (
        compiled.decide(make_request(context={"approvals": 1})).effect is Effect.APPROVAL_REQUIRED
    )
    decision = compiled.decide(make_request(context={"approvals": 2}))
    assert (decision.effect, decision.policy_ids) == (Effect.ALLOW, ("all",))


def test_approval_is_not_offered_when_no_permit_would_allow(make_request: MakeRequest) -> None:
    # The tier fires, but nothing permits a non-read tool: approving would still deny.
    compiled = compile_bundle({"p.cedar": READS + tier("gate", 1)})
    decision = compiled.decide(make_request(risk=RiskFacts()))
    assert (decision.effect, decision.policy_ids, decision.approval) == (
        Effect.DENY,
        ("gate",),
        None,
    )


def test_approval_is_not_offered_when_the_quorum_would_not_lift_the_tier(
    make_request: MakeRequest,
) -> None:
    compiled = compile_bundle({"p.cedar": ALL + tier("odd", 1, need=3)})
    decision = compiled.decide(make_request())
    assert (decision.effect, decision.policy_ids) == (Effect.DENY, ("odd",))


def test_a_plain_forbid_is_not_hidden_by_a_tier(make_request: MakeRequest) -> None:
    text = ALL + tier("gate", 1) + f'@id("never") forbid (principal, {CALL}, resource);'
    decision = compile_bundle({"p.cedar": text}).decide(make_request(context={"approvals": 0}))
    assert (decision.effect, decision.policy_ids, decision.approval) == (
        Effect.DENY,
        ("gate", "never"),
        None,
    )


def test_evaluation_errors_deny_even_when_cedar_would_allow(make_request: MakeRequest) -> None:
    # The forbid errors on a context without `args`; Cedar skips it and allows. Tribune denies.
    text = (
        ALL
        + f'@id("secrets") forbid (principal, {CALL}, resource)\n'
        + "when { context.args.secrets > 0 };"
    )
    compiled = compile_bundle({"p.cedar": text})
    req = make_request()
    del req.context["args"]
    decision = compiled.decide(req)
    assert decision.effect is Effect.DENY
    assert decision.policy_ids == ()
    assert len(decision.errors) == 1
    assert decision.errors[0].code == "policy_evaluation_error"
    assert "secrets" in decision.errors[0].message


def test_exceptions_never_escape_decide(make_request: MakeRequest) -> None:
    compiled = compile_bundle({"p.cedar": ALL}, version_id="v3")
    unserialisable = make_request(context={"task": {"data_read": {"a set"}}})
    decision = compiled.decide(unserialisable)
    assert decision.effect is Effect.DENY
    assert decision.policy_version == "v3"
    assert [e.code for e in decision.errors] == ["policy_evaluation_error"]
    broken = dataclasses.replace(make_request(), tool=None)
    assert compiled.decide(broken).effect is Effect.DENY
    unhashable = dataclasses.replace(make_request(), owner_groups=["eng"])
    assert compiled.decide(unhashable).effect is Effect.DENY


def test_cached_entities_never_serve_stale_agent_status(make_request: MakeRequest) -> None:
    text = (
        ALL
        + '@id("inactive") forbid (principal, action, resource)\n'
        + 'unless { principal.status == "active" };'
    )
    compiled = compile_bundle({"p.cedar": text})
    assert compiled.decide(make_request()).effect is Effect.ALLOW
    suspended = compiled.decide(make_request(status=AgentStatus.SUSPENDED))
    assert (suspended.effect, suspended.policy_ids) == (Effect.DENY, ("inactive",))
    assert compiled.decide(make_request()).effect is Effect.ALLOW


def test_cached_entities_follow_owner_groups_and_owner(make_request: MakeRequest) -> None:
    text = (
        f'@id("eng") permit (principal in Group::"eng", {CALL}, resource);\n'
        f'@id("alice") permit (principal in User::"alice", {CALL}, resource)'
        ' when { principal.name == "solo" };'
    )
    compiled = compile_bundle({"p.cedar": text})
    assert compiled.decide(make_request(owner_groups=("eng",))).policy_ids == ("eng",)
    assert compiled.decide(make_request(owner_groups=("ops",))).effect is Effect.DENY
    assert compiled.decide(make_request(owner="group:eng", owner_groups=())).effect is Effect.ALLOW
    assert compiled.decide(make_request(owner="group:ops", owner_groups=())).effect is Effect.DENY
    solo = compiled.decide(make_request(agent="solo", owner_groups=()))
    assert solo.policy_ids == ("alice",)


def test_cached_entities_follow_tool_risk_and_groups(make_request: MakeRequest) -> None:
    text = READS + f'@id("crm") permit (principal, {CALL}, resource in ToolGroup::"crm");'
    compiled = compile_bundle({"p.cedar": text})
    assert compiled.decide(make_request(groups=("crm",))).policy_ids == ("crm", "reads")
    writer = RiskFacts(read_only=False, destructive=False, open_world=False)
    assert compiled.decide(make_request(groups=("crm",), risk=writer)).policy_ids == ("crm",)
    assert compiled.decide(make_request(groups=("hr",), risk=writer)).effect is Effect.DENY


def test_lru_cache_is_bounded_and_keeps_recent_entries() -> None:
    cache: LruCache[str, int] = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # now most recent
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c"), len(cache)) == (1, None, 3, 2)


def test_entity_and_policy_set_caches_stay_bounded(make_request: MakeRequest) -> None:
    compiled = compile_bundle({"p.cedar": ALL}, cache_size=3)
    for i in range(10):
        assert compiled.decide(make_request(cache_key=f"task-{i}", tool=f"t{i}")).allowed
    assert len(compiled._entities) == 3
    assert len(compiled._sets) == 3


def test_decide_is_safe_from_many_threads(make_request: MakeRequest) -> None:
    compiled = compile_bundle(
        {"p.cedar": READS + tier("gate", 1, when="resource.open_world")}, cache_size=4
    )
    reqs = [
        make_request(
            tool=f"t{i % 7}",
            cache_key=f"k{i % 5}",
            risk=RiskFacts(read_only=True, destructive=False, open_world=i % 2 == 0),
        )
        for i in range(200)
    ]
    expected = [compiled.decide(r).effect for r in reqs]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda r: compiled.decide(r).effect, reqs))
    assert got == expected
    assert set(got) == {Effect.ALLOW, Effect.APPROVAL_REQUIRED}
