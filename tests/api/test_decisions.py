"""Tasks, decisions and results over HTTP: the same governed path as embedded, with intent,
decision and result records linked by the action id."""

from __future__ import annotations

from typing import Any

from .conftest import Api


def records_of(api: Api, action_id: str) -> list[dict[str, Any]]:
    return [r for r in api.world.records() if r["action_id"] == action_id]


def decide(api: Api, task: str, tool: str, arguments: dict[str, Any], who: str = "helper") -> Any:
    return api.post(who, "/v1/decisions", {"task": task, "tool": tool, "arguments": arguments})


def test_an_agent_starts_its_own_task_within_its_entitlements(api: Api) -> None:
    task = api.start(tools=["crm.read"], targets=["bob@partner.com"], literals={"code": "s3cret"})
    assert task["agent"].endswith("/agent/helper")
    assert task["state"] == "active" and task["active"] is True
    assert task["scope"]["tools"] == ["crm.read"]
    assert task["scope"]["literals"] == ["code"]  # the value never comes back
    assert "s3cret" not in str(task)
    response = api.post("ops", "/v1/tasks", {"purpose": "p", "tools": ["crm.read"]})
    assert response.status_code == 403
    assert response.json()["code"] == "scope_exceeds_entitlements"


def test_admin_starts_a_task_for_a_named_agent_only(api: Api) -> None:
    response = api.post("admin", "/v1/tasks", {"purpose": "p", "tools": ["crm.read"]})
    assert response.status_code == 403
    task = api.start("admin", agent="helper", tools=["crm.read"])
    assert task["agent"].endswith("/agent/helper")


def test_allowed_call_then_its_result(api: Api) -> None:
    task = api.start()
    response = decide(api, task["id"], "crm.read", {"customer_id": "42"})
    assert response.status_code == 200
    verdict = response.json()
    assert verdict["allowed"] is True
    assert verdict["decision"]["effect"] == "allow"
    assert verdict["decision"]["policy_version"]
    assert verdict["tool"] == "crm.read" and verdict["task"] == task["id"]
    assert [r["kind"] for r in records_of(api, verdict["action_id"])] == ["intent", "decision"]

    result = api.post(
        "helper",
        f"/v1/actions/{verdict['action_id']}/result",
        {"status": "ok", "output": {"name": "Ada"}, "duration_ms": 3.5},
    )
    assert result.status_code == 201, result.text
    kinds = [r["kind"] for r in records_of(api, verdict["action_id"])]
    assert kinds == ["intent", "decision", "result"]
    body = records_of(api, verdict["action_id"])[-1]["data"]
    assert body["status"] == "ok" and body["output_digest"] and "Ada" not in str(body)
    # the session state moved: one call counted, confidential data read
    after = api.get("helper", f"/v1/tasks/{task['id']}").json()
    assert after["session"]["calls"] == 1
    assert after["session"]["data_read"] == ["confidential"]


def test_a_result_is_recorded_once_and_only_for_an_allowed_call(api: Api) -> None:
    task = api.start()
    allowed = decide(api, task["id"], "crm.read", {"customer_id": "1"}).json()
    path = f"/v1/actions/{allowed['action_id']}/result"
    assert api.post("helper", path, {"status": "ok"}).status_code == 201
    again = api.post("helper", path, {"status": "ok"})
    assert again.status_code == 409 and again.json()["code"] == "result_recorded"

    denied = decide(api, task["id"], "db.drop", {"table": "users"}).json()
    assert denied["allowed"] is False
    response = api.post("helper", f"/v1/actions/{denied['action_id']}/result", {"status": "ok"})
    assert response.status_code == 409 and response.json()["code"] == "action_not_allowed"

    response = api.post("helper", "/v1/actions/nope/result", {"status": "ok"})
    assert response.status_code == 404 and response.json()["code"] == "unknown_action"


