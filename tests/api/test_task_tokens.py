"""Task tokens over HTTP: starting a task returns its token, and the published JWKS verifies it
with an ordinary JOSE library (what a downstream service would do)."""

from __future__ import annotations

import jwt

from .conftest import Api

ISSUER = "spiffe://acme.test/tribune"


def test_start_returns_a_token_the_public_jwks_verifies(api: Api) -> None:
    task = api.start()
    response = api.get(None, "/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=300"
    jwks = jwt.PyJWKSet.from_dict(response.json())
    kid = jwt.get_unverified_header(task["token"])["kid"]
    key = jwks[kid]
    claims = jwt.decode(
        task["token"],
        key,
        algorithms=["EdDSA"],
        audience=ISSUER,
        issuer=ISSUER,
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
    )
    assert claims["task"] == task["id"]
    assert claims["sub"] == task["agent"] == "spiffe://acme.test/agent/helper"
    assert claims["owner"] == "user:alice"
    assert api.world.tr.tokens.verify(task["token"]).task_id == task["id"]


def test_only_the_start_route_returns_the_token(api: Api) -> None:
    task = api.start()
    assert "token" not in api.get("helper", f"/v1/tasks/{task['id']}").json()
    assert all("token" not in t for t in api.get("helper", "/v1/tasks").json())
    assert "token" not in api.post("helper", f"/v1/tasks/{task['id']}/end").json()


def test_jwks_lists_old_and_new_keys_after_rotation(api: Api) -> None:
    keys = api.world.tr.tokens.keys
    old = keys.kid
    new = keys.rotate()
    listed = [k["kid"] for k in api.get(None, "/.well-known/jwks.json").json()["keys"]]
    assert sorted(listed) == sorted([old, new])
    assert all("d" not in k for k in api.get(None, "/.well-known/jwks.json").json()["keys"])
