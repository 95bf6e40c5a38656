"""Agent identity: agents' keys, the assertions they sign, SPIFFE JWT-SVIDs, and ``authenticate``
over all three plus task tokens. Each attack is a test; each refusal is opaque to the caller and
leaves an ``auth_refused`` audit event with the reason and never the token (see ``world``).
One test per attack, on both durable stores, is why this file runs past 600 lines."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tribune.core.model import AgentStatus
from tribune.crypto import b64url
from tribune.crypto.assertions import sign_assertion
from tribune.crypto.jwk import parse_public_key
from tribune.crypto.token_keys import InvalidToken
from tribune.errors import AgentInactive, Conflict, InvalidInput, NotFound, UnknownAgent
from tribune.services.identity import IdentityService, Principal

from .conftest import START, World

AUD = "spiffe://acme.test/tribune"
HELPER = "spiffe://acme.test/agent/helper"
OPS = "spiffe://acme.test/agent/ops"
WORKLOAD = "spiffe://acme.test/ns/prod/sa/helper-bot"  # an SVID id that is not an agent id
EC_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PARTNER_KEY = ec.generate_private_key(ec.SECP256R1())
NOW = int(START.timestamp())


def pem(private: Any) -> str:
    return str(
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def bundle_entry(private: Any, kid: str) -> dict[str, Any]:
    jwk = parse_public_key(pem(private))
    return {**jwk, "kid": kid, "use": "jwt-svid"}


BUNDLES = {
    "acme.test": {
        "keys": [
            bundle_entry(EC_KEY, "ec-1"),
            bundle_entry(RSA_KEY, "rsa-1"),
            {"kty": "EC", "crv": "P-256", "use": "x509-svid", "x5c": ["MIIB"]},
        ],
        "spiffe_refresh_hint": 300,
    },
    "partner.test": {"keys": [bundle_entry(PARTNER_KEY, "partner-1")]},
}


@dataclass
class Env:
    world: World
    ids: IdentityService
    pem: str  # helper's private key, as create_key returned it
    kid: str

    def sign(self, **claims: Any) -> str:
        """An assertion by helper with ``claims`` changed (None removes one)."""
        base: dict[str, Any] = {
            "iss": HELPER,
            "sub": HELPER,
            "aud": AUD,
            "iat": NOW,
            "exp": NOW + 60,
            "jti": "jti-" + b64url(hashlib.sha256(json.dumps(claims).encode()).digest())[:16],
        }
        base.update(claims)
        body = {k: v for k, v in base.items() if v is not None}
        key = serialization.load_pem_private_key(self.pem.encode(), None)
        return jwt.encode(body, key, algorithm="EdDSA", headers={"kid": self.kid})

    def assertion(self) -> str:
        return sign_assertion(self.pem, HELPER, AUD, now=self.world.clock.now())


def service(world: World, **kw: Any) -> IdentityService:
    tr = world.tr
    kw.setdefault("spiffe_bundles", BUNDLES)
    kw.setdefault("svid_agents", {WORKLOAD: HELPER})
    return IdentityService(
        tr.store, world.clock, tr.audit, tr.registry, audience=AUD, token_service=tr.tokens, **kw
    )


@pytest.fixture
def env(world: World) -> Env:
    ids = service(world)
    key, private = ids.create_key("helper")
    return Env(world, ids, private, key.kid)


def svid(
    sub: str = HELPER,
    *,
    key: Any = EC_KEY,
    kid: str = "ec-1",
    alg: str = "ES256",
    **claims: Any,
) -> str:
    body: dict[str, Any] = {"sub": sub, "aud": [AUD, "spiffe://acme.test/other"], "exp": NOW + 300}
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid, "typ": "JWT"})


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def enc(data: dict[str, Any]) -> str:
    return b64url(json.dumps(data).encode())


def parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    h, p, s = token.split(".")
    return json.loads(unb64(h)), json.loads(unb64(p)), s


def refused(env: Env, token: Any, method: str = "authenticate", credential: str = "") -> str:
    """Check the refusal is opaque and audited (reason, credential, no token text); return the
    reason."""
    before = env.world.tr.store.count()
    with pytest.raises(InvalidToken) as err:
        getattr(env.ids, method)(token)
    exc = err.value
    assert str(exc) == "invalid token"
    assert exc.to_dict() == {"code": "unauthenticated", "message": "invalid token"}
    assert env.world.tr.store.count() == before + 1
    record = next(iter(env.world.tr.store.records(after_seq=before)))
    body = json.loads(record.body)["data"]
    assert body["event"] == "auth_refused"
    assert body["reason"] == exc.reason
    assert set(body) <= {"event", "reason", "credential", "sub"}
    if credential:
        assert body["credential"] == credential
    if "sub" in body:
        assert body["sub"].startswith("spiffe://") and "/agent/" in body["sub"]
        assert record.agent_id == body["sub"]
    text = record.body
    if isinstance(token, str):
        for piece in token.split("."):
            assert len(piece) < 8 or piece not in text
    return exc.reason


# --------------------------------------------------------------------------- keys


def events_of(env: Env) -> list[dict[str, Any]]:
    return [r["data"] for r in env.world.records()]


def test_create_key_stores_only_the_public_half(env: Env) -> None:
    keys = env.ids.list_keys("helper")
    assert [k.kid for k in keys] == [env.kid]
    key = keys[0]
    assert key.agent_id == HELPER and key.source == "generated" and key.active()
    assert set(key.jwk) == {"kty", "crv", "x", "kid", "alg"} and key.jwk["alg"] == "EdDSA"
    assert env.pem.startswith("-----BEGIN PRIVATE KEY-----")
    loaded = serialization.load_pem_private_key(env.pem.encode(), None)
    assert isinstance(loaded, Ed25519PrivateKey)
    assert parse_public_key(key.jwk)["kid"] == env.kid
    events = [r for r in events_of(env) if r.get("event") == "agent_key_created"]
    assert events == [
        {
            "event": "agent_key_created",
            "agent": HELPER,
            "kid": env.kid,
            "kty": "OKP",
            "source": "generated",
        }
    ]
    everything = json.dumps(env.world.records())
    assert key.jwk["x"] not in everything
    assert env.pem.splitlines()[1] not in everything


def test_add_key_pem_jwk_and_jwks(env: Env) -> None:
    ids = env.ids
    ec_key = ids.add_key(HELPER, pem(EC_KEY))
    assert ec_key.source == "given" and ec_key.jwk["alg"] == "ES256"
    rsa_jwk = parse_public_key(pem(RSA_KEY))
    rsa_key = ids.add_key("helper", {**rsa_jwk, "alg": "PS256"})
    assert rsa_key.jwk["alg"] == "PS256"
    with pytest.raises(Conflict):
        ids.add_key("helper", pem(EC_KEY))
    more = [parse_public_key(pem(Ed25519PrivateKey.generate())) for _ in range(2)]
    added = ids.add_jwks("ops", {"keys": more})
    assert [k.kid for k in added] == [m["kid"] for m in more]
    with pytest.raises(Conflict):  # nothing of the document is stored
        ids.add_jwks("ops", {"keys": [parse_public_key(pem(PARTNER_KEY)), more[0]]})
    assert len(ids.list_keys("ops")) == 2
    with pytest.raises(InvalidInput):
        ids.add_jwks("ops", {"keys": []})
    with pytest.raises(InvalidInput, match="cannot sign assertions"):
        ids.add_key("helper", {**rsa_jwk, "alg": "RS512"})
    sources = [r["source"] for r in events_of(env) if r.get("event") == "agent_key_created"]
    assert sources == ["generated", "given", "given", "given", "given"]


def test_private_key_given_as_public_is_refused(env: Env) -> None:
    private = EC_KEY.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    with pytest.raises(InvalidInput, match="private key"):
        env.ids.add_key("helper", private)
    with pytest.raises(InvalidInput, match="private key"):
        env.ids.add_key("helper", env.pem)
    jwk = jwt.algorithms.ECAlgorithm.to_jwk(EC_KEY, as_dict=True)
    assert "d" in jwk
    with pytest.raises(InvalidInput, match="private or secret key"):
        env.ids.add_key("helper", jwk)
    with pytest.raises(InvalidInput, match="private or secret key"):
        env.ids.add_jwks("helper", {"keys": [jwk]})
    assert len(env.ids.list_keys("helper")) == 1


def test_revoke_and_unknown(env: Env) -> None:
    revoked = env.ids.revoke_key("helper", env.kid)
    assert revoked.revoked_at == START and not revoked.active()
    with pytest.raises(NotFound) as err:
        env.ids.revoke_key("helper", env.kid)
    assert err.value.code == "unknown_agent_key"
    with pytest.raises(NotFound):
        env.ids.revoke_key("helper", "no-such-kid")
    with pytest.raises(UnknownAgent):
        env.ids.create_key("nobody")
    events = [r for r in events_of(env) if r.get("event") == "agent_key_revoked"]
    assert events == [{"event": "agent_key_revoked", "agent": HELPER, "kid": env.kid}]


def test_retired_agent_gets_no_key(env: Env) -> None:
    env.world.tr.registry.set_status("ops", AgentStatus.RETIRED)
    with pytest.raises(AgentInactive):
        env.ids.create_key("ops")
    with pytest.raises(AgentInactive):
        env.ids.add_key("ops", pem(EC_KEY))


def test_bad_configuration_refused(world: World) -> None:
    with pytest.raises(InvalidInput):
        service(world, spiffe_bundles={"Not A Domain": {"keys": []}})
    with pytest.raises(InvalidInput):
        service(world, svid_agents={"not-spiffe": HELPER})
    with pytest.raises(InvalidInput):
        service(world, svid_agents={WORKLOAD: "helper"})
    private_bundle = {"keys": [{**bundle_entry(EC_KEY, "k"), "d": "AAAA"}]}
    with pytest.raises(InvalidInput, match="private"):
        service(world, spiffe_bundles={"acme.test": private_bundle})
    with pytest.raises(ValueError):
        service(world, max_assertion_ttl=0)


# --------------------------------------------------------------------------- assertions


def test_assertion_round_trip(env: Env) -> None:
    token = env.assertion()
    principal = env.ids.authenticate(token)
    assert principal == Principal(
        HELPER, "assertion", None, parts(token)[1]["jti"], START + timedelta(seconds=60)
    )
    assert env.ids.verify_assertion(env.assertion()) == HELPER
    header, claims, _ = parts(token)
    assert header == {"alg": "EdDSA", "kid": env.kid, "typ": "JWT"}
    assert claims["iss"] == claims["sub"] == HELPER and claims["aud"] == AUD
    assert claims["exp"] - claims["iat"] == 60 and len(claims["jti"]) >= 32


def test_assertion_with_ec_and_rsa_keys(env: Env) -> None:
    ec_key = env.ids.add_key("helper", pem(EC_KEY))
    rsa_key = env.ids.add_key("helper", pem(RSA_KEY))
    claims = {"iss": HELPER, "sub": HELPER, "aud": [AUD], "iat": NOW, "exp": NOW + 30}
    for key, kid, alg in (
        (EC_KEY, ec_key.kid, "ES256"),
        (RSA_KEY, rsa_key.kid, "RS256"),
        (RSA_KEY, rsa_key.kid, "PS256"),
    ):
        token = jwt.encode({**claims, "jti": alg}, key, algorithm=alg, headers={"kid": kid})
        assert env.ids.verify_assertion(token) == HELPER
    # an RSA key without a fixed alg still never verifies an algorithm outside the pinned list
    token = jwt.encode(
        {**claims, "jti": "rs384"}, RSA_KEY, algorithm="RS384", headers={"kid": rsa_key.kid}
    )
    assert refused(env, token, credential="assertion") == "bad_algorithm"
    # an EC key does not verify an EdDSA header naming it
    forged = jwt.encode(
        {**claims, "jti": "x"},
        Ed25519PrivateKey.generate(),
        algorithm="EdDSA",
        headers={"kid": ec_key.kid},
    )
    assert refused(env, forged) == "bad_algorithm"


def test_forged_signature_with_another_key(env: Env) -> None:
    stranger = Ed25519PrivateKey.generate()
    claims = {"iss": HELPER, "sub": HELPER, "aud": AUD, "iat": NOW, "exp": NOW + 60, "jti": "f"}
    token = jwt.encode(claims, stranger, algorithm="EdDSA", headers={"kid": env.kid})
    assert refused(env, token, credential="assertion") == "bad_signature"
    assert refused(env, token, "verify_assertion", credential="assertion") == "bad_signature"


def test_tampered_payload(env: Env) -> None:
    header, claims, sig = parts(env.assertion())
    for change in ({"aud": [AUD, "x"]}, {"exp": NOW + 61}, {"jti": "other"}):
        token = f"{enc(header)}.{enc({**claims, **change})}.{sig}"
        assert refused(env, token) == "bad_signature"
    raw = bytearray(unb64(sig))
    raw[5] ^= 1
    h, p, _ = env.assertion().split(".")
    assert refused(env, f"{h}.{p}.{b64url(bytes(raw))}") == "bad_signature"


def test_alg_none(env: Env) -> None:
    header, claims, _ = parts(env.assertion())
    for alg in ("none", "None", "NONE", ""):
        token = f"{enc({**header, 'alg': alg})}.{enc(claims)}."
        assert refused(env, token, credential="assertion") == "bad_algorithm"
    token = jwt.encode(claims, None, algorithm="none", headers={"kid": env.kid})
    assert refused(env, token) == "bad_algorithm"
    assert refused(env, f"{enc({**header, 'alg': ['EdDSA']})}.{enc(claims)}.x") == "bad_algorithm"


@pytest.mark.parametrize("form", ["pem", "raw", "x"])
def test_hs256_with_the_public_key_as_secret(env: Env, form: str) -> None:
    jwk = env.ids.list_keys("helper")[0].jwk
    secret = {
        "pem": serialization.load_pem_private_key(env.pem.encode(), None)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        "raw": unb64(jwk["x"]),
        "x": jwk["x"].encode(),
    }[form]
    header, claims, _ = parts(env.assertion())
    signing_input = f"{enc({**header, 'alg': 'HS256'})}.{enc(claims)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    assert refused(env, f"{signing_input}.{b64url(mac)}") == "bad_algorithm"


def test_unknown_kid_and_another_agents_key(env: Env) -> None:
    assert env.ids.verify_assertion(env.sign()) == HELPER
    ops_key, ops_pem = env.ids.create_key("ops")
    ops_private = serialization.load_pem_private_key(ops_pem.encode(), None)
    claims = {"iss": HELPER, "sub": HELPER, "aud": AUD, "iat": NOW, "exp": NOW + 60, "jti": "k"}
    token = jwt.encode(claims, ops_private, algorithm="EdDSA", headers={"kid": ops_key.kid})
    assert refused(env, token) == "unknown_kid"  # ops's key is not helper's
    token = jwt.encode(claims, ops_private, algorithm="EdDSA", headers={"kid": "nope"})
    assert refused(env, token) == "unknown_kid"
    token = jwt.encode(claims, ops_private, algorithm="EdDSA")
    assert refused(env, token) == "unknown_kid"


def test_revoked_key(env: Env) -> None:
    token = env.assertion()
    env.ids.revoke_key("helper", env.kid)
    assert refused(env, token) == "key_revoked"


def test_expired_and_leeway(env: Env) -> None:
    token = env.assertion()
    env.world.clock.advance(60 + 29)  # within the 30 s leeway
    assert env.ids.verify_assertion(token) == HELPER
    late = env.assertion()
    env.world.clock.advance(60 + 30)
    assert refused(env, late) == "expired"


def test_not_yet_valid(env: Env) -> None:
    assert refused(env, env.sign(nbf=NOW + 31)) == "not_yet_valid"
    assert refused(env, env.sign(iat=NOW + 31, exp=NOW + 90)) == "issued_in_future"
    assert env.ids.verify_assertion(env.sign(nbf=NOW + 30)) == HELPER


def test_too_long_lived(env: Env) -> None:
    assert refused(env, env.sign(exp=NOW + 301)) == "too_long_lived"
    assert env.ids.verify_assertion(env.sign(exp=NOW + 300)) == HELPER
    long = sign_assertion(env.pem, HELPER, AUD, ttl=3600, now=START)
    assert refused(env, long) == "too_long_lived"


def test_wrong_audience(env: Env) -> None:
    assert refused(env, env.sign(aud="https://evil.test")) == "wrong_audience"
    assert refused(env, env.sign(aud=["https://evil.test"])) == "wrong_audience"
    assert refused(env, env.sign(aud=[AUD, 7])) == "wrong_audience"
    assert refused(env, env.sign(aud=None)) == "missing_claim"
    assert env.ids.verify_assertion(env.sign(aud=["https://x.test", AUD])) == HELPER


def test_iss_not_sub(env: Env) -> None:
    assert refused(env, env.sign(sub=OPS)) == "subject_mismatch"
    assert refused(env, env.sign(sub=None)) == "subject_mismatch"
    # iss names ops while the key is helper's: ops has no such key
    assert refused(env, env.sign(iss=OPS, sub=OPS)) == "unknown_kid"


def test_missing_or_bad_claims(env: Env) -> None:
    assert refused(env, env.sign(jti=None)) == "missing_claim"
    assert refused(env, env.sign(jti="x" * 129)) == "malformed"
    assert refused(env, env.sign(jti=5)) == "malformed"
    assert refused(env, env.sign(exp=None)) == "missing_claim"
    assert refused(env, env.sign(iat=None)) == "missing_claim"
    assert refused(env, env.sign(exp=float(NOW + 60))) == "malformed"
    assert refused(env, env.sign(exp=True)) == "malformed"
    assert refused(env, env.sign(iss="helper", sub="helper")) == "malformed"


def test_replayed(env: Env) -> None:
    token = env.assertion()
    assert env.ids.authenticate(token).agent_id == HELPER
    assert refused(env, token, credential="assertion") == "replayed"
    assert refused(env, token, "verify_assertion") == "replayed"
    assert env.ids.authenticate(env.assertion()).agent_id == HELPER  # a fresh one passes


def test_racing_the_same_assertion(env: Env) -> None:
    token = env.assertion()
    gate = threading.Barrier(2)
    results: list[str] = []

    def attempt() -> None:
        gate.wait()
        try:
            results.append(env.ids.verify_assertion(token))
        except InvalidToken as exc:
            results.append(exc.reason)

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == sorted([HELPER, "replayed"])


def test_suspended_agent_and_the_jti_is_not_burnt(env: Env) -> None:
    token = env.assertion()
    env.world.tr.registry.set_status("helper", AgentStatus.SUSPENDED)
    assert refused(env, token) == "agent_inactive"
    env.world.tr.registry.set_status("helper", AgentStatus.ACTIVE)
    assert env.ids.verify_assertion(token) == HELPER


def test_jti_kept_past_expiry_plus_leeway(env: Env) -> None:
    token = env.assertion()
    env.ids.verify_assertion(token)
    store = env.world.tr.store
    assert store.prune_token_ids(START + timedelta(seconds=60 + 30)) == 0
    assert store.prune_token_ids(START + timedelta(seconds=60 + 31)) == 1


def test_malformed_and_oversized(env: Env) -> None:
    assert refused(env, "a" * (16 * 1024 + 1), credential="unknown") == "malformed"
    assert refused(env, "not a token", credential="unknown") == "malformed"
    assert refused(env, None, credential="unknown") == "malformed"
    assert refused(env, "e30.e30.", credential="assertion") == "bad_algorithm"
    big = env.sign(pad="x" * 16_500)
    assert refused(env, big, "verify_assertion") == "malformed"
    header, claims, sig = parts(env.assertion())
    assert refused(env, f"{enc({**header, 'crit': ['exp']})}.{enc(claims)}.{sig}") == "bad_header"


def test_audit_sub_only_when_an_agent_id(env: Env) -> None:
    before = env.world.tr.store.count()
    refused(env, env.sign(exp=NOW + 999))
    refused(env, env.sign(iss="Robert'); DROP TABLE--", sub="Robert'); DROP TABLE--"))
    bodies = [json.loads(r.body)["data"] for r in env.world.tr.store.records(after_seq=before)]
    assert bodies[0]["sub"] == HELPER
    assert "sub" not in bodies[1]
    assert "DROP" not in json.dumps(bodies)


# --------------------------------------------------------------------------- SVIDs


def test_svid_accepted_ec_and_rsa(env: Env) -> None:
    principal = env.ids.authenticate(svid())
    assert principal == Principal(HELPER, "svid", None, None, START + timedelta(seconds=300))
    for alg in ("RS256", "PS384", "RS512"):
        assert env.ids.verify_svid(svid(key=RSA_KEY, kid="rsa-1", alg=alg)) == HELPER
    assert env.ids.verify_svid(svid(aud=AUD)) == HELPER  # a single string audience
    token = svid()
    assert env.ids.verify_svid(token) == HELPER and env.ids.verify_svid(token) == HELPER  # bearer


def test_svid_alias(env: Env) -> None:
    assert env.ids.authenticate(svid(WORKLOAD)).agent_id == HELPER
    unmapped = "spiffe://acme.test/ns/prod/sa/other"
    assert refused(env, svid(unmapped), credential="svid") == "unknown_agent"


def test_svid_sub_not_an_agent(env: Env) -> None:
    assert (
        refused(env, svid("spiffe://acme.test/agent/nobody"), credential="svid") == "unknown_agent"
    )
    assert refused(env, svid("spiffe://acme.test/agent/../ops"), "verify_svid") == "malformed"
    assert refused(env, svid("https://acme.test/agent/helper"), "verify_svid") == "malformed"
    env.world.tr.registry.set_status("helper", AgentStatus.SUSPENDED)
    assert refused(env, svid()) == "agent_inactive"


def test_svid_wrong_trust_domain(env: Env) -> None:
    # acme's key cannot vouch for a partner id, nor partner's key for an acme id
    assert refused(env, svid("spiffe://partner.test/agent/helper"), "verify_svid") == "unknown_kid"
    token = svid(key=PARTNER_KEY, kid="partner-1")
    assert refused(env, token, "verify_svid") == "unknown_kid"
    assert refused(env, token, credential="assertion") == "malformed"  # no iss: no assertion
    stranger = svid("spiffe://other.test/agent/helper")
    assert refused(env, stranger, "verify_svid") == "unknown_trust_domain"
    assert refused(env, stranger, credential="assertion") == "malformed"


def test_svid_kid_not_in_bundle_and_forged(env: Env) -> None:
    assert refused(env, svid(kid="ec-2"), "verify_svid") == "unknown_kid"
    forged = svid(key=ec.generate_private_key(ec.SECP256R1()))
    assert refused(env, forged, credential="svid") == "bad_signature"
    # the RSA key's kid with an EC signature: the key fixes the algorithm family
    assert refused(env, svid(kid="rsa-1"), credential="svid") == "bad_algorithm"
    header, claims, sig = parts(svid())
    token = f"{enc(header)}.{enc({**claims, 'sub': OPS})}.{sig}"
    assert refused(env, token, credential="svid") == "bad_signature"


def test_svid_wrong_audience(env: Env) -> None:
    assert refused(env, svid(aud=["spiffe://acme.test/other"])) == "wrong_audience"
    assert refused(env, svid(aud=None)) == "missing_claim"


def test_svid_expired(env: Env) -> None:
    token = svid()
    env.world.clock.advance(300 + 30)
    assert refused(env, token, credential="svid") == "expired"
    assert refused(env, svid(exp=None)) == "missing_claim"
    assert refused(env, svid(exp=10**20)) == "malformed"
    assert refused(env, svid(nbf=NOW + 999, exp=NOW + 9999)) == "not_yet_valid"


def test_svid_alg_none_and_hs256(env: Env) -> None:
    header, claims, _ = parts(svid())
    token = f"{enc({**header, 'alg': 'none'})}.{enc(claims)}."
    assert refused(env, token, credential="svid") == "bad_algorithm"
    jwk = BUNDLES["acme.test"]["keys"][0]
    signing_input = f"{enc({**header, 'alg': 'HS256'})}.{enc(claims)}"
    for secret in (pem(EC_KEY).encode(), json.dumps(jwk).encode()):
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        assert refused(env, f"{signing_input}.{b64url(mac)}", credential="svid") == "bad_algorithm"
    ed = jwt.encode(
        claims, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": "ec-1"}
    )
    assert refused(env, ed, "verify_svid") == "bad_algorithm"  # EdDSA is no SVID algorithm


def test_no_bundles_no_svids(world: World) -> None:
    ids = service(world, spiffe_bundles={}, svid_agents={})
    with pytest.raises(InvalidToken) as err:
        ids.verify_svid(svid())
    assert err.value.reason == "unknown_trust_domain"


# --------------------------------------------------------------------------- task tokens


def issue(world: World) -> str:
    task = world.task()
    agent = world.tr.registry.resolve_agent(task.agent_id)
    return world.tr.tokens.issue(task, agent, str(agent.owner))


def test_task_token_through_authenticate(env: Env) -> None:
    token = issue(env.world)
    claims = env.world.tr.tokens.verify(token)
    principal = env.ids.authenticate(token)
    assert principal == Principal(
        HELPER, "task_token", claims.task_id, claims.jti, claims.expires_at
    )
    _, body, _ = parts(token)
    forged = jwt.encode(body, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": "x"})
    assert refused(env, forged, credential="task_token") == "unknown_kid"  # iss is Tribune's


def test_revoked_task_token(env: Env) -> None:
    token = issue(env.world)
    claims = env.world.tr.tokens.verify(token)
    store = env.world.tr.store
    assert store.revoke_token(claims.jti, claims.expires_at, START)
    with pytest.raises(InvalidToken) as err:
        env.world.tr.tokens.verify(token)
    assert err.value.reason == "revoked"
    assert refused(env, token, credential="task_token") == "revoked"
    other = issue(env.world)  # the list names one token, not the task
    assert env.ids.authenticate(other).via == "task_token"


def test_revocation_checked_after_the_signature(env: Env) -> None:
    token = issue(env.world)
    claims = env.world.tr.tokens.verify(token)
    env.world.tr.store.revoke_token(claims.jti, claims.expires_at, START)
    header, body, sig = parts(token)
    raw = bytearray(unb64(sig))
    raw[0] ^= 1
    assert refused(env, f"{enc(header)}.{enc(body)}.{b64url(bytes(raw))}") == "bad_signature"
