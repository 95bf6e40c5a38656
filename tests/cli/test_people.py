"""`tribune group|user|agent|tool …`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Cli

# ----------------------------------------------------------------- groups and users


def test_group_and_user_add(cli: Cli) -> None:
    assert "saved" in cli.ok("group", "add", "eng", "--description", "engineers").stdout
    added = cli.ok("user", "add", "dana", "--email", "Dana@Example.com", "-g", "eng")
    assert "saved" in added.stdout
    listing = cli.ok("user", "list").stdout
    assert "dana" in listing
    assert "dana@example.com" in listing  # e-mail normalised
    assert "eng" in listing


def test_user_in_an_unknown_group_is_refused(cli: Cli) -> None:
    result = cli.error("unknown_principal", 2, "user", "add", "dana", "-g", "ghosts")
    assert "`ghosts`" in result.stderr
    assert "tribune group add" in result.stderr  # the hint
    assert "dana" not in cli.ok("user", "list").stdout


def test_bad_group_name_is_invalid_input(cli: Cli) -> None:
    cli.error("invalid_input", 2, "group", "add", "two words")


# ----------------------------------------------------------------- agents


def _register(cli: Cli, name: str, *extra: str, code: int = 0) -> dict[str, object]:
    args = ["agent", "register", name, "--owner", "user:alice", "--purpose", "do things"]
    out: dict[str, object] = cli.json(*args, *extra, code=code)
    return out


def test_agent_register_prints_the_agent(org: Cli) -> None:
    agent = _register(org, "writer", "--tool", "kb.search", "--max-amount", "500")
    assert agent["id"] == "spiffe://tribune.local/agent/writer"
    assert agent["owner"] == "user:alice"
    assert agent["status"] == "active"
    assert agent["entitlements"] == {
        "tools": ["kb.search"],
        "tool_groups": [],
        "environments": ["development"],
        "max_amount": 500,
        "max_count": None,
        "max_calls": None,
        "open_scope": False,
    }


def test_agent_owner_must_exist(org: Cli) -> None:
    for owner in ("user:nobody", "group:nobody"):
        result = org.error(
            "unknown_principal", 2, "agent", "register", "x", "--owner", owner, "--purpose", "p"
        )
        assert f"`{owner}`" in result.stderr
    assert "spiffe://tribune.local/agent/x" not in org.ok("agent", "list").stdout


def test_agent_duplicate_is_a_conflict(org: Cli) -> None:
    before = org.json("agent", "show", "helper")
    again = ("agent", "register", "helper", "--owner", "user:bob", "--purpose", "take over")
    result = org.error("conflict", 1, *again)
    assert "`helper`" in result.stderr
    assert org.json("agent", "show", "helper") == before  # unchanged


@pytest.mark.parametrize("name", ["Bad Name!", "a/b", "x" * 129, "../etc"])
def test_agent_bad_name_is_invalid_input(org: Cli, name: str) -> None:
    org.error(
        "invalid_input", 2, "agent", "register", name, "--owner", "user:alice", "--purpose", "p"
    )


def test_agent_needs_a_purpose(org: Cli) -> None:
    org.error(
        "invalid_input", 2, "agent", "register", "x", "--owner", "user:alice", "--purpose", " "
    )


@pytest.mark.parametrize("option", ["--max-amount", "--max-count", "--max-calls"])
def test_agent_negative_limit_is_invalid_input(org: Cli, option: str) -> None:
    args = ("agent", "register", "x", "--owner", "user:alice", "--purpose", "p", option, "-1")
    result = org.error("invalid_input", 2, *args)
    assert f"`{option}`" in result.stderr
    org.error("unknown_agent", 2, "agent", "show", "x")


def test_agent_list_table_and_json(org: Cli) -> None:
    table = org.ok("agent", "list").stdout
    for text in ("helper", "ops", "user:alice", "group:approvers", "production"):
        assert text in table
    listed = org.json("agent", "list", "--json")
    assert sorted(a["name"] for a in listed) == ["helper", "ops"]
    ops = next(a for a in listed if a["name"] == "ops")
    assert ops["environment"] == "production"
    assert ops["entitlements"]["tool_groups"] == ["database"]
    assert ops["entitlements"]["environments"] == ["production"]


def test_agent_show_by_name_and_by_id(org: Cli) -> None:
    by_name = org.json("agent", "show", "helper")
    assert by_name["purpose"] == "answer support tickets"
    assert org.json("agent", "show", by_name["id"]) == by_name
    org.error("unknown_agent", 2, "agent", "show", "nobody")


def test_agent_suspend_denies_calls_and_resume_restores_them(org: Cli) -> None:
    task = org.start("helper", "--purpose", "look something up", "--tool", "kb.search")
    check = ("check", "--task", task, "--tool", "kb.search", "--args", '{"q": "refunds"}')
    assert org.json(*check)["effect"] == "allow"

    assert "suspended" in org.ok("agent", "suspend", "helper").stdout
    assert org.json("agent", "show", "helper")["status"] == "suspended"
    denied = org.json(*check, code=3)
    assert denied["effect"] == "deny"
    assert [e["code"] for e in denied["errors"]] == ["agent_inactive"]
    # A suspended agent cannot start new tasks either.
    start = ("task", "start", "helper", "--purpose", "p", "--tool", "kb.search")
    org.error("agent_inactive", 1, *start)

    assert "active" in org.ok("agent", "resume", "helper").stdout
    assert org.json(*check)["effect"] == "allow"


def test_agent_suspend_unknown(org: Cli) -> None:
    org.error("unknown_agent", 2, "agent", "suspend", "nobody")


# ----------------------------------------------------------------- tools


def _tool_row(listing: str, name: str) -> list[str]:
    for line in listing.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if cells and cells[0] == name:
            return cells
    raise AssertionError(f"{name} not in\n{listing}")


def test_tool_add_inline(cli: Cli) -> None:
    spec = '{"name": "kb.search", "read_only": true, "destructive": false, "groups": ["kb"]}'
    assert "registered" in cli.ok("tool", "add", spec).stdout
    # name, groups, read-only, destructive, open-world, untrusted out
    assert _tool_row(cli.ok("tool", "list").stdout, "kb.search") == [
        "kb.search",
        "kb",
        "yes",
        "no",
        "yes",
        "no",
    ]


def test_tool_add_from_file(cli: Cli, write: Callable[[str, str], Path]) -> None:
    path = write("tool.json", '{"name": "web.fetch", "read_only": true, "open_world": true}')
    cli.ok("tool", "add", f"@{path}")
    assert _tool_row(cli.ok("tool", "list").stdout, "web.fetch")[2] == "yes"


def test_tool_add_from_stdin(cli: Cli) -> None:
    cli.ok("tool", "add", "-", input='{"name": "db.drop", "groups": ["database"]}')
    # Unannotated: destructive and open-world (MCP defaults).
    assert _tool_row(cli.ok("tool", "list").stdout, "db.drop") == [
        "db.drop",
        "database",
        "no",
        "yes",
        "yes",
        "no",
    ]


def test_tool_list_applies_configured_overrides(org: Cli) -> None:
    # email.send was registered bare; tribune.toml makes it a reversible open-world tool.
    assert _tool_row(org.ok("tool", "list").stdout, "email.send") == [
        "email.send",
        "email",
        "no",
        "no",
        "yes",
        "no",
    ]


@pytest.mark.parametrize(
    "spec",
    [
        "{bad",
        "",
        "[1, 2]",
        '{"description": "no name"}',
        '{"name": 7}',
        '{"name": "x.y", "read_only": "yes"}',
        '{"name": "x.y", "groups": "abc"}',
        '{"name": "x.y", "groups": [1]}',
        '{"name": "x.y", "input_schema": "abc"}',
        '{"name": "x.y", "input_schema": [1]}',
        '{"name": "bad name"}',
    ],
)
def test_tool_add_bad_input(cli: Cli, spec: str) -> None:
    cli.error("invalid_input", 2, "tool", "add", spec)
    assert "x.y" not in cli.ok("tool", "list").stdout


def test_tool_add_bad_json_names_the_problem(cli: Cli) -> None:
    result = cli.error("invalid_input", 2, "tool", "add", "{bad")
    assert "not valid JSON" in result.stderr


def test_tool_add_missing_file(cli: Cli, tmp_path: Path) -> None:
    result = cli.error("invalid_input", 2, "tool", "add", f"@{tmp_path / 'none.json'}")
    assert "none.json" in result.stderr


def test_tool_add_file_that_is_not_text(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "tool.json"
    path.write_bytes(b'{"name": "\xff\xfe"}')
    result = cli.error("invalid_input", 2, "tool", "add", f"@{path}")
    assert "UTF-8" in result.stderr


def test_tool_add_bad_stdin(cli: Cli) -> None:
    cli.error("invalid_input", 2, "tool", "add", "-", input="not json")
