"""Task tokens: issue and verify, and every forged, stale or misused token refused with one
opaque error whose ``reason`` names the cause (see the ``world`` fixture in conftest)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest

from tribune.core.model import AgentStatus, Task
from tribune.crypto import b64url
from tribune.crypto.token_keys import InvalidToken, TokenKeys
from tribune.errors import Unauthenticated
from tribune.services.tokens import TokenClaims, TokenService

from .conftest import START, World

ISSUER = "spiffe://acme.test/tribune"


def issue(world: World, task: Task | None = None) -> tuple[Task, str]:
    task = task or world.task()
    agent = world.tr.registry.resolve_agent(task.agent_id)
    return task, world.tr.tokens.issue(task, agent, str(agent.owner))


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def enc(data: dict[str, Any]) -> str:
    return b64url(json.dumps(data).encode())


def parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    h, p, s = token.split(".")
    return json.loads(unb64(h)), json.loads(unb64(p)), s


def join(header: dict[str, Any], claims: dict[str, Any], signature: str) -> str:
    return f"{enc(header)}.{enc(claims)}.{signature}"


def resigned(world: World, token: str, **changes: Any) -> str:
    """``token`` with claims changed, signed again with Tribune's real active key."""
    _, claims, _ = parts(token)
    claims.update(changes)
    return world.tr.tokens.keys.sign(claims)


def refused(world: World, token: str, **kw: Any) -> str:
    with pytest.raises(InvalidToken) as err:
        world.tr.tokens.verify(token, **kw)
    exc = err.value
    assert isinstance(exc, Unauthenticated)
    assert exc.code == "unauthenticated"
    assert str(exc) == "invalid token" and exc.to_dict() == {
        "code": "unauthenticated",
        "message": "invalid token",
    }
    return exc.reason


# --------------------------------------------------------------------------- round trip


def test_round_trip(world: World) -> None:
    task, token = issue(world)
    claims = world.tr.tokens.verify(token)
    assert isinstance(claims, TokenClaims)
    assert claims.agent_id == "spiffe://acme.test/agent/helper" == task.agent_id
    assert claims.owner == "user:alice"
    assert claims.task_id == task.id
    assert claims.expires_at == task.expires_at
    assert claims.scope["type"] == "tribune_task"
    assert claims.scope["purpose"] == "help a customer"
    assert "crm.read" in claims.scope["tools"]


def test_header_and_claims(world: World) -> None:
    task, token = issue(world)
    header, claims, _ = parts(token)
    assert header == {"alg": "EdDSA", "kid": world.tr.tokens.keys.kid, "typ": "JWT"}
    now = int(START.timestamp())
    assert claims["iss"] == claims["aud"] == ISSUER
    assert claims["sub"] == task.agent_id
    assert claims["task"] == task.id
    assert claims["iat"] == claims["nbf"] == now
    assert claims["exp"] == now + 3600  # the default task TTL
    assert claims["authorization_details"] == [
        {
            "type": "tribune_task",
            "purpose": "help a customer",
            "tools": sorted(task.scope.tools),
            "tool_groups": [],
            "environment": "development",
            "limits": {"max_amount": 100_000, "max_count": None, "max_calls": None},
            "targets": [],
            "open_scope": False,
        }
    ]
    _, again = issue(world, task)
    assert parts(again)[1]["jti"] != claims["jti"]


def test_token_keys_live_in_the_home(world: World) -> None:
    keys = world.tr.tokens.keys
    assert keys.dir == world.home / "keys" / "tokens"
    world.reopen()
    assert world.tr.tokens.keys.kid == keys.kid


def test_no_literal_nor_its_digest_in_the_token(world: World) -> None:
    secret = "correct horse battery staple"
    task = world.task(
        literals={"new_password": secret}, targets=["bob@acme.com"], tools=["account.set_password"]
    )
    _, token = issue(world, task)
    digests = list(task.scope.literal_digests.values())
    assert digests and len(digests[0]) == 64
    text = json.dumps(parts(token)[:2])
    for needle in (secret, digests[0], hashlib.sha256(secret.encode()).hexdigest()):
        assert needle not in text and needle not in token
    assert "new_password" not in text and "literal" not in text
    assert world.tr.tokens.verify(token).scope["targets"] == ["bob@acme.com"]


