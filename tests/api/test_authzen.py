"""The AuthZEN evaluation endpoints: Tribune as a standard PDP, each evaluation governed and
recorded like any decision."""

from __future__ import annotations

from typing import Any

from .conftest import Api


def evaluation(
    task: str, tool: str, arguments: dict[str, Any], subject: str = "helper"
) -> dict[str, Any]:
    return {
        "subject": {"type": "agent", "id": subject},
        "action": {"name": "call"},
        "resource": {"type": "tool", "id": tool, "properties": {"arguments": arguments}},
        "context": {"task": task},
    }


def test_evaluation_permit_and_deny(api: Api) -> None:
    task = api.start(tools=["crm.read"])
    permit = api.post(
        "helper", "/access/v1/evaluation", evaluation(task["id"], "crm.read", {"customer_id": "1"})
    )
    assert permit.status_code == 200, permit.text
    assert permit.json()["decision"] is True
    action = permit.json()["context"]["action_id"]
    kinds = [r["kind"] for r in api.world.records() if r["action_id"] == action]
    assert kinds == ["intent", "decision"]
    deny = api.post("helper", "/access/v1/evaluation", evaluation(task["id"], "ticket.update", {}))
    assert deny.json()["decision"] is False
    assert deny.json()["context"]["effect"] == "deny" and deny.json()["context"]["reasons"]


def test_approval_required_is_false_with_the_requirement(api: Api) -> None:
    task = api.start()
    body = evaluation(task["id"], "email.send", {"to": ["x@elsewhere.example"], "body": "hi"})
    out = api.post("helper", "/access/v1/evaluation", body).json()
    assert out["decision"] is False
    assert out["context"]["effect"] == "approval_required"
    assert out["context"]["approval"]["quorum"] >= 1


def test_subject_must_be_the_tasks_agent(api: Api) -> None:
    task = api.start()
    response = api.post(
        "admin", "/access/v1/evaluation", evaluation(task["id"], "crm.read", {}, "ops")
    )
    assert response.status_code == 403
    response = api.post(
        "ops", "/access/v1/evaluation", evaluation(task["id"], "crm.read", {}, "ops")
    )
    assert response.status_code == 404  # another agent's task does not exist for ops


def test_bad_evaluations_are_client_errors(api: Api) -> None:
    task = api.start()
    no_task = evaluation(task["id"], "crm.read", {})
    no_task["context"] = {}
    assert api.post("helper", "/access/v1/evaluation", no_task).status_code == 400
    wrong_type = evaluation(task["id"], "crm.read", {})
    wrong_type["resource"]["type"] = "document"
    assert api.post("helper", "/access/v1/evaluation", wrong_type).status_code == 400
    args_not_object = evaluation(task["id"], "crm.read", {})
    args_not_object["resource"]["properties"]["arguments"] = [1, 2]
    assert api.post("helper", "/access/v1/evaluation", args_not_object).status_code == 400


def test_evaluations_batch_with_defaults_and_semantics(api: Api) -> None:
    task = api.start(tools=["crm.read"])
    base = evaluation(task["id"], "crm.read", {"customer_id": "1"})
    items = [
        {
            "resource": {
                "type": "tool",
                "id": "crm.read",
                "properties": {"arguments": {"customer_id": "2"}},
            }
        },
        {"resource": {"type": "tool", "id": "ticket.update"}},
        {"resource": {"type": "tool", "id": "crm.read"}},
    ]
    body = {**base, "evaluations": items}
    out = api.post("helper", "/access/v1/evaluations", body).json()["evaluations"]
    assert [e["decision"] for e in out] == [True, False, True]
    first_deny = {**body, "options": {"evaluations_semantic": "deny_on_first_deny"}}
    out = api.post("helper", "/access/v1/evaluations", first_deny).json()["evaluations"]
    assert [e["decision"] for e in out] == [True, False]
    first_permit = {**body, "options": {"evaluations_semantic": "permit_on_first_permit"}}
    out = api.post("helper", "/access/v1/evaluations", first_permit).json()["evaluations"]
    assert [e["decision"] for e in out] == [True]
    bare = api.post("helper", "/access/v1/evaluations", base).json()["evaluations"]
    assert [e["decision"] for e in bare] == [True]
