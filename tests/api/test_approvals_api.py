"""Approvals over HTTP: the ticket in the decision, people voting with their own keys, agents
unable to vote, waiting held by the server, the exact-action binding and single use."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from .conftest import Api

DROP = {"table": "sessions_2019"}


@pytest.fixture
def people(api: Api) -> Api:
    tr = api.world.tr
    tr.registry.add_user("carol2", email="carol2@acme.com", groups=("approvers",))
    tr.registry.add_user("dave", email="dave@acme.com", groups=("approvers",))
    api.tokens["bob"] = tr.access.create_key("user:bob", "approver")[1]
    api.tokens["carol2"] = tr.access.create_key("user:carol2", "approver")[1]
    api.tokens["dave"] = tr.access.create_key("user:dave", "approver")[1]
    api.tokens["alice"] = tr.access.create_key("user:alice", "approver")[1]
    api.tokens["ops-key"] = api.tokens["ops"]
    return api


def drop(api: Api, task: str, args: dict[str, Any] | None = None, **extra: Any) -> Any:
    body = {"task": task, "tool": "db.drop", "arguments": args or DROP, **extra}
    response = api.post("ops", "/v1/decisions", body)
    assert response.status_code == 200, response.text
    return response.json()


def ops_task(api: Api) -> str:
    started = api.post(
        "ops", "/v1/tasks", {"purpose": "clean up", "tool_groups": ["database"], "ttl": 7200}
    )
    assert started.status_code == 201, started.text
    return str(started.json()["id"])


def vote(api: Api, who: str, ticket: str, verb: str = "approve", reason: str = "") -> Any:
    return api.post(who, f"/v1/approvals/{ticket}/{verb}", {"reason": reason})


def test_dual_control_over_http(people: Api) -> None:
    task = ops_task(people)
    held = drop(people, task)
    assert held["decision"]["effect"] == "approval_required" and not held["allowed"]
    ticket = held["ticket"]
    assert ticket["state"] == "pending" and (ticket["quorum"], ticket["approvals"]) == (2, 0)
    queue = people.get("bob", "/v1/approvals?state=pending").json()
    assert [t["id"] for t in queue] == [ticket["id"]]
    assert queue[0]["shown"]["arguments"] == DROP and queue[0]["tool"] == "db.drop"
    first = vote(people, "bob", ticket["id"], reason="backup checked")
    assert first.status_code == 200 and first.json()["approvals"] == 1
    assert first.json()["votes"][0]["user"] == "bob"  # the key's user, not a claimed name
    assert vote(people, "bob", ticket["id"]).json()["code"] == "already_voted"
    done = vote(people, "carol2", ticket["id"]).json()
    assert done["state"] == "approved"
    ran = drop(people, task)
    assert ran["allowed"] and "ticket" not in ran
    assert people.get("bob", f"/v1/approvals/{ticket['id']}").json()["state"] == "consumed"
    assert drop(people, task)["ticket"]["id"] != ticket["id"]  # single use


def test_an_agent_cannot_approve_anything(people: Api) -> None:
    task = ops_task(people)
    ticket = drop(people, task)["ticket"]["id"]
    for who in ("ops", "helper", people.tokens["ops-key"]):
        response = vote(people, who, ticket)
        assert response.status_code == 403 and response.json()["code"] == "forbidden"
    # An agent's task token is an agent too.
    started = people.post("ops", "/v1/tasks", {"purpose": "p", "tool_groups": ["database"]})
    assert vote(people, started.json()["token"], ticket).status_code == 403
    assert people.get("bob", f"/v1/approvals/{ticket}").json()["votes"] == []


def test_voting_without_signing_in_is_refused(people: Api) -> None:
    ticket = drop(people, ops_task(people))["ticket"]["id"]
    for headers in ({}, {"Authorization": "Bearer nope"}):
        response = people.client.post(f"/v1/approvals/{ticket}/approve", json={}, headers=headers)
        assert response.status_code == 401
    assert people.client.get(f"/v1/approvals/{ticket}").status_code == 401


def test_eligibility_and_the_owner_rule_over_http(people: Api) -> None:
    ticket = drop(people, ops_task(people))["ticket"]["id"]
    outsider = vote(people, "alice", ticket)  # alice is not in `approvers`
    assert outsider.status_code == 403 and outsider.json()["code"] == "not_eligible"
    # helper's owner is alice: a send to an unknown target needs one approver, not her.
    task = people.start(tools=["email.send"])
    body = {"task": task["id"], "tool": "email.send", "arguments": {"to": ["x@elsewhere.ex"]}}
    held = people.post("helper", "/v1/decisions", body).json()
    owner = vote(people, "alice", held["ticket"]["id"])
    assert owner.status_code == 403 and owner.json()["code"] == "owner_may_not_approve"
    assert vote(people, "bob", held["ticket"]["id"]).json()["state"] == "approved"


def test_altered_arguments_and_a_named_ticket(people: Api) -> None:
    task = ops_task(people)
    ticket = drop(people, task)["ticket"]["id"]
    vote(people, "bob", ticket)
    vote(people, "carol2", ticket)
    other = drop(people, task, {"table": "users"}, ticket=ticket)
    assert other["decision"]["effect"] == "deny"
    assert other["decision"]["errors"][0]["code"] == "ticket_mismatch"
    assert drop(people, task, ticket=ticket)["allowed"]


def test_the_server_holds_the_answer_while_people_decide(people: Api) -> None:
    task = ops_task(people)
    ticket = drop(people, task)["ticket"]["id"]

    def approve_later() -> None:
        time.sleep(0.3)
        vote(people, "bob", ticket)
        vote(people, "dave", ticket)

    voter = threading.Thread(target=approve_later)
    voter.start()
    started = time.monotonic()
    ran = drop(people, task, wait=20)
    voter.join()
    assert ran["allowed"] and time.monotonic() - started < 15
    # A wait that ends first answers approval_required with the ticket still pending.
    held = drop(people, task, {"table": "other"}, wait=1)
    assert held["ticket"]["state"] == "pending"
    waited = people.get("ops", f"/v1/approvals/{held['ticket']['id']}/wait?timeout=1")
    assert waited.status_code == 200 and waited.json()["state"] == "pending"


def test_a_denial_is_final_and_readable(people: Api) -> None:
    task = ops_task(people)
    ticket = drop(people, task)["ticket"]["id"]
    denied = vote(people, "bob", ticket, "deny", reason="not during the freeze")
    assert denied.json()["state"] == "denied"
    assert vote(people, "carol2", ticket).json()["code"] == "ticket_closed"
    assert people.get("ops", f"/v1/approvals/{ticket}/wait?timeout=0").json()["state"] == "denied"


def test_an_agent_sees_only_its_own_tickets(people: Api) -> None:
    ticket = drop(people, ops_task(people))["ticket"]["id"]
    assert people.get("ops", f"/v1/approvals/{ticket}").status_code == 200
    assert people.get("helper", f"/v1/approvals/{ticket}").status_code == 404
    assert people.get("helper", "/v1/approvals").status_code == 403
