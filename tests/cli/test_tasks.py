"""`tribune task start|end|list` and `tribune check`."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Cli

READ = ("--tool", "kb.search")


# ----------------------------------------------------------------- task start


def test_task_start_prints_the_task(org: Cli) -> None:
    task = org.json(
        "task",
        "start",
        "helper",
        "--purpose",
        "answer ticket 7",
        *READ,
        "--tool",
        "email.send",
        "--target",
        "Client@Customer.example",
        "--ttl",
        "600",
    )
    assert task["id"]
    assert task["agent"] == "spiffe://tribune.local/agent/helper"
    assert task["state"] == "active"
    assert task["purpose"] == "answer ticket 7"
    assert task["tools"] == ["email.send", "kb.search"]
    assert task["targets"] == ["client@customer.example"]
    assert task["environment"] == "development"
    assert task["ended_at"] is None


def test_task_scope_outside_entitlements_is_refused(org: Cli) -> None:
    cases = [
        ("--tool", "db.drop"),
        ("--tool-group", "database"),
        ("--tool", "kb.search", "--env", "production"),
    ]
    for extra in cases:
        result = org.error(
            "scope_exceeds_entitlements", 1, "task", "start", "helper", "--purpose", "p", *extra
        )
        assert "`helper`" in result.stderr
    assert org.json("task", "list", "--json") == []  # nothing started


def test_open_scope_needs_the_entitlement(org: Cli) -> None:
    result = org.error(
        "scope_exceeds_entitlements",
        1,
        "task",
        "start",
        "helper",
        "--purpose",
        "anything",
        "--open-scope",
    )
    assert "open-scope" in result.stderr
    org.ok(
        "agent",
        "register",
        "free",
        "--owner",
        "user:alice",
        "--purpose",
        "explore",
        "--open-scope",
    )
    task = org.json("task", "start", "free", "--purpose", "anything", "--open-scope")
    assert task["open_scope"] is True


@pytest.mark.parametrize(
    ("extra", "code", "exit_code"),
    [
        (("--purpose", "p"), "invalid_input", 2),  # neither tools nor open scope
        (("--purpose", " ", *READ), "invalid_input", 2),
        (("--purpose", "p", *READ, "--ttl", "0"), "invalid_input", 2),
        (("--purpose", "p", *READ, "--ttl", "999999999"), "invalid_input", 2),
        (("--purpose", "p", *READ, "--target", "not a target!!"), "invalid_input", 2),
        (("--purpose", "p", *READ, "--max-amount", "-1"), "invalid_input", 2),
        (("--purpose", "p", *READ, "--literal", "=value"), "invalid_input", 2),
        (("--purpose", "p", *READ, "--env", "two words"), "invalid_input", 2),
    ],
)
def test_task_start_bad_input(org: Cli, extra: tuple[str, ...], code: str, exit_code: int) -> None:
    org.error(code, exit_code, "task", "start", "helper", *extra)


def test_task_start_prints_a_task_token_only_when_asked(org: Cli) -> None:
    from tribune.bootstrap import open_tribune

    plain = org.json("task", "start", "helper", "--purpose", "no token", *READ)
    assert "token" not in plain
    task = org.json("task", "start", "helper", "--purpose", "for the gateway", *READ, "--token")
    with open_tribune(org.home) as tr:
        principal = tr.identity.authenticate(task["token"])
    assert (principal.via, principal.task_id) == ("task_token", task["id"])
    assert principal.agent_id == "spiffe://tribune.local/agent/helper"


def test_task_start_for_an_unknown_agent(org: Cli) -> None:
    org.error("unknown_agent", 2, "task", "start", "nobody", "--purpose", "p", *READ)


def _stored_bytes(home: Path) -> bytes:
    """Every byte of the database, its journal files included."""
    return b"".join(p.read_bytes() for p in sorted(home.glob("tribune.db*")))


def test_literal_is_stored_only_as_a_digest(org: Cli, tmp_path: Path) -> None:
    secret = "xq-7Lh2-literal-9f3c-never-stored"
    result = org.ok(
        "task", "start", "helper", "--purpose", "p", *READ, "--literal", f"ACCOUNT={secret}"
    )
    task = json.loads(result.stdout)
    assert task["literals"] == ["ACCOUNT"]
    assert secret not in result.output
    org.ok("check", "--task", task["id"], *READ, "--args", '{"q": "x"}')

    stored = _stored_bytes(org.home)
    assert secret.encode() not in stored
    # The keyed digest is there (the search above looked at the right bytes); the plain
    # SHA-256 a guesser would compute is not.
    key = (org.home / "keys" / "digest.secret").read_bytes()
    assert hmac.new(key, secret.encode(), hashlib.sha256).hexdigest().encode() in stored
    assert hashlib.sha256(secret.encode()).hexdigest().encode() not in stored

    out = tmp_path / "export.jsonl"
    org.ok("audit", "export", "--format", "jsonl", "-o", str(out))
    assert secret not in out.read_text(encoding="utf-8")
    assert secret not in org.ok("audit", "export").stdout
    assert secret not in org.ok("audit", "tail", "-n", "50").stdout
    assert secret not in org.ok("task", "list", "--json").stdout


def test_literal_without_value_is_prompted_hidden(org: Cli) -> None:
    secret = "prompted-literal-b81e-value"
    result = org.ok(
        "task", "start", "helper", "--purpose", "p", *READ, "--literal", "PIN", input=secret + "\n"
    )
    assert secret not in result.output  # not echoed
    task = json.loads(result.stdout[result.stdout.index("{") :])
    assert task["literals"] == ["PIN"]
    stored = _stored_bytes(org.home)
    assert secret.encode() not in stored
    key = (org.home / "keys" / "digest.secret").read_bytes()
    assert hmac.new(key, secret.encode(), hashlib.sha256).hexdigest().encode() in stored


# ----------------------------------------------------------------- task end and list


def test_task_end_then_calls_are_denied(org: Cli) -> None:
    task = org.start("helper", "--purpose", "p", *READ)
    ended = org.json("task", "end", task)
    assert ended["state"] == "ended"
    assert ended["ended_at"]
    assert org.json("task", "end", task)["ended_at"] == ended["ended_at"]  # idempotent
    denied = org.json("check", "--task", task, *READ, code=3)
    assert [e["code"] for e in denied["errors"]] == ["task_inactive"]


def test_task_end_unknown(org: Cli) -> None:
    org.error("unknown_task", 2, "task", "end", "no-such-task")


def test_task_list_filters(org: Cli) -> None:
    first = org.start("helper", "--purpose", "first", *READ)
    second = org.start("helper", "--purpose", "second", *READ)
    ops = org.start("ops", "--purpose", "maintenance", "--tool-group", "database")
    org.ok("task", "end", first)

    everything = org.json("task", "list", "--json")
    assert {t["id"] for t in everything} == {first, second, ops}
    active = org.json("task", "list", "--active", "--json")
    assert {t["id"] for t in active} == {second, ops}
    helpers = org.json("task", "list", "--agent", "helper", "--json")
    assert {t["id"] for t in helpers} == {first, second}
    both = org.json("task", "list", "--agent", "helper", "--active", "--json")
    assert [t["id"] for t in both] == [second]
    by_id = org.json("task", "list", "--agent", "spiffe://tribune.local/agent/ops", "--json")
    assert [t["id"] for t in by_id] == [ops]

    table = org.ok("task", "list").stdout
    for task_id in (first, second, ops):
        assert task_id in table  # whole ids, ready to copy
    assert "ended" in table


def test_task_list_unknown_agent(org: Cli) -> None:
    org.error("unknown_agent", 2, "task", "list", "--agent", "nobody")


# ----------------------------------------------------------------- check


def test_check_allow(org: Cli) -> None:
    task = org.start("helper", "--purpose", "p", *READ)
    decision = org.json("check", "--task", task, *READ, "--args", '{"q": "refund policy"}')
    assert decision["effect"] == "allow"
    assert decision["tool"] == "kb.search"
    assert decision["policy_ids"] == ["read-in-intent"]
    assert decision["policy_version"]
    assert decision["action_id"]
    assert decision["action_digest"].startswith("sha256:")
    assert decision["errors"] == []


def test_check_records_intent_and_decision(org: Cli) -> None:
    task = org.start("helper", "--purpose", "p", *READ)
    before = org.audit_count()
    decision = org.json("check", "--task", task, *READ)
    assert org.audit_count() == before + 2
    tail = [json.loads(line) for line in org.ok("audit", "tail", "-n", "2").stdout.splitlines()]
    assert [r["kind"] for r in tail] == ["intent", "decision"]
    assert {r["action_id"] for r in tail} == {decision["action_id"]}


def test_check_out_of_intent_is_denied(org: Cli) -> None:
    task = org.start("helper", "--purpose", "p", *READ)
    # email.send is within helper's entitlements but not in this task's intent.
    args = '{"to": ["bob@example.com"]}'
    decision = org.json("check", "--task", task, "--tool", "email.send", "--args", args, code=3)
    assert decision["effect"] == "deny"
    assert decision["policy_ids"] == ["intent-tool-not-in-scope"]


def test_check_environment_outside_the_task_is_denied(org: Cli) -> None:
    task = org.start("helper", "--purpose", "p", *READ)
    decision = org.json("check", "--task", task, *READ, "--env", "production", code=3)
    assert "intent-environment-not-in-scope" in decision["policy_ids"]


def test_check_targets_are_classified(org: Cli) -> None:
    task = org.start(
        "helper", "--purpose", "p", "--tool", "email.send", "--target", "client@customer.example"
    )

    def send(to: str) -> tuple[int, dict[str, object]]:
        result = org(
            "check", "--task", task, "--tool", "email.send", "--args", json.dumps({"to": [to]})
        )
        return result.exit_code, json.loads(result.stdout)

    assert send("bob@example.com")[0] == 0  # internal (directory domain)
    assert send("client@customer.example")[0] == 0  # named in the intent
    code, decision = send("someone@elsewhere.example")
    assert code == 4
    assert decision["effect"] == "approval_required"
    assert decision["policy_ids"] == ["untrusted-target-approval"]
    assert decision["approval"] == {"quorum": 1, "approvers": [], "owner_may_approve": False}


def test_check_production_destructive_needs_two_approvers(org: Cli) -> None:
    task = org.start("ops", "--purpose", "drop an old table", "--tool-group", "database")
    decision = org.json(
        "check", "--task", task, "--tool", "db.drop", "--args", '{"table": "t2019"}', code=4
    )
    assert decision["effect"] == "approval_required"
    assert decision["policy_ids"] == ["production-destructive-approval"]
    assert decision["approval"]["quorum"] == 2
    assert decision["approval"]["approvers"] == ["approvers"]
    assert decision["approval"]["owner_may_approve"] is False


def test_check_unknown_tool_is_denied(org: Cli) -> None:
    task = org.start("helper", "--purpose", "p", *READ)
    decision = org.json("check", "--task", task, "--tool", "no.such.tool", code=3)
    assert decision["effect"] == "deny"
    assert [e["code"] for e in decision["errors"]] == ["unknown_tool"]
    assert decision["policy_ids"] == []


def test_check_unknown_task_is_denied_and_recorded(org: Cli) -> None:
    before = org.audit_count()
    decision = org.json("check", "--task", "no-such-task", *READ, code=3)
    assert decision["effect"] == "deny"
    assert [e["code"] for e in decision["errors"]] == ["unknown_task"]
    assert org.audit_count() == before + 2  # fail closed, but recorded


@pytest.mark.parametrize("how", ["inline", "file", "stdin"])
def test_check_with_a_request(org: Cli, write: Callable[[str, str], Path], how: str) -> None:
    task = org.start("helper", "--purpose", "p", *READ)
    request = json.dumps({"task": task, "tool": "kb.search", "arguments": {"q": "x"}})
    if how == "inline":
        decision = org.json("check", "--request", request)
    elif how == "file":
        decision = org.json("check", "--request", f"@{write('request.json', request)}")
    else:
        decision = org.json("check", "--request", "-", input=request)
    assert decision["effect"] == "allow"
    assert decision["tool"] == "kb.search"


def test_check_request_environment(org: Cli) -> None:
    task = org.start("helper", "--purpose", "p", *READ)
    request = {"task": task, "tool": "kb.search", "environment": "production"}
    decision = org.json("check", "--request", json.dumps(request), code=3)
    assert "intent-environment-not-in-scope" in decision["policy_ids"]


def test_check_args_from_file_and_stdin(org: Cli, write: Callable[[str, str], Path]) -> None:
    task = org.start("helper", "--purpose", "p", "--tool", "email.send")
    args = json.dumps({"to": ["stranger@elsewhere.example"]})
    path = write("args.json", args)
    # The recipient in the arguments is read: unknown, so approval is required.
    check = ("check", "--task", task, "--tool", "email.send", "--args")
    from_file = org.json(*check, f"@{path}", code=4)
    from_stdin = org.json(*check, "-", input=args, code=4)
    assert from_file["effect"] == from_stdin["effect"] == "approval_required"
    assert from_file["action_digest"] == from_stdin["action_digest"]  # the same action


@pytest.mark.parametrize(
    "args",
    [
        ["--args", "{bad"],
        ["--args", "[1, 2]"],
        ["--args", '"text"'],
        ["--args", '{"n": NaN}'],
        ["--args", "@/nonexistent/args.json"],
        ["--request", '{"task": "t", "tool": "kb.search", "extra": 1}'],
        ["--request", "[]"],
        ["--request", '{"tool": "kb.search"}'],
        ["--request", '{"task": "t", "tool": "kb.search", "arguments": [1]}'],
        ["--request", "{bad"],
        [],  # neither task nor tool
    ],
)
def test_check_bad_input_stores_nothing(org: Cli, args: list[str]) -> None:
    task = org.start("helper", "--purpose", "p", *READ)
    before = org.audit_count()
    base = ["--task", task, *READ] if args and args[0] == "--args" else []
    org.error("invalid_input", 2, "check", *base, *args)
    assert org.audit_count() == before


def test_check_unknown_request_field_is_named(org: Cli) -> None:
    result = org.error(
        "invalid_input", 2, "check", "--request", '{"task": "t", "tool": "x", "argumentz": {}}'
    )
    assert "`argumentz`" in result.stderr
