"""Policy tests: YAML cases run against a compiled policy version.

A policy directory's ``tests/*.yaml`` files each hold a list of cases::

    - name: read inside intent passes
      agent: {name: reader, owner: user:alice, environment: development}   # optional
      owner_groups: [eng]                                                 # optional
      tool: {name: crm.read, groups: [crm], read_only: true, destructive: false}
      context: {intent: {tool_in_scope: true}}   # deep-merged onto default_context()
      expect: allow                              # allow | deny | approval_required
      policies: [read-in-intent]                 # optional: exact determining policy ids
      quorum: 2                                  # optional, approval_required only

Optional ``approvers`` and ``owner_may_approve`` check the approval asked for. Unknown keys,
unknown context fields and wrongly typed values are errors, so a typo cannot pass silently.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import yaml

from tribune.core.model import (
    Agent,
    AgentStatus,
    Decision,
    Effect,
    Entitlements,
    OwnerRef,
    RiskFacts,
    Tool,
    agent_spiffe_id,
)
from tribune.errors import PolicyInvalid, TribuneError
from tribune.policy.bundle import Bundle
from tribune.policy.engine import CompiledPolicy
from tribune.policy.request import PolicyRequest, default_context

__all__ = [
    "CaseResult",
    "PolicyCase",
    "default_context",
    "format_report",
    "load_cases",
    "parse_cases",
    "raise_for_failures",
    "run_policy_tests",
]

TEST_TRUST_DOMAIN = "tribune.test"
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
CASE_KEYS = {
    "name", "agent", "owner_groups", "owner_email", "tool", "action", "context",
    "expect", "policies", "quorum", "approvers", "owner_may_approve",
}  # fmt: skip
AGENT_KEYS = {"id", "name", "owner", "environment", "purpose", "status"}
RISK_KEYS = ("read_only", "destructive", "idempotent", "open_world", "untrusted_output")
TOOL_KEYS = {"name", "groups", *RISK_KEYS}


@dataclass(frozen=True, slots=True)
class PolicyCase:
    """One test case: a request and what its decision must be."""

    name: str
    file: str
    line: int
    request: PolicyRequest
    expect: Effect
    policies: tuple[str, ...] | None = None
    quorum: int | None = None
    approvers: tuple[str, ...] | None = None
    owner_may_approve: bool | None = None


@dataclass(frozen=True, slots=True)
class CaseResult:
    """The decision a case got and what differed from its expectations (empty: passed)."""

    case: PolicyCase
    decision: Decision
    differences: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.differences

    def describe(self) -> str:
        """``file:line: `name`: what differed`` (or ``passed``) on one line."""
        outcome = "; ".join(self.differences) or "passed"
        return f"{self.case.file}:{self.case.line}: `{self.case.name}`: {outcome}"


def load_cases(files: Bundle | Mapping[str, str]) -> list[PolicyCase]:
    """Every case of a bundle's ``tests/*.yaml``; ``PolicyInvalid`` lists all bad cases."""
    bundle = files if isinstance(files, Bundle) else Bundle.from_files(files)
    cases: list[PolicyCase] = []
    problems: list[str] = []
    for path, text in sorted(bundle.test_files.items()):
        try:
            cases.extend(parse_cases(text, path))
        except PolicyInvalid as exc:
            problems.extend(exc.problems)
    if problems:
        raise PolicyInvalid("policy tests cannot be read", problems=problems)
    return cases


def parse_cases(text: str, file: str) -> list[PolicyCase]:
    """The cases of one YAML file named ``file``; ``PolicyInvalid`` lists all problems."""
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = f"{file}:{line}: {exc}"
        raise PolicyInvalid("policy tests cannot be read", problems=[problem]) from None
    if node is None:
        return []  # an empty file holds no cases
    if not isinstance(data, list) or not isinstance(node, yaml.SequenceNode):
        raise PolicyInvalid(
            "policy tests cannot be read", problems=[f"{file}:1: expected a list of cases"]
        )
    cases: list[PolicyCase] = []
    problems: list[str] = []
    names: set[str] = set()
    for item, item_node in zip(data, node.value, strict=True):
        line = item_node.start_mark.line + 1
        try:
            case = _case(item, file, line)
        except TribuneError as exc:
            problems.append(f"{file}:{line}: {exc.message}")
            continue
        if case.name in names:
            problems.append(f"{file}:{line}: duplicate case name `{case.name}`")
        names.add(case.name)
        cases.append(case)
    if problems:
        raise PolicyInvalid("policy tests cannot be read", problems=problems)
    return cases


