"""Tribune's own access control: public routes, authentication on everything else, and each
route's roles. The matrix lists every route of the app; a new route without a row fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .conftest import Api


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """Access control does not depend on the store: SQLite only, to keep the matrix quick."""
    return f"sqlite://{tmp_path / 'tribune.db'}"


PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/.well-known/jwks.json"),
    ("GET", "/openapi.json"),
    ("GET", "/metrics"),
}
ROLES = ("admin", "auditor", "approver", "helper", "service")  # helper: an agent's key

# (method, path, body, roles that pass the role check)
ALL = {"admin", "auditor", "approver", "helper"}
READERS = {"admin", "auditor", "approver"}
MATRIX: list[tuple[str, str, Any, set[str]]] = [
    ("GET", "/v1/users", None, READERS),
    ("POST", "/v1/users", {"name": "dave"}, {"admin"}),
    ("GET", "/v1/groups", None, READERS),
    ("POST", "/v1/groups", {"name": "g1"}, {"admin"}),
    ("GET", "/v1/agents", None, READERS),
    (
        "POST",
        "/v1/agents",
        {"name": "n1", "owner": "user:alice", "purpose": "p", "environment": "development"},
        {"admin"},
    ),
    ("GET", "/v1/agents/helper", None, ALL),
    ("PUT", "/v1/agents/ops/status", {"status": "active"}, {"admin"}),
    ("POST", "/v1/agents/helper/keys", {"generate": True}, {"admin"}),
    ("GET", "/v1/agents/helper/keys", None, {"admin", "auditor", "helper"}),
    ("DELETE", "/v1/agents/helper/keys/nope", None, {"admin"}),
    ("GET", "/v1/tools", None, ALL),
    ("GET", "/v1/tools/crm.read", None, ALL),
    ("PUT", "/v1/tools/x.y", {}, {"admin"}),
    (
        "POST",
        "/v1/tasks",
        {"agent": "helper", "purpose": "p", "tools": ["crm.read"]},
        {"admin", "helper"},
    ),
    ("GET", "/v1/tasks", None, ALL),
    ("GET", "/v1/tasks/{task}", None, ALL),
    ("POST", "/v1/tasks/{task}/end", None, {"admin", "helper"}),
    ("POST", "/v1/decisions", {"task": "{task}", "tool": "crm.read"}, {"admin", "helper"}),
    ("POST", "/v1/actions/{action}/result", {"status": "ok"}, {"admin", "helper"}),
    ("GET", "/v1/audit/records", None, {"admin", "auditor"}),
    ("POST", "/v1/audit/verify", None, {"admin", "auditor"}),
    ("GET", "/v1/policies", None, {"admin", "auditor"}),
    ("GET", "/v1/policies/active", None, {"admin", "auditor"}),
    ("POST", "/v1/policies/validate", {"files": {"a.cedar": ""}}, {"admin"}),
    ("POST", "/v1/policies", {"files": {"a.cedar": ""}}, {"admin"}),
    ("POST", "/v1/policies/{version}/activate", None, {"admin"}),
    ("GET", "/v1/me", None, ALL | {"service"}),
    ("GET", "/v1/keys", None, {"admin"}),
    ("POST", "/v1/keys", {"principal": "user:alice", "role": "auditor"}, {"admin"}),
    ("DELETE", "/v1/keys/nope", None, {"admin"}),
    (
        "POST",
        "/access/v1/evaluation",
        {
            "subject": {"type": "agent", "id": "helper"},
            "action": {"name": "call"},
            "resource": {"type": "tool", "id": "crm.read"},
            "context": {"task": "{task}"},
        },
        {"admin", "helper"},
    ),
    ("POST", "/access/v1/evaluations", {"evaluations": []}, {"admin", "helper"}),
    ("GET", "/v1/approvals", None, {"admin", "approver", "auditor"}),
    ("GET", "/v1/approvals/nope", None, {"admin", "approver", "auditor", "helper"}),
    ("GET", "/v1/approvals/nope/wait", None, {"admin", "approver", "auditor", "helper"}),
    ("POST", "/v1/approvals/nope/approve", {}, {"admin", "approver"}),
    ("POST", "/v1/approvals/nope/deny", {}, {"admin", "approver"}),
    ("POST", "/v1/tasks/{task}/leases", {"source": "crm-api"}, {"admin", "helper"}),
    ("GET", "/v1/tasks/{task}/leases", None, {"admin", "auditor", "helper"}),
    ("GET", "/v1/leases/nope", None, {"admin", "auditor", "helper"}),
    ("POST", "/v1/leases/nope/renew", {}, {"admin", "helper"}),
    ("POST", "/v1/leases/nope/revoke", None, {"admin", "helper"}),
    ("POST", "/v1/revocations", {"task": "nope"}, {"admin"}),
    ("POST", "/v1/oauth/introspect", None, {"admin", "service"}),
    ("POST", "/v1/oauth/revoke", None, {"admin", "service", "helper"}),
]


def _fill(api: Api, value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        for name, id_ in ids.items():
            value = value.replace("{" + name + "}", id_)
        return value
    if isinstance(value, dict):
        return {k: _fill(api, v, ids) for k, v in value.items()}
    return value


@pytest.fixture
def ids(api: Api) -> dict[str, str]:
    task = api.start()
    verdict = api.post(
        "helper",
        "/v1/decisions",
        {"task": task["id"], "tool": "crm.read", "arguments": {"customer_id": "1"}},
    ).json()
    version = api.get("admin", "/v1/policies/active").json()["id"]
    return {"task": task["id"], "action": verdict["action_id"], "version": version}


def _template(path: str) -> str:
    """A concrete matrix path as its route template."""
    out = path
    for concrete, template in TEMPLATES.items():
        out = out.replace(concrete, template)
    return out


TEMPLATES = {
    "{task}": "{task_id}",
    "{action}": "{action_id}",
    "{version}": "{version_id}",
    "/v1/agents/helper": "/v1/agents/{agent}",
    "/v1/agents/ops/status": "/v1/agents/{agent}/status",
    "/v1/tools/crm.read": "/v1/tools/{name}",
    "/v1/tools/x.y": "/v1/tools/{name}",
    "/v1/keys/nope": "/v1/keys/{key_id}",
    "/v1/leases/nope": "/v1/leases/{lease_id}",
    "/v1/approvals/nope": "/v1/approvals/{ticket_id}",
    "/keys/nope": "/keys/{kid}",
}


def test_the_matrix_covers_every_route(api: Api) -> None:
    paths = api.get(None, "/openapi.json").json()["paths"]
    routes = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    routes.add(("GET", "/openapi.json"))
    listed = {(m, _template(p)) for m, p, _, _ in MATRIX}
    assert routes - PUBLIC == listed


@pytest.mark.parametrize("method,path", sorted(PUBLIC))
def test_public_routes_need_no_credential(api: Api, method: str, path: str) -> None:
    assert api.call(None, method, path).status_code == 200


@pytest.mark.parametrize(
    "method,path,body,roles", MATRIX, ids=[f"{m} {p}" for m, p, _, _ in MATRIX]
)
def test_every_other_route_needs_a_valid_key(
    api: Api, ids: dict[str, str], method: str, path: str, body: Any, roles: set[str]
) -> None:
    path = _fill(api, path, ids)
    for token in (None, "", "trb_nope_nope", "Basic abc", api.tokens["admin"] + "x"):
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        response = api.client.request(method, path, json=_fill(api, body, ids), headers=headers)
        assert response.status_code == 401, (token, response.text)
        assert response.json()["code"] == "unauthenticated"
        assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "method,path,body,roles", MATRIX, ids=[f"{m} {p}" for m, p, _, _ in MATRIX]
)
def test_each_route_checks_its_roles(
    api: Api, ids: dict[str, str], method: str, path: str, body: Any, roles: set[str]
) -> None:
    for role in ROLES:
        response = api.call(role, method, _fill(api, path, ids), json=_fill(api, body, ids))
        if role in roles:
            refused = response.status_code == 403 and response.json()["code"] == "forbidden"
            assert not refused, (role, response.text)
        else:
            assert response.status_code == 403, (role, response.text)
            assert response.json()["code"] == "forbidden"


def test_a_revoked_key_is_refused_at_once(api: Api) -> None:
    assert api.get("auditor", "/v1/me").status_code == 200
    key_id = api.get("auditor", "/v1/me").json()["key_id"]
    assert api.call("admin", "DELETE", f"/v1/keys/{key_id}").status_code == 200
    response = api.get("auditor", "/v1/me")
    assert response.status_code == 401
    assert response.json()["code"] == "unauthenticated"


def test_a_new_key_is_shown_once_and_never_listed(api: Api) -> None:
    made = api.post("admin", "/v1/keys", {"principal": "user:carol", "role": "auditor"})
    assert made.status_code == 201
    token = made.json()["token"]
    assert api.get(token, "/v1/me").json()["role"] == "auditor"
    listing = api.get("admin", "/v1/keys").text
    assert token not in listing
    secret = token.split("_", 2)[2]  # trb_<id>_<secret>; the secret may itself hold `_`
    assert secret not in listing
    keys = api.get("admin", "/v1/keys").json()
    assert all("hash" not in key and "secret_hash" not in key for key in keys)  # field names


def test_a_suspended_agents_key_stops_working(api: Api) -> None:
    assert api.get("ops", "/v1/me").status_code == 200
    assert (
        api.call("admin", "PUT", "/v1/agents/ops/status", json={"status": "suspended"}).status_code
        == 200
    )
    assert api.get("ops", "/v1/me").status_code == 401


def test_an_agent_acts_only_for_itself(api: Api) -> None:
    mine = api.start("helper")
    # another agent cannot see, end or decide in it: it does not exist for them
    assert api.get("ops", f"/v1/tasks/{mine['id']}").status_code == 404
    assert api.post("ops", f"/v1/tasks/{mine['id']}/end").status_code == 404
    before = len(api.world.records())
    response = api.post("ops", "/v1/decisions", {"task": mine["id"], "tool": "crm.read"})
    assert response.status_code == 404
    assert response.json()["code"] == "unknown_task"
    assert len(api.world.records()) == before  # nothing recorded under the other agent's task
    # nor start one for it, nor read its agent record
    response = api.post(
        "ops", "/v1/tasks", {"agent": "helper", "purpose": "p", "tools": ["crm.read"]}
    )
    assert response.status_code == 403
    assert api.get("ops", "/v1/agents/helper").status_code == 404
    assert api.get("ops", "/v1/agents/ops").status_code == 200
    listed = api.get("ops", "/v1/tasks").json()
    assert all(t["agent"].endswith("/agent/ops") for t in listed)


def test_errors_carry_no_trace_or_secret(api: Api) -> None:
    response = api.get("trb_abcdefabcdef_secretsecret", "/v1/me")
    assert "secretsecret" not in response.text
    assert set(response.json()) <= {"code", "message", "hint"}
