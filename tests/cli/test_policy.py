"""`tribune policy validate|test|activate|list|rollback`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tribune.bootstrap import copy_pack, pack_files

from .conftest import Cli

# A policy that names an attribute the schema does not have: validation must refuse it.
BROKEN = """
@id("broken")
permit (principal, action == Action::"call", resource)
when { resource.no_such_attribute };
"""

# A new policy and its own test: searching the knowledge base is frozen.
FREEZE = """// Searching the knowledge base is frozen for now.
@id("kb-frozen")
@reason("the knowledge base is being migrated")
forbid (principal, action == Action::"call", resource == Tool::"kb.search");
"""
FREEZE_TEST = """- name: knowledge base search is frozen
  tool: {name: kb.search, groups: [kb], read_only: true, destructive: false, open_world: false}
  expect: deny
  policies: [kb-frozen]
"""

WRONG_TEST = """# One case that expects the wrong effect.

- name: reads are wrongly expected to be denied
  tool: {name: kb.search, groups: [kb], read_only: true, destructive: false, open_world: false}
  expect: deny
"""


def _pack(tmp_path: Path, name: str) -> Path:
    dest = tmp_path / name
    copy_pack(dest)
    return dest


def _tests_in_pack() -> int:
    return sum(
        text.count("- name:") for name, text in pack_files().items() if name.startswith("tests/")
    )


def _versions(cli: Cli) -> list[tuple[str, bool]]:
    """(id, active) for each row of `policy list`, in the order shown."""
    out = []
    for line in cli.ok("policy", "list").stdout.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if cells and cells[0]:
            out.append((cells[0], cells[1] == "*"))
    return out


def _active(cli: Cli) -> str:
    active = [i for i, a in _versions(cli) if a]
    assert len(active) == 1, _versions(cli)
    return active[0]


def _activated_id(stdout: str) -> str:
    found = re.search(r"activated policy version (\S+)", stdout)
    assert found, stdout
    return found.group(1)


# ----------------------------------------------------------------- validate


def test_validate_the_default_pack(cli: Cli) -> None:
    result = cli.ok("policy", "validate", str(cli.home / "policies"), home=False)
    assert re.search(r"valid: \d+ policies", result.stdout)


def test_validate_names_file_and_line(cli: Cli, tmp_path: Path) -> None:
    bad = _pack(tmp_path, "bad")
    permits = bad / "permits.cedar"
    line = len(permits.read_text(encoding="utf-8").splitlines()) + 2  # the `@id` line
    permits.write_text(permits.read_text(encoding="utf-8") + BROKEN, encoding="utf-8")
    result = cli.error("policy_invalid", 2, "policy", "validate", str(bad), home=False)
    assert f"permits.cedar:{line}" in result.stderr
    assert "no_such_attribute" in result.stderr


def test_validate_a_syntax_error(cli: Cli, tmp_path: Path) -> None:
    bad = _pack(tmp_path, "bad")
    (bad / "extra.cedar").write_text('permit (principal, action, resource)\nwhen { "', "utf-8")
    result = cli.error("policy_invalid", 2, "policy", "validate", str(bad), home=False)
    assert "extra.cedar:" in result.stderr


def test_validate_a_missing_directory(cli: Cli, tmp_path: Path) -> None:
    missing = str(tmp_path / "none")
    for command in ("validate", "test", "activate"):
        takes_home = command == "activate"
        result = cli.error("invalid_input", 2, "policy", command, missing, home=takes_home)
        assert "does not exist" in result.stderr


def test_validate_an_empty_directory(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    cli.error("policy_invalid", 2, "policy", "validate", str(tmp_path / "empty"), home=False)


# ----------------------------------------------------------------- test


def test_policy_test_passes_on_the_default_pack(cli: Cli) -> None:
    result = cli("policy", "test", str(cli.home / "policies"), home=False)
    assert result.exit_code == 0, result.output
    n = _tests_in_pack()
    assert n > 10
    assert f"{n} passed, 0 failed" in result.stdout


def test_policy_test_names_the_failing_case(cli: Cli, tmp_path: Path) -> None:
    wrong = _pack(tmp_path, "wrong")
    (wrong / "tests" / "wrong.yaml").write_text(WRONG_TEST, encoding="utf-8")
    result = cli("policy", "test", str(wrong), home=False)
    assert result.exit_code == 1, result.output
    assert "tests/wrong.yaml:3" in result.stdout
    assert "`reads are wrongly expected to be denied`" in result.stdout
    assert f"{_tests_in_pack()} passed, 1 failed" in result.stdout


def test_policy_test_on_a_broken_pack(cli: Cli, tmp_path: Path) -> None:
    bad = _pack(tmp_path, "bad")
    (bad / "permits.cedar").write_text(BROKEN, encoding="utf-8")
    cli.error("policy_invalid", 2, "policy", "test", str(bad), home=False)


# ----------------------------------------------------------------- activate, list, rollback


def test_home_starts_with_one_active_version(cli: Cli) -> None:
    versions = _versions(cli)
    assert len(versions) == 1
    assert versions[0][1]


def test_activate_a_new_version_changes_decisions(org: Cli, tmp_path: Path) -> None:
    first = _active(org)
    task = org.start("helper", "--purpose", "p", "--tool", "kb.search")
    check = ("check", "--task", task, "--tool", "kb.search")
    assert org.json(*check)["policy_version"] == first

    frozen = _pack(tmp_path, "frozen")
    (frozen / "freeze.cedar").write_text(FREEZE, encoding="utf-8")
    (frozen / "tests" / "freeze.yaml").write_text(FREEZE_TEST, encoding="utf-8")
    second = _activated_id(org.ok("policy", "activate", str(frozen), "--note", "freeze").stdout)
    assert second != first
    assert _active(org) == second
    assert {i for i, _ in _versions(org)} == {first, second}
    assert "freeze" in org.ok("policy", "list").stdout

    denied = org.json(*check, code=3)
    assert denied["policy_ids"] == ["kb-frozen"]
    assert denied["policy_version"] == second

    org.ok("policy", "rollback", first)
    assert _active(org) == first
    allowed = org.json(*check)
    assert allowed["effect"] == "allow"
    assert allowed["policy_version"] == first


def test_activate_refuses_a_broken_version(org: Cli, tmp_path: Path) -> None:
    first = _active(org)
    bad = _pack(tmp_path, "bad")
    (bad / "permits.cedar").write_text(
        (bad / "permits.cedar").read_text(encoding="utf-8") + BROKEN, encoding="utf-8"
    )
    result = org.error("policy_invalid", 2, "policy", "activate", str(bad))
    assert "permits.cedar:" in result.stderr
    assert _versions(org) == [(first, True)]  # nothing stored, the old version still active


def test_activate_refuses_a_version_whose_tests_fail(org: Cli, tmp_path: Path) -> None:
    first = _active(org)
    wrong = _pack(tmp_path, "wrong")
    (wrong / "tests" / "wrong.yaml").write_text(WRONG_TEST, encoding="utf-8")
    result = org.error("policy_invalid", 2, "policy", "activate", str(wrong))
    assert "1 policy test(s) failed" in result.stderr
    assert "reads are wrongly expected to be denied" in result.stderr
    assert "unchanged" in result.stderr  # the hint
    assert _versions(org) == [(first, True)]
    task = org.start("helper", "--purpose", "p", "--tool", "kb.search")
    assert org.json("check", "--task", task, "--tool", "kb.search")["policy_version"] == first


def test_activate_refuses_a_version_without_tests_unless_told(org: Cli, tmp_path: Path) -> None:
    import shutil

    first = _active(org)
    untested = _pack(tmp_path, "untested")
    shutil.rmtree(untested / "tests")
    result = org.error("policy_invalid", 2, "policy", "activate", str(untested))
    assert "at least one policy test" in result.stderr
    assert _versions(org) == [(first, True)]
    org.ok("policy", "activate", str(untested), "--allow-untested")
    assert _active(org) != first


def test_rollback_unknown_version(org: Cli) -> None:
    first = _active(org)
    org.error("not_found", 2, "policy", "rollback", "no-such-version")
    assert _active(org) == first


def test_activation_and_rollback_are_audited(org: Cli, tmp_path: Path) -> None:
    first = _active(org)
    second = _activated_id(org.ok("policy", "activate", str(_pack(tmp_path, "again"))).stdout)
    org.ok("policy", "rollback", first)
    events = [
        json.loads(line)["data"] for line in org.ok("audit", "tail", "-n", "5").stdout.splitlines()
    ]
    activations = [e for e in events if e.get("event") == "policy_activated"]
    assert [(e["version"], e["note"]) for e in activations][-2:] == [
        (second, str(tmp_path / "again")),
        (first, "rollback"),
    ]


@pytest.mark.parametrize("command", ["validate", "test"])
def test_validate_and_test_change_nothing(org: Cli, tmp_path: Path, command: str) -> None:
    before = (_versions(org), org.audit_count())
    org("policy", command, str(_pack(tmp_path, "p")), home=False)
    assert (_versions(org), org.audit_count()) == before


def test_replay_reports_what_a_candidate_would_change(org: Cli, tmp_path: Path) -> None:
    before = _versions(org)
    task = org.start("helper", "--purpose", "p", "--tool", "kb.search")
    org.json("check", "--task", task, "--tool", "kb.search", "--args", '{"q": "x"}')
    same = org.ok("policy", "replay", str(org.home / "policies"))
    assert "would change" in same.stdout and "0 would change" in same.stdout
    frozen = _pack(tmp_path, "frozen")
    (frozen / "freeze.cedar").write_text(
        '@id("all-frozen")\n@reason("change freeze")\nforbid (principal, action, resource);\n'
    )
    result = org("policy", "replay", str(frozen), "--fail-on-change")
    assert result.exit_code == 1
    assert "allow -> deny" in result.stdout and "all-frozen" in result.stdout
    assert _versions(org) == before  # replay activates nothing