def run_policy_tests(compiled: CompiledPolicy, cases: Sequence[PolicyCase]) -> list[CaseResult]:
    """Decide every case and compare the decision with its expectations."""
    return [_run(compiled, case) for case in cases]


def format_report(results: Sequence[CaseResult]) -> str:
    """A plain-text report: one block per failed case (file, line, name, what differed)."""
    failed = [r for r in results if not r.passed]
    lines = [f"{len(results) - len(failed)} passed, {len(failed)} failed"]
    for r in failed:
        lines.append(f"FAIL {r.case.file}:{r.case.line} `{r.case.name}`")
        lines.extend(f"  {d}" for d in r.differences)
    return "\n".join(lines)


def raise_for_failures(results: Sequence[CaseResult]) -> None:
    """Raise ``PolicyInvalid`` naming every failed case; a version activates only if none fail."""
    failed = [r for r in results if not r.passed]
    if failed:
        problems = [r.describe() for r in failed]
        raise PolicyInvalid(f"{len(failed)} policy test(s) failed", problems=problems)


# --------------------------------------------------------------------------- running


def _run(compiled: CompiledPolicy, case: PolicyCase) -> CaseResult:
    got = compiled.decide(case.request)
    diffs: list[str] = []
    if got.effect is not case.expect:
        diffs.append(f"expected `{case.expect.value}`, got `{got.effect.value}`")
    if case.policies is not None and sorted(case.policies) != sorted(got.policy_ids):
        diffs.append(f"expected policies {_ids(case.policies)}, got {_ids(got.policy_ids)}")
    need = got.approval
    if case.quorum is not None and (need is None or need.quorum != case.quorum):
        diffs.append(f"expected quorum {case.quorum}, got {need.quorum if need else 'none'}")
    if case.approvers is not None and (need is None or need.approvers != case.approvers):
        diffs.append(
            f"expected approvers {_ids(case.approvers)}, got "
            f"{_ids(need.approvers) if need else 'none'}"
        )
    if case.owner_may_approve is not None and (
        need is None or need.owner_may_approve is not case.owner_may_approve
    ):
        diffs.append(f"expected owner_may_approve {case.owner_may_approve}")
    # A deny caused by an evaluation error is a broken policy, not the denial the case meant.
    diffs.extend(f"evaluation error: {e.message}" for e in got.errors)
    return CaseResult(case, got, tuple(diffs))


def _ids(ids: Sequence[str]) -> str:
    return "[" + ", ".join(sorted(ids)) + "]" if ids else "[] (none)"


# --------------------------------------------------------------------------- reading a case


def _case(item: Any, file: str, line: int) -> PolicyCase:
    case = _mapping(item, "case", CASE_KEYS)
    name = case.get("name")
    if not isinstance(name, str) or not name:
        raise PolicyInvalid("a case needs a `name`")
    where = f"case `{name}`"
    try:
        expect = Effect(str(case.get("expect")))
    except ValueError:
        raise PolicyInvalid(
            f"{where}: `expect` must be `allow`, `deny` or `approval_required`"
        ) from None
    quorum = case.get("quorum")
    if quorum is not None and (type(quorum) is not int or quorum < 1):
        raise PolicyInvalid(f"{where}: `quorum` must be a positive integer")
    oma = case.get("owner_may_approve")
    if oma is not None and not isinstance(oma, bool):
        raise PolicyInvalid(f"{where}: `owner_may_approve` must be true or false")
    approvers = case.get("approvers")
    request = PolicyRequest(
        agent=_agent(case.get("agent", {}), where),
        owner_groups=_strings(case.get("owner_groups", []), f"{where}: `owner_groups`"),
        owner_email=_text(case.get("owner_email", ""), f"{where}: `owner_email`"),
        tool=_tool(case.get("tool", {}), where),
        context=_merge(default_context(), case.get("context", {}), where, "context"),
        action=_text(case.get("action", "call"), f"{where}: `action`"),
    )
    policies = case.get("policies")
    return PolicyCase(
        name=name,
        file=file,
        line=line,
        request=request,
        expect=expect,
        policies=None if policies is None else _strings(policies, f"{where}: `policies`"),
        quorum=quorum,
        approvers=None
        if approvers is None
        else tuple(sorted(_strings(approvers, f"{where}: `approvers`"))),
        owner_may_approve=oma,
    )