def test_exp_never_after_the_task(world: World) -> None:
    world.clock.advance(0.75)  # the task's expiry falls between two whole seconds
    task = world.task(ttl=60)
    _, token = issue(world, task)
    exp = parts(token)[1]["exp"]
    assert datetime.fromtimestamp(exp, UTC) <= task.expires_at
    assert exp == int(task.expires_at.timestamp())


def test_exp_capped_by_max_ttl(world: World) -> None:
    tokens = TokenService(
        world.tr.store,
        world.clock,
        world.tr.tokens.keys,
        issuer=ISSUER,
        audience=ISSUER,
        max_ttl=120,
    )
    task = world.task(ttl=3600)
    agent = world.tr.registry.resolve_agent("helper")
    claims = tokens.verify(tokens.issue(task, agent, "user:alice"))
    assert claims.expires_at == START + timedelta(seconds=120)


def test_issue_refuses_another_agents_task(world: World) -> None:
    task = world.task()
    ops = world.tr.registry.resolve_agent("ops")
    with pytest.raises(ValueError):
        world.tr.tokens.issue(task, ops, "group:support")


# --------------------------------------------------------------------------- forgeries


def test_flipped_signature_byte(world: World) -> None:
    _, token = issue(world)
    h, p, s = token.split(".")
    raw = bytearray(unb64(s))
    raw[10] ^= 0x01
    assert refused(world, f"{h}.{p}.{b64url(bytes(raw))}") == "bad_signature"


def test_changed_claim_with_the_old_signature(world: World) -> None:
    other = world.task()
    _, token = issue(world)
    header, claims, sig = parts(token)
    claims["task"] = other.id
    assert refused(world, join(header, claims, sig)) == "bad_signature"
    _, claims, _ = parts(token)
    claims["authorization_details"][0]["tools"].append("db.drop")
    assert refused(world, join(header, claims, sig)) == "bad_signature"


def test_alg_none(world: World) -> None:
    _, token = issue(world)
    header, claims, _ = parts(token)
    for alg in ("none", "None", "NONE"):
        assert refused(world, join({**header, "alg": alg}, claims, "")) == "bad_algorithm"
    unsigned = jwt.encode(claims, "", algorithm="none", headers={"kid": header["kid"]})
    assert refused(world, unsigned) == "bad_algorithm"


@pytest.mark.parametrize("form", ["pem", "raw", "jwk_x"])
def test_hs256_signed_with_the_public_key(world: World, form: str) -> None:
    keys = world.tr.tokens.keys
    _, token = issue(world)
    header, claims, _ = parts(token)
    pub = keys.dir / f"{keys.kid}.pub.pem"
    jwk = keys.jwks()["keys"][0]
    secret = {
        "pem": pub.read_bytes(),
        "raw": unb64(jwk["x"]),
        "jwk_x": jwk["x"].encode(),
    }[form]
    signing_input = f"{enc({**header, 'alg': 'HS256'})}.{enc(claims)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    assert refused(world, f"{signing_input}.{b64url(mac)}") == "bad_algorithm"


def test_unknown_kid(world: World, tmp_path: Path) -> None:
    stranger = TokenKeys(tmp_path / "stranger", world.clock)
    _, token = issue(world)
    _, claims, _ = parts(token)
    assert refused(world, stranger.sign(claims)) == "unknown_kid"
    # the stranger's signature under Tribune's kid
    stranger_sig = stranger.sign(claims).split(".")[2]
    assert refused(world, join(parts(token)[0], claims, stranger_sig)) == "bad_signature"


def test_wrong_audience(world: World) -> None:
    _, token = issue(world)
    assert refused(world, token, audience="spiffe://acme.test/other") == "wrong_audience"
    assert refused(world, resigned(world, token, aud="https://evil.test")) == "wrong_audience"
    assert refused(world, resigned(world, token, aud=[ISSUER, "x"])) == "wrong_audience"


