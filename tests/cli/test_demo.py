"""`tribune demo`: the scripted tour, in-process and through the installed script."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tribune.cli.demo import run_demo
from tribune.cli.main import app

from .conftest import Cli, run_script

EXPECTED = {
    "read": "allow",
    "out_of_intent": "deny",
    "send_named": "allow",
    "send_unknown": "approval_required",
    "prod_destructive": "approval_required",
    "after_end": "deny",
    "verify": "ok",
}


def test_run_demo_effects(tmp_path: Path, runner: CliRunner) -> None:
    home = tmp_path / "demo"
    assert run_demo(home) == EXPECTED
    # It left a real home behind that the other commands can read.
    cli = Cli(runner, home)
    assert cli.ok("audit", "verify").stdout.startswith("ok")
    agents = {a["name"] for a in cli.json("agent", "list", "--json")}
    assert agents == {"support-bot", "ops-bot"}
    assert cli.json("task", "list", "--active", "--json") == []  # both tasks ended


def test_run_demo_twice_in_one_home(tmp_path: Path, runner: CliRunner) -> None:
    home = tmp_path / "demo"
    assert run_demo(home) == EXPECTED
    assert run_demo(home) == EXPECTED
    cli = Cli(runner, home)
    assert len(cli.json("task", "list", "--json")) == 4
    assert cli.ok("audit", "verify").stdout.startswith("ok")


def test_demo_without_home_uses_a_fresh_temporary_one(
    tmp_path: Path, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = runner.invoke(app, ["demo"], env={"TRIBUNE_HOME": str(tmp_path / "not-this")})
    assert result.exit_code == 0, result.output
    (made,) = tmp_path.glob("tribune-demo-*")
    assert (made / "tribune.db").is_file()
    assert not (tmp_path / "not-this").exists()


def test_demo_command(tmp_path: Path, runner: CliRunner) -> None:
    home = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--home", str(home)])
    assert result.exit_code == 0, result.output
    for word in ("allow", "deny", "approval_required", "ok"):
        assert word in result.stdout
    assert "intent-tool-not-in-scope" in result.stdout
    assert "task_inactive" in result.stdout
    assert (home / "tribune.db").is_file()


def test_demo_console_script(tmp_path: Path, runner: CliRunner) -> None:
    home = tmp_path / "demo"
    done = run_script("demo", "--home", str(home))
    assert done.returncode == 0, done.stderr
    for word in ("allow", "deny", "approval_required", "ok"):
        assert word in done.stdout
    assert "Traceback" not in done.stderr
    assert Cli(runner, home).ok("audit", "verify").stdout.startswith("ok")


def test_the_credentials_demo(tmp_path: Path, runner: CliRunner) -> None:
    from tribune.cli.demo_credentials import run_credentials_demo

    home = tmp_path / "creds"
    seen = run_credentials_demo(home)
    assert seen["replay"] == "replayed"
    assert (seen["crm_before"], seen["crm_after"]) == (True, False)
    assert seen["secret_in_function"] is True and seen["secret_in_audit"] is False
    assert seen["task_token"] == "valid" and seen["task_token_after"] == "task_inactive"
    assert seen["lease_states"] == ["revoked"]
    assert seen["kill_switch"] == (1, 3)
    assert seen["events"] == {"lease_issued": 5, "lease_revoked": 5}
    cli = Cli(runner, home)
    assert cli.ok("audit", "verify").stdout.startswith("ok")
    # Through the command too, in the same home.
    result = runner.invoke(app, ["demo", "--scenario", "credentials", "--home", str(home)])
    assert result.exit_code == 0, result.output
    bad = runner.invoke(app, ["demo", "--scenario", "nope"])
    assert bad.exit_code != 0


def test_the_approvals_demo(tmp_path: Path, runner: CliRunner) -> None:
    from tribune.cli.demo_approvals import run_approvals_demo

    home = tmp_path / "approvals"
    seen = run_approvals_demo(home)
    assert seen["held"] == "approval_required"
    assert seen["requirement"] == (2, ["approvers"], False)
    assert seen["owner"] == "owner_may_not_approve"
    assert seen["outsider"] == "not_eligible"
    assert seen["first"] == "pending (1/2)"
    assert seen["again"] == "already_voted"
    assert seen["second"] == "approved (2/2)"
    assert seen["changed"] == "approval_required, a new ticket"
    assert seen["forced"] == "ticket_mismatch"
    assert seen["denied"] == "denied"
    assert seen["run"] == "ran" and seen["runs"] == ["sessions_2019"]
    assert seen["consumed"] == "consumed"
    assert seen["again_run"] == "approval_required, a new ticket"
    assert seen["after_end"] == "expired"
    assert seen["events"] == [
        "approval_requested",
        "approval_vote_refused",  # the owner
        "approval_vote_refused",  # outside the group
        "approval_vote",
        "approval_vote_refused",  # the same approver again
        "approval_vote",
        "approval_granted",
        "approval_requested",
        "approval_vote",
        "approval_denied",
        "approval_consumed",
        "approval_requested",
        "approval_expired",
    ]
    assert seen["verify"] == "ok"
    # The home it left behind holds real tickets the CLI reads.
    cli = Cli(runner, home)
    states = sorted(t["state"] for t in cli.json("approvals", "list", "--all", "--json"))
    assert states == ["consumed", "denied", "expired"]
    # Through the command too, in the same home.
    result = runner.invoke(app, ["demo", "--scenario", "approvals", "--home", str(home)])
    assert result.exit_code == 0, result.output
    assert "owner_may_not_approve" in result.stdout and "ticket_mismatch" in result.stdout
    assert cli.ok("audit", "verify").stdout.startswith("ok")