def _agent(raw: Any, where: str) -> Agent:
    spec = _mapping(raw, f"{where}: `agent`", AGENT_KEYS)
    name = _text(spec.get("name", "agent"), f"{where}: `agent.name`")
    status = _text(spec.get("status", "active"), f"{where}: `agent.status`")
    if status not in set(AgentStatus):
        raise PolicyInvalid(f"{where}: unknown agent status `{status}`")
    agent_id = spec.get("id") or agent_spiffe_id(TEST_TRUST_DOMAIN, name)
    return Agent(
        id=_text(agent_id, f"{where}: `agent.id`"),
        name=name,
        owner=OwnerRef.parse(_text(spec.get("owner", "user:alice"), f"{where}: `agent.owner`")),
        purpose=_text(spec.get("purpose", ""), f"{where}: `agent.purpose`"),
        environment=_text(spec.get("environment", "development"), f"{where}: `agent.environment`"),
        entitlements=Entitlements(),
        status=AgentStatus(status),
        created_at=EPOCH,
    )


def _tool(raw: Any, where: str) -> Tool:
    spec = _mapping(raw, f"{where}: `tool`", TOOL_KEYS)
    defaults = RiskFacts()
    flags: dict[str, bool] = {}
    for key in RISK_KEYS:
        value = spec.get(key, getattr(defaults, key))
        if not isinstance(value, bool):
            raise PolicyInvalid(f"{where}: `tool.{key}` must be true or false")
        flags[key] = value
    return Tool(
        name=_text(spec.get("name", "tool"), f"{where}: `tool.name`"),
        risk=RiskFacts(**flags),
        groups=_strings(spec.get("groups", []), f"{where}: `tool.groups`"),
    )


def _merge(base: dict[str, Any], over: Any, where: str, path: str) -> dict[str, Any]:
    """Deep-merge ``over`` onto ``base``; each key must exist there with the same kind of value.

    ``path`` is the dotted name of ``base`` (``context.intent``) for messages.
    """
    if not isinstance(over, Mapping):
        raise PolicyInvalid(f"{where}: `{path}` must be a mapping")
    for key, value in over.items():
        here = f"{path}.{key}"
        if key not in base:
            raise PolicyInvalid(f"{where}: `{here}` is not a context field")
        current = base[key]
        if isinstance(current, dict):
            base[key] = _merge(current, value, where, here)
        elif isinstance(current, list):
            base[key] = list(_strings(value, f"{where}: `{here}`"))
        elif type(value) is not type(current):
            kind = {bool: "true or false", int: "an integer", str: "a string"}[type(current)]
            raise PolicyInvalid(f"{where}: `{here}` must be {kind}")
        else:
            base[key] = value
    return base


def _mapping(raw: Any, what: str, keys: set[str]) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise PolicyInvalid(f"{what} must be a mapping")
    unknown = sorted(str(k) for k in raw if k not in keys)
    if unknown:
        raise PolicyInvalid(f"{what}: unknown key `{unknown[0]}`")
    return raw


def _strings(raw: Any, what: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        raise PolicyInvalid(f"{what} must be a list of strings")
    return tuple(raw)


def _text(raw: Any, what: str) -> str:
    if not isinstance(raw, str):
        raise PolicyInvalid(f"{what} must be a string")
    return raw
