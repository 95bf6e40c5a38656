"""Identities, leases, the kill switch and the OAuth endpoints over HTTP: task tokens and signed
assertions as bearer credentials, refusals recorded with their reason, credentials shown once,
RFC 7662 introspection and RFC 7009 revocation as a downstream service uses them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.test_leases import world
from tribune.core.model import RecordKind
from tribune.crypto.assertions import sign_assertion

from .conftest import Api

__all__ = ["world"]
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def refusals(api: Api) -> list[dict[str, Any]]:
    out = []
    for rec in api.world.tr.store.records():
        data = json.loads(rec.body)["data"]
        if rec.kind is RecordKind.EVENT and data.get("event") == "auth_refused":
            out.append(data)
    return out


def introspect(api: Api, token: str, who: str = "service") -> dict[str, Any]:
    response = api.post(who, "/v1/oauth/introspect", content=f"token={token}", headers=FORM)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    return body


def test_a_lease_over_http_from_issue_to_revocation(api: Api) -> None:
    task = api.start(tools=["crm.read"])
    made = api.post("helper", f"/v1/tasks/{task['id']}/leases", {"source": "crm-api"})
    assert made.status_code == 201, made.text
    assert made.headers["cache-control"] == "no-store"
    lease = made.json()
    token = lease["credential"]["token"]
    assert lease["state"] == "active" and lease["source"] == "crm-api"
    listed = api.get("auditor", f"/v1/tasks/{task['id']}/leases")
    assert [x["id"] for x in listed.json()] == [lease["id"]]
    assert token not in listed.text and "credential" not in listed.text
    seen = introspect(api, token)
    assert seen["active"] is True and seen["aud"] == "https://crm.acme.test"
    assert seen["task"] == task["id"] and seen["lease"] == lease["id"]
    # Another agent learns nothing of it; the holder revokes it.
    assert api.get("ops", f"/v1/leases/{lease['id']}").status_code == 404
    assert api.post("ops", f"/v1/leases/{lease['id']}/revoke").status_code == 404
    done = api.post("helper", f"/v1/leases/{lease['id']}/revoke")
    assert done.json()["state"] == "revoked"
    assert introspect(api, token) == {"active": False}
    assert api.post("helper", f"/v1/leases/{lease['id']}/renew", {}).status_code == 409


def test_a_downstream_service_revokes_a_token_rfc7009(api: Api) -> None:
    task = api.start(tools=["crm.read"])
    lease = api.post("helper", f"/v1/tasks/{task['id']}/leases", {"source": "crm-api"}).json()
    token = lease["credential"]["token"]
    response = api.post("service", "/v1/oauth/revoke", content=f"token={token}", headers=FORM)
    assert response.status_code == 200 and response.json() == {}
    assert introspect(api, token) == {"active": False}
    # An unknown token is answered the same way, as the RFC asks.
    again = api.post("service", "/v1/oauth/revoke", content="token=nonsense", headers=FORM)
    assert again.status_code == 200
    bad = api.post("service", "/v1/oauth/introspect", json={"token": token})
    assert bad.status_code == 400


def test_a_lease_outside_the_tasks_scope_is_refused(api: Api) -> None:
    task = api.start(tools=["web.fetch"])
    response = api.post("helper", f"/v1/tasks/{task['id']}/leases", {"source": "crm-api"})
    assert response.status_code == 403
    assert response.json()["code"] == "lease_not_in_scope"
    unknown = api.post("helper", f"/v1/tasks/{task['id']}/leases", {"source": "nope"})
    assert unknown.status_code == 404 and unknown.json()["code"] == "unknown_source"


def test_a_task_token_acts_in_its_task_only(api: Api) -> None:
    task = api.start(tools=["crm.read"])
    other = api.start(tools=["crm.read"])
    token = task["token"]
    me = api.get(token, "/v1/me").json()
    assert me["principal"].endswith("/agent/helper") and me["role"] == "agent"
    body = {"task": task["id"], "tool": "crm.read", "arguments": {"customer_id": "1"}}
    decided = api.post(token, "/v1/decisions", body)
    assert decided.status_code == 200 and decided.json()["decision"]["effect"] == "allow"
    elsewhere = api.post(token, "/v1/decisions", {**body, "task": other["id"]})
    assert elsewhere.status_code == 404
    started = api.post(token, "/v1/tasks", {"purpose": "more", "tools": ["crm.read"]})
    assert started.status_code == 403
    assert api.get(token, "/v1/tasks").status_code == 403
    assert introspect(api, token)["task"] == task["id"]


def test_refused_tokens_are_opaque_to_the_caller_and_precise_in_the_log(api: Api) -> None:
    task = api.start(tools=["crm.read"])
    head, payload, sig = task["token"].split(".")
    tampered = f"{head}.{payload}.{sig[:-6]}AAAAAA"
    for token in (tampered, "eyJhbGciOiJub25lIn0.e30.", "a.b.c"):
        response = api.get(token, "/v1/me")
        assert response.status_code == 401
        assert response.json()["message"] == "invalid or missing credential"
    reasons = [r["reason"] for r in refusals(api)]
    assert len(reasons) == 3 and "bad_signature" in reasons
    text = json.dumps(refusals(api))
    assert sig[:20] not in text and payload[:20] not in text


def test_the_kill_switch_over_http(api: Api) -> None:
    task = api.start(tools=["crm.read"])
    lease = api.post("helper", f"/v1/tasks/{task['id']}/leases", {"source": "crm-api"}).json()
    done = api.post("admin", "/v1/revocations", {"agent": "helper"})
    assert done.status_code == 200, done.text
    assert done.json() == {
        "tasks_ended": 1,
        "leases_revoked": 1,
        "leases_failed": 0,
        "agents_suspended": 0,
    }
    assert introspect(api, lease["credential"]["token"]) == {"active": False}
    assert api.get(task["token"], "/v1/me").status_code == 401
    assert refusals(api)[-1]["reason"] == "task_inactive"
    bad = api.post("admin", "/v1/revocations", {"agent": "helper", "all": True})
    assert bad.status_code == 400


def test_an_agent_signs_in_with_its_own_key(api: Api) -> None:
    tr = api.world.tr
    key, private_pem = tr.identity.create_key("helper")
    agent_id = tr.registry.resolve_agent("helper").id
    now = api.world.clock.now()
    assertion = sign_assertion(private_pem, agent_id, tr.tokens.audience, now=now, kid=key.kid)
    started = api.post(assertion, "/v1/tasks", {"purpose": "p", "tools": ["crm.read"]})
    assert started.status_code == 201, started.text
    assert started.json()["agent"] == agent_id
    replay = api.get(assertion, "/v1/me")
    assert replay.status_code == 401
    assert refusals(api)[-1]["reason"] == "replayed"


@pytest.mark.parametrize("who", ["helper", "auditor"])
def test_introspection_is_for_services_and_admins(api: Api, who: str) -> None:
    response = api.post(who, "/v1/oauth/introspect", content="token=x", headers=FORM)
    assert response.status_code == 403


def test_registering_an_agent_with_a_generated_key(api: Api) -> None:
    body = {
        "name": "reporter",
        "owner": "user:alice",
        "purpose": "reports",
        "environment": "development",
        "entitlements": {"tools": ["crm.read"], "environments": ["development"]},
        "key": {"generate": True},
    }
    made = api.post("admin", "/v1/agents", body)
    assert made.status_code == 201, made.text
    assert made.headers["cache-control"] == "no-store"
    out = made.json()
    private_pem = out["private_key"]
    assert private_pem.startswith("-----BEGIN PRIVATE KEY-----")
    (key,) = out["keys"]
    listed = api.get("admin", "/v1/agents/reporter/keys")
    assert [k["kid"] for k in listed.json()] == [key["kid"]]
    assert "PRIVATE" not in listed.text
    tr = api.world.tr
    assertion = sign_assertion(
        private_pem, out["id"], tr.tokens.audience, now=api.world.clock.now(), kid=key["kid"]
    )
    assert api.get(assertion, "/v1/me").json()["principal"] == f"agent:{out['id']}"
    assert api.call("admin", "DELETE", f"/v1/agents/reporter/keys/{key['kid']}").status_code == 200
    late = sign_assertion(private_pem, out["id"], tr.tokens.audience, now=api.world.clock.now())
    assert api.get(late, "/v1/me").status_code == 401
    assert refusals(api)[-1]["reason"] in ("key_revoked", "unknown_kid")


def test_a_bad_key_refuses_the_whole_registration(api: Api) -> None:
    body = {
        "name": "broken",
        "owner": "user:alice",
        "purpose": "p",
        "environment": "development",
        "key": {"public_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"},
    }
    response = api.post("admin", "/v1/agents", body)
    assert response.status_code == 400
    assert "AAAA" not in response.text
    assert api.get("admin", "/v1/agents/broken").status_code == 404
    both = {**body, "name": "both", "key": {"generate": True, "jwks": {"keys": []}}}
    assert api.post("admin", "/v1/agents", both).status_code == 400
    assert api.get("admin", "/v1/agents/both").status_code == 404


def test_an_agent_adds_its_own_public_key(api: Api) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.generate()
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    added = api.post("admin", "/v1/agents/helper/keys", {"public_key": public_pem.decode()})
    assert added.status_code == 201, added.text
    assert added.json()["private_key"] is None
    (key,) = added.json()["keys"]
    assert key["source"] == "given" and key["alg"] == "EdDSA"
    assert api.get("helper", "/v1/agents/helper/keys").status_code == 200
    assert api.get("ops", "/v1/agents/helper/keys").status_code == 404


def test_a_service_key_over_http_introspects_and_nothing_else(api: Api) -> None:
    made = api.post("admin", "/v1/keys", {"principal": "service:billing", "role": "resource"})
    assert made.status_code == 201, made.text
    token = made.json()["token"]
    assert api.get(token, "/v1/me").json()["role"] == "resource"
    assert api.get(token, "/v1/tasks").status_code == 403
    assert introspect(api, "nonsense", who=token) == {"active": False}
    wrong = api.post("admin", "/v1/keys", {"principal": "service:billing", "role": "admin"})
    assert wrong.status_code == 400
    user = api.post("admin", "/v1/keys", {"principal": "user:alice", "role": "resource"})
    assert user.status_code == 400
