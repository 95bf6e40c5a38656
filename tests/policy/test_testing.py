"""Policy test cases: reading YAML strictly, running cases, reporting failures."""

from __future__ import annotations

from collections.abc import Callable

import cedarpy
import pytest

from tribune.core.model import Effect
from tribune.errors import PolicyInvalid
from tribune.policy import (
    PolicyRequest,
    builtin_schema,
    compile_bundle,
    default_context,
    format_report,
    load_cases,
    raise_for_failures,
    run_policy_tests,
)
from tribune.policy.engine import policy_set
from tribune.policy.entities import entities_json
from tribune.policy.testing import parse_cases

MakeRequest = Callable[..., PolicyRequest]

POLICIES = {
    "p.cedar": (
        '@id("reads") permit (principal, action == Action::"call", resource)'
        " when { resource.read_only };\n"
        '@id("gate") @approval("2") @approvers("sre")\n'
        'forbid (principal, action == Action::"call", resource) when { context.task.tainted }\n'
        "unless { context.approvals >= 2 };\n"
    )
}

CASES = """\
- name: read passes
  tool: {name: crm.read, groups: [crm], read_only: true, destructive: false}
  expect: allow
  policies: [reads]

- name: tainted read needs two
  tool: {name: crm.read, read_only: true}
  context: {task: {tainted: true}}
  expect: approval_required
  policies: [gate]
  quorum: 2
  approvers: [sre]
  owner_may_approve: false

- name: unannotated tool is denied
  agent: {name: other, owner: group:sre, environment: production, status: active}
  expect: deny
  policies: []
"""


def test_default_context_validates_against_the_schema(make_request: MakeRequest) -> None:
    schema = cedarpy.Schema.from_str(builtin_schema())
    compiled = compile_bundle(POLICIES)
    req = make_request()
    assert req.context == default_context()
    entities = cedarpy.Entities.from_json_str(entities_json(req), schema)
    request = {
        "principal": {"type": "Agent", "id": req.agent.id},
        "action": {"type": "Action", "id": "call"},
        "resource": {"type": "Tool", "id": req.tool.name},
        "context": default_context(),
    }
    ok = cedarpy.is_authorized(request, policy_set(compiled.policies), entities, schema=schema)
    assert ok.allowed and not ok.diagnostics.errors
    # The check has teeth: a context missing a field, or with a wrong type, is refused.
    for broken in ({**default_context(), "approvals": "0"}, {"environment": "development"}):
        bad = cedarpy.is_authorized(
            {**request, "context": broken}, policy_set(compiled.policies), entities, schema=schema
        )
        assert not bad.allowed


def test_default_context_is_a_fresh_copy() -> None:
    first = default_context()
    first["intent"]["tool_in_scope"] = False
    assert default_context()["intent"]["tool_in_scope"] is True


def test_cases_run_and_pass() -> None:
    files = {**POLICIES, "tests/cases.yaml": CASES}
    cases = load_cases(files)
    assert [c.line for c in cases] == [1, 6, 15]
    assert cases[2].request.agent.owner.kind == "group"
    assert cases[2].request.tool.risk.destructive is True  # MCP default
    results = run_policy_tests(compile_bundle(files), cases)
    assert [r.passed for r in results] == [True, True, True]
    assert format_report(results) == "3 passed, 0 failed"
    raise_for_failures(results)


def test_failures_name_file_line_and_what_differed() -> None:
    wrong = (
        CASES.replace("expect: allow", "expect: deny")
        .replace("quorum: 2", "quorum: 1")
        .replace("approvers: [sre]", "approvers: [ops]")
        .replace("owner_may_approve: false", "owner_may_approve: true")
        .replace("policies: []", "policies: [reads]")
    )
    files = {**POLICIES, "tests/wrong.yaml": wrong}
    results = run_policy_tests(compile_bundle(files), load_cases(files))
    assert [r.passed for r in results] == [False, False, False]
    report = format_report(results)
    assert report.splitlines()[0] == "0 passed, 3 failed"
    assert "FAIL tests/wrong.yaml:1 `read passes`" in report
    assert "expected `deny`, got `allow`" in report
    assert "expected quorum 1, got 2" in report
    assert "expected approvers [ops], got [sre]" in report
    assert "expected owner_may_approve True" in report
    assert "expected policies [reads], got [] (none)" in report
    with pytest.raises(PolicyInvalid) as info:
        raise_for_failures(results)
    assert len(info.value.problems) == 3
    assert info.value.problems[0].startswith("tests/wrong.yaml:1: `read passes`: expected")


