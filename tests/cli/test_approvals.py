"""`tribune approvals list|show|approve|deny`, run through the real `tribune` app: votes need
the voter's own key, and the person recorded is the key's user."""

from __future__ import annotations

import json

from tribune.bootstrap import open_tribune
from tribune.cli.main import app

from .conftest import Cli


def held_ticket(org: Cli) -> tuple[str, str]:
    """A production drop by `ops` (owner group:approvers), held for two approvers."""
    task = org.start("ops", "--purpose", "clean up", "--tool-group", "database")
    with open_tribune(org.home) as tr:
        verdict = tr.governor.decide(task, "db.drop", {"table": "sessions"})
    assert verdict.ticket_id is not None
    return task, verdict.ticket_id


def keys(org: Cli) -> dict[str, str]:
    with open_tribune(org.home) as tr:
        tr.registry.add_user("carol", email="carol@example.com", groups=("approvers",))
        return {
            "bob": tr.access.create_key("user:bob", "approver")[1],
            "carol": tr.access.create_key("user:carol", "approver")[1],
            "alice": tr.access.create_key("user:alice", "approver")[1],
            "auditor": tr.access.create_key("user:alice", "auditor")[1],
            "ops": tr.access.create_key("agent:ops", "agent")[1],
        }


def test_list_show_and_two_votes(org: Cli) -> None:
    task, ticket = held_ticket(org)
    key = keys(org)
    (listed,) = org.json("approvals", "list", "--json")
    assert listed["id"] == ticket and listed["state"] == "pending" and listed["quorum"] == 2
    shown = org.json("approvals", "show", ticket)
    assert shown["shown"]["arguments"] == {"table": "sessions"}
    first = org.ok("approvals", "approve", ticket, "--key", key["bob"], "--reason", "ok")
    assert "bob approved" in first.stderr and "1/2" in first.stderr
    org.error("already_voted", 1, "approvals", "approve", ticket, "--key", key["bob"])
    result = org("approvals", "approve", ticket)  # no key at all
    assert result.exit_code != 0 and "error[unauthenticated]" in result.stderr
    env_vote = org.runner.invoke(  # the key from the environment
        app,
        ["approvals", "approve", ticket, "--home", str(org.home)],
        env={"TRIBUNE_API_KEY": key["carol"]},
    )
    assert env_vote.exit_code == 0, env_vote.output
    assert "now approved" in env_vote.stderr
    assert org.json("approvals", "list", "--json") == []  # nothing pending
    everything = org.json("approvals", "list", "--all", "--json")
    assert [(v["user"], v["reason"]) for v in everything[0]["votes"]] == [
        ("bob", "ok"),
        ("carol", ""),
    ]
    with open_tribune(org.home) as tr:
        assert tr.governor.decide(task, "db.drop", {"table": "sessions"}).allowed


def test_only_a_persons_approver_key_votes(org: Cli) -> None:
    _, ticket = held_ticket(org)
    key = keys(org)
    org.error("forbidden", 1, "approvals", "approve", ticket, "--key", key["ops"])
    org.error("forbidden", 1, "approvals", "approve", ticket, "--key", key["auditor"])
    org.error("not_eligible", 1, "approvals", "approve", ticket, "--key", key["alice"])
    org.error("unauthenticated", 1, "approvals", "deny", ticket, "--key", "trb_forged")
    assert json.loads(org.ok("approvals", "show", ticket).stdout)["votes"] == []
    org.ok("approvals", "deny", ticket, "--key", key["bob"], "--reason", "freeze")
    assert org.json("approvals", "show", ticket)["state"] == "denied"
    org.error("invalid_input", 2, "approvals", "list", "--state", "nope")
    org.error("unknown_ticket", 2, "approvals", "show", "nope")