def test_a_check_expects_no_result(api: Api) -> None:
    task = api.start()
    body = {"task": task["id"], "tool": "crm.read", "arguments": {}, "expects_result": False}
    verdict = api.post("helper", "/v1/decisions", body).json()
    response = api.post("helper", f"/v1/actions/{verdict['action_id']}/result", {"status": "ok"})
    assert response.status_code == 409


def test_another_agent_cannot_report_a_result(api: Api) -> None:
    task = api.start()
    verdict = decide(api, task["id"], "crm.read", {"customer_id": "1"}).json()
    response = api.post("ops", f"/v1/actions/{verdict['action_id']}/result", {"status": "ok"})
    assert response.status_code == 404
    assert [r["kind"] for r in records_of(api, verdict["action_id"])] == ["intent", "decision"]


def test_out_of_scope_call_is_denied_with_reasons(api: Api) -> None:
    task = api.start(tools=["crm.read"])
    verdict = decide(api, task["id"], "ticket.update", {}).json()
    assert verdict["allowed"] is False
    assert verdict["decision"]["effect"] == "deny"
    assert verdict["decision"]["policy_ids"]
    assert verdict["decision"]["reasons"]


def test_send_to_unknown_outside_recipient_needs_approval(api: Api) -> None:
    task = api.start()
    verdict = decide(
        api, task["id"], "email.send", {"to": ["stranger@elsewhere.example"], "body": "hi"}
    ).json()
    assert verdict["decision"]["effect"] == "approval_required"
    assert verdict["decision"]["approval"]["quorum"] >= 1
    assert verdict["allowed"] is False


def test_unknown_task_and_ended_task_deny(api: Api) -> None:
    response = decide(api, "nope", "crm.read", {}, who="admin")
    assert response.status_code == 404
    task = api.start()
    assert api.post("helper", f"/v1/tasks/{task['id']}/end").json()["state"] == "ended"
    verdict = decide(api, task["id"], "crm.read", {"customer_id": "1"}).json()
    assert verdict["allowed"] is False
    assert verdict["decision"]["errors"][0]["code"] == "task_inactive"


def test_tasks_list_filters(api: Api) -> None:
    one = api.start()
    api.start()
    api.post("helper", f"/v1/tasks/{one['id']}/end")
    everything = api.get("admin", "/v1/tasks?agent=helper").json()
    active = api.get("admin", "/v1/tasks?agent=helper&active=true").json()
    assert len(everything) == 2 and len(active) == 1
    assert active[0]["id"] != one["id"]


def test_tools_and_agents_round_trip(api: Api) -> None:
    tool = {
        "description": "pay an invoice",
        "risk": {"read_only": False, "destructive": True, "open_world": True},
        "groups": ["payments"],
        "extractors": [{"kind": "amount", "pointer": "/amount", "aggregate": "sum"}],
        "sensitive_args": ["/card"],
    }
    put = api.call("admin", "PUT", "/v1/tools/invoice.pay", json=tool)
    assert put.status_code == 200, put.text
    got = api.get("helper", "/v1/tools/invoice.pay").json()
    assert got["risk"]["destructive"] is True and got["extractors"][0]["aggregate"] == "sum"
    agent = {
        "name": "biller",
        "owner": "group:support",
        "purpose": "pay invoices",
        "environment": "production",
        "entitlements": {"tools": ["invoice.pay"], "limits": {"max_amount": 5000}},
    }
    made = api.post("admin", "/v1/agents", agent)
    assert made.status_code == 201, made.text
    assert made.json()["id"] == "spiffe://acme.test/agent/biller"
    assert made.json()["entitlements"]["environments"] == ["production"]
    dup = api.post("admin", "/v1/agents", agent)
    assert dup.status_code == 409 and dup.json()["code"] == "conflict"
    bad_owner = api.post("admin", "/v1/agents", {**agent, "name": "x", "owner": "user:ghost"})
    assert bad_owner.status_code == 404 and bad_owner.json()["code"] == "unknown_principal"