def test_wrong_issuer(world: World) -> None:
    _, token = issue(world)
    assert refused(world, resigned(world, token, iss="https://evil.test")) == "wrong_issuer"


def test_expired(world: World) -> None:
    tokens = world.tr.tokens
    short = TokenService(
        world.tr.store, world.clock, tokens.keys, issuer=ISSUER, audience=ISSUER, max_ttl=60
    )
    task = world.task(ttl=3600)
    token = short.issue(task, world.tr.registry.resolve_agent("helper"), "user:alice")
    world.clock.advance(60 + tokens.leeway - 1)
    tokens.verify(token)  # within the leeway
    world.clock.advance(1)
    assert refused(world, token) == "expired"


def test_not_yet_valid(world: World) -> None:
    _, token = issue(world)
    now = int(START.timestamp())
    assert refused(world, resigned(world, token, nbf=now + 3600)) == "not_yet_valid"
    assert refused(world, resigned(world, token, iat=now + 3600)) == "issued_in_future"
    world.tr.tokens.verify(resigned(world, token, nbf=now + 10, iat=now + 10))  # small skew


def test_ended_task(world: World) -> None:
    task, token = issue(world)
    world.tr.tokens.verify(token)
    world.tr.tasks.end(task.id)
    assert refused(world, token) == "task_inactive"


def test_expired_task_with_a_token_that_outlives_it(world: World) -> None:
    _, token = issue(world, world.task(ttl=60))
    long_exp = int(START.timestamp()) + 3600
    forged = resigned(world, token, exp=long_exp)  # as if exp were not capped
    world.clock.advance(61)
    assert refused(world, forged) == "task_inactive"


@pytest.mark.parametrize("status", [AgentStatus.SUSPENDED, AgentStatus.RETIRED])
def test_inactive_agent(world: World, status: AgentStatus) -> None:
    _, token = issue(world)
    world.tr.registry.set_status("helper", status)
    assert refused(world, token) == "agent_inactive"


def test_sub_mismatch(world: World) -> None:
    _, token = issue(world)
    ops = world.tr.registry.resolve_agent("ops").id
    assert refused(world, resigned(world, token, sub=ops)) == "subject_mismatch"


def test_unknown_task(world: World) -> None:
    _, token = issue(world)
    assert refused(world, resigned(world, token, task="no-such-task")) == "unknown_task"


@pytest.mark.parametrize(
    "changes",
    [
        {"exp": "tomorrow"},
        {"exp": True},
        {"nbf": 1.5},
        {"task": 7},
        {"authorization_details": "all"},
        {"authorization_details": []},
    ],
)
def test_malformed_claims(world: World, changes: dict[str, Any]) -> None:
    _, token = issue(world)
    assert refused(world, resigned(world, token, **changes)) == "malformed"


@pytest.mark.parametrize("name", ["iss", "aud", "sub", "owner", "task", "jti", "iat", "exp", "nbf"])
def test_missing_claim(world: World, name: str) -> None:
    _, token = issue(world)
    claims = parts(token)[1]
    del claims[name]
    assert refused(world, world.tr.tokens.keys.sign(claims)) == "missing_claim"


# --------------------------------------------------------------------------- rotation


def test_rotation(world: World) -> None:
    keys = world.tr.tokens.keys
    task, before = issue(world)
    old_kid = keys.kid
    new_kid = keys.rotate()
    _, after = issue(world, task)
    assert parts(after)[0]["kid"] == new_kid != old_kid
    assert world.tr.tokens.verify(before).task_id == task.id
    assert world.tr.tokens.verify(after).task_id == task.id
    assert {k["kid"] for k in keys.jwks()["keys"]} == {old_kid, new_kid}


def test_pruned_key_no_longer_verifies(world: World) -> None:
    keys = world.tr.tokens.keys
    _, before = issue(world, world.task(ttl=86400))
    old_kid = keys.kid
    keys.rotate()
    world.clock.advance(keys.retire_after)
    assert keys.prune() == [old_kid]
    assert refused(world, before) == "unknown_kid"
