"""The default policy pack: it compiles against the schema, its YAML cases pass, and its
approval tiers never hide a plain deny."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tribune.policy
from tribune.core.model import AgentStatus, Effect, RiskFacts
from tribune.policy import (
    PolicyRequest,
    compile_bundle,
    default_pack,
    format_report,
    load_bundle,
    load_cases,
    run_policy_tests,
)

MakeRequest = Callable[..., PolicyRequest]
PACK_DIR = Path(tribune.policy.__file__).parent / "pack"
PACK = compile_bundle(default_pack(), version_id="pack")
PLAIN = {
    "intent-tool-not-in-scope",
    "intent-environment-not-in-scope",
    "intent-over-limits",
    "intent-literals-mismatch",
    "agent-not-active",
    "secret-to-open-world",
    "card-to-open-world",
}


def test_pack_directory_compiles_and_its_cases_pass() -> None:
    bundle = load_bundle(PACK_DIR)
    assert bundle.files == default_pack().files
    assert bundle.schema is not None  # the pack carries the schema it is written against
    compiled = compile_bundle(bundle)
    cases = load_cases(bundle)
    assert len(cases) >= 25
    results = run_policy_tests(compiled, cases)
    assert all(r.passed for r in results), format_report(results)


def test_every_policy_has_an_id_a_one_line_reason_and_a_case() -> None:
    covered = {p for case in load_cases(default_pack()) for p in case.policies or ()}
    for policy in PACK.policies:
        assert "id" in policy.annotations, policy.id
        assert policy.reason and "\n" not in policy.reason, policy.id
        assert policy.id in covered, f"no case names `{policy.id}`"
    tiers = {p.id for p in PACK.policies if p.tier is not None}
    assert tiers == {p.id for p in PACK.policies if p.effect == "forbid"} - PLAIN


def test_production_destructive_tier_asks_two_approvers_without_the_owner() -> None:
    tier = PACK.by_id["production-destructive-approval"].tier
    assert tier is not None
    assert (tier.quorum, tier.approvers, tier.owner_may_approve) == (2, ("approvers",), False)


RISKS = st.builds(RiskFacts)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    risk=RISKS,
    plain=st.sampled_from(sorted(PLAIN)),
    approvals=st.integers(0, 5),
    production=st.booleans(),
    tainted=st.booleans(),
    untrusted=st.booleans(),
    level=st.integers(0, 3),
)
def test_a_plain_deny_is_never_turned_into_an_approval(
    make_request: MakeRequest,
    risk: RiskFacts,
    plain: str,
    approvals: int,
    production: bool,
    tainted: bool,
    untrusted: bool,
    level: int,
) -> None:
    context = {
        "approvals": approvals,
        "environment": "production" if production else "development",
        "task": {"tainted": tainted},
        "targets": {"all_trusted": not untrusted, "any_unknown": untrusted},
        "data": {"level": level},
        "intent": {},
    }
    status = AgentStatus.ACTIVE
    if plain.startswith("intent-"):
        flag = {
            "intent-tool-not-in-scope": "tool_in_scope",
            "intent-environment-not-in-scope": "env_in_scope",
            "intent-over-limits": "within_limits",
            "intent-literals-mismatch": "literals_ok",
        }[plain]
        context["intent"] = {flag: False}
    elif plain == "agent-not-active":
        status = AgentStatus.SUSPENDED
    else:
        risk = RiskFacts(risk.read_only, risk.destructive, risk.idempotent, True)
        context["args"] = {"cards": 1} if plain == "card-to-open-world" else {"secrets": 1}
    decision = PACK.decide(make_request(risk=risk, context=context, status=status))
    assert decision.effect is Effect.DENY
    assert plain in decision.policy_ids
    assert not decision.errors


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    risk=RISKS,
    production=st.booleans(),
    tainted=st.booleans(),
    untrusted=st.booleans(),
    links_unknown=st.booleans(),
    level=st.integers(0, 3),
)
def test_approval_tiers_release_what_permits_allow(
    make_request: MakeRequest,
    risk: RiskFacts,
    production: bool,
    tainted: bool,
    untrusted: bool,
    links_unknown: bool,
    level: int,
) -> None:
    context = {
        "environment": "production" if production else "development",
        "task": {"tainted": tainted},
        "targets": {"all_trusted": not untrusted, "any_unknown": untrusted},
        "args": {"links_unknown": links_unknown},
        "data": {"level": level},
    }
    first = PACK.decide(make_request(risk=risk, context=context))
    # The only call this pack never permits: a reversible internal write in production.
    unpermitted = production and not risk.read_only and not risk.destructive and not risk.open_world
    if unpermitted:
        assert (first.effect, first.policy_ids) == (Effect.DENY, ())
        return
    assert first.effect in (Effect.ALLOW, Effect.APPROVAL_REQUIRED)
    if first.effect is Effect.APPROVAL_REQUIRED:
        assert first.approval is not None
        context["approvals"] = first.approval.quorum
        second = PACK.decide(make_request(risk=risk, context=context))
        assert second.effect is Effect.ALLOW