def test_evaluation_errors_fail_a_case_even_when_deny_was_expected() -> None:
    # Validated policies cannot error on a complete context, so take a field away.
    compiled = compile_bundle(POLICIES)
    case = load_cases({"tests/a.yaml": "- {name: x, expect: deny, tool: {read_only: false}}"})[0]
    del case.request.context["task"]
    result = run_policy_tests(compiled, [case])[0]
    assert not result.passed
    assert any(d.startswith("evaluation error:") for d in result.differences)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("- {expect: allow}", "a case needs a `name`"),
        ("- {name: x}", "case `x`: `expect` must be `allow`, `deny` or `approval_required`"),
        ("- {name: x, expect: maybe}", "`expect` must be"),
        ("- {name: x, expect: allow, colour: red}", "case: unknown key `colour`"),
        ("- {name: x, expect: allow, tool: {nme: a}}", "`tool`: unknown key `nme`"),
        (
            "- {name: x, expect: allow, tool: {read_only: 'yes'}}",
            "`tool.read_only` must be true or false",
        ),
        ("- {name: x, expect: allow, agent: {status: sleepy}}", "unknown agent status `sleepy`"),
        ("- {name: x, expect: allow, agent: {owner: alice}}", "invalid owner `alice`"),
        (
            "- {name: x, expect: allow, context: {intent: {tool_in_scop: true}}}",
            "`context.intent.tool_in_scop` is not a context field",
        ),
        (
            "- {name: x, expect: allow, context: {approvals: '2'}}",
            "`context.approvals` must be an integer",
        ),
        (
            "- {name: x, expect: allow, context: {approvals: true}}",
            "`context.approvals` must be an integer",
        ),
        (
            "- {name: x, expect: allow, context: {data: {classes: restricted}}}",
            "`context.data.classes` must be a list of strings",
        ),
        (
            "- {name: x, expect: allow, context: {intent: true}}",
            "`context.intent` must be a mapping",
        ),
        ("- {name: x, expect: allow, quorum: 0}", "`quorum` must be a positive integer"),
        ("- {name: x, expect: allow, policies: a}", "`policies` must be a list of strings"),
        (
            "- {name: x, expect: allow, owner_groups: [1]}",
            "`owner_groups` must be a list of strings",
        ),
        ("- {name: x, expect: allow}\n- {name: x, expect: deny}", "duplicate case name `x`"),
        ("name: x", "expected a list of cases"),
        ("- [unclosed", "while parsing"),
        ("- just a string", "case must be a mapping"),
    ],
)
def test_bad_cases_are_reported_with_file_and_line(text: str, problem: str) -> None:
    with pytest.raises(PolicyInvalid) as info:
        parse_cases(text, "tests/bad.yaml")
    assert len(info.value.problems) == 1, info.value.problems
    assert info.value.problems[0].startswith("tests/bad.yaml:")
    assert problem in info.value.problems[0]


def test_every_bad_case_in_every_file_is_listed() -> None:
    files = {
        "tests/a.yaml": "- {name: ok, expect: allow}\n- {name: x}\n",
        "tests/b.yaml": "- {expect: allow}\n",
        "tests/empty.yaml": "",
        "notes/c.yaml": "not a test file",
    }
    with pytest.raises(PolicyInvalid) as info:
        load_cases(files)
    assert [p.split(": ")[0] for p in info.value.problems] == ["tests/a.yaml:2", "tests/b.yaml:1"]
    assert load_cases({"tests/empty.yaml": ""}) == []


def test_case_values_reach_the_request() -> None:
    text = """\
- name: everything
  agent: {id: "spiffe://x/agent/z", name: z, owner: user:bob, environment: prod, purpose: p}
  owner_groups: [eng, ops]
  owner_email: bob@example.org
  action: call
  tool: {name: t, groups: [a, b], read_only: true, destructive: false, idempotent: true,
         open_world: false, untrusted_output: true}
  context: {approvals: 2, environment: production, data: {classes: [restricted], level: 3}}
  expect: deny
"""
    case = parse_cases(text, "tests/t.yaml")[0]
    req = case.request
    assert case.expect is Effect.DENY
    assert (req.agent.id, req.agent.name, str(req.agent.owner)) == (
        "spiffe://x/agent/z",
        "z",
        "user:bob",
    )
    assert req.owner_groups == ("eng", "ops") and req.owner_email == "bob@example.org"
    assert req.tool.groups == ("a", "b") and req.tool.risk.untrusted_output is True
    expected = default_context()
    expected.update(approvals=2, environment="production")
    expected["data"] = {"classes": ["restricted"], "level": 3}
    assert req.context == expected
