"""Agent identity: agents' own public keys, the RFC 7523-style assertions agents sign with them,
SPIFFE JWT-SVIDs from trusted bundles, and one ``authenticate`` for every kind of agent token.

Every refusal raises one opaque ``InvalidToken("invalid token")``; its ``reason`` goes to an
``auth_refused`` audit event, never to the caller. The token itself, and the free text of its
claims, are never recorded.

``authenticate`` reads the unverified header and claims only to CHOOSE a verifier; the verifier
chosen checks everything itself, so a token routed to the wrong one is simply refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Literal

from tribune.core.model import Agent, AgentKey, AgentStatus, RecordKind
from tribune.crypto.jwk import (
    BadSignature,
    generate_ed25519,
    key_algorithms,
    parse_jwks,
    parse_public_key,
    unverified,
    verify_jws,
)
from tribune.crypto.token_keys import InvalidToken
from tribune.errors import AgentInactive, Conflict, InvalidInput, NotFound
from tribune.ports import Clock, Store
from tribune.services.registry import Events, RegistryService
from tribune.services.tokens import TokenService

Via = Literal["task_token", "assertion", "svid"]
MAX_TOKEN = 16 * 1024  # refused before any parsing
MAX_JTI = 128
MAX_TIME = 253_402_300_799  # 9999-12-31T23:59:59Z: a later time is not a date
ASSERTION_ALGS = frozenset({"EdDSA", "ES256", "ES384", "RS256", "PS256"})
# The JWT-SVID spec allows exactly these (no EdDSA, never none or HMAC).
SVID_ALGS = frozenset(
    {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"}
)
ASSERTION_TYPES = (None, "JWT", "client-authentication+jwt")
SVID_TYPES = (None, "JWT", "JOSE")
AGENT_ID_RE = re.compile(
    r"spiffe://[a-z0-9][a-z0-9.\-]{0,253}/agent/[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}"
)
SPIFFE_ID_RE = re.compile(r"spiffe://([a-z0-9._\-]+)((?:/[A-Za-z0-9._\-]+)*)")
_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Principal:
    """The agent a verified token stands for, and how it proved it."""

    agent_id: str
    via: Via
    task_id: str | None  # task tokens only
    jti: str | None  # None for SVIDs (bearer tokens without one)
    expires_at: datetime


def trust_domain(spiffe_id: object) -> str | None:
    """The trust domain of a syntactically valid SPIFFE id, else None."""
    if not isinstance(spiffe_id, str) or len(spiffe_id) > 2048:
        return None
    match = SPIFFE_ID_RE.fullmatch(spiffe_id)
    if match is None or any(seg in (".", "..") for seg in match.group(2).split("/")):
        return None
    return match.group(1)


def is_agent_id(value: object) -> bool:
    """Whether ``value`` is written like an agent id (``spiffe://<td>/agent/<name>``)."""
    return isinstance(value, str) and AGENT_ID_RE.fullmatch(value) is not None


def _parse(
    token: object, algorithms: frozenset[str]
) -> tuple[str, dict[str, Any], str, str | None]:
    """(token, unverified claims, alg, kid) once the size, the form and the header pass."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN:
        raise InvalidToken("malformed")
    parsed = unverified(token)
    if parsed is None:
        raise InvalidToken("malformed")
    header, claims = parsed
    alg = header.get("alg")
    # INVARIANT: alg is pinned to a fixed list: `none` and HMAC never get further than here.
    if not isinstance(alg, str) or alg not in algorithms:
        raise InvalidToken("bad_algorithm")
    types = SVID_TYPES if algorithms is SVID_ALGS else ASSERTION_TYPES
    if "crit" in header or header.get("typ") not in types:
        raise InvalidToken("bad_header")
    kid = header.get("kid")
    return token, claims, alg, kid if isinstance(kid, str) else None


def _time(claims: dict[str, Any], name: str) -> int:
    if name not in claims:
        raise InvalidToken("missing_claim")
    value = claims[name]
    if type(value) is not int or not 0 <= value <= MAX_TIME:  # bool and float are refused
        raise InvalidToken("malformed")
    return value


def _verified(token: str, jwk: Mapping[str, Any], alg: str) -> dict[str, Any]:
    try:
        return verify_jws(token, jwk, alg)
    except BadSignature as exc:
        raise InvalidToken("malformed" if exc.malformed else "bad_signature") from None


class IdentityService:
    """Agent keys (create, add, revoke, list) and verification of agent tokens."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        events: Events,
        registry: RegistryService,
        *,
        audience: str,
        token_service: TokenService,
        spiffe_bundles: Mapping[str, Mapping[str, Any]] = _EMPTY,
        svid_agents: Mapping[str, str] = _EMPTY,
        max_assertion_ttl: int = 300,
        leeway: int = 30,
    ) -> None:
        if max_assertion_ttl <= 0 or leeway < 0:
            raise ValueError("max_assertion_ttl must be positive and leeway not negative")
        self.store = store
        self.clock = clock
        self.events = events
        self.registry = registry
        self.audience = audience
        self.tokens = token_service
        self.max_assertion_ttl = max_assertion_ttl
        self.leeway = leeway
        self._bundles: dict[str, dict[str, dict[str, Any]]] = {}
        for domain, doc in spiffe_bundles.items():
            if trust_domain(f"spiffe://{domain}") != domain:
                raise InvalidInput(f"invalid trust domain `{domain}`")
            keys = parse_jwks(doc, use="jwt-svid", keep_kid=True)
            self._bundles[domain] = {key["kid"]: key for key in keys}
        for svid, agent_id in svid_agents.items():
            if trust_domain(svid) is None or not is_agent_id(agent_id):
                raise InvalidInput(f"invalid SVID alias `{svid}` -> `{agent_id}`")
        self._aliases = dict(svid_agents)

    # ----------------------------------------------------------------- keys

    def _agent(self, agent: str) -> Agent:
        found = self.registry.resolve_agent(agent)
        if found.status is AgentStatus.RETIRED:
            raise AgentInactive(f"agent `{found.name}` is retired")
        return found

    def create_key(self, agent: str) -> tuple[AgentKey, str]:
        """A new Ed25519 pair for ``agent``: only the public half is stored; the private key is
        returned as PKCS#8 PEM, this once."""
        found = self._agent(agent)
        jwk, pem = generate_ed25519()
        return self._add(found, jwk, "generated"), pem

    def add_key(self, agent: str, public: str | dict[str, Any]) -> AgentKey:
        """Bind the agent's own public key (PEM or JWK) to it."""
        found = self._agent(agent)
        return self._add(found, _usable(parse_public_key(public)), "given")

    def add_jwks(self, agent: str, jwks: dict[str, Any]) -> list[AgentKey]:
        """Bind every key of a JWKS document; all are checked before any is stored."""
        found = self._agent(agent)
        keys = [_usable(jwk) for jwk in parse_jwks(jwks)]
        if not keys:
            raise InvalidInput("the JWKS document holds no keys")
        known = {key.kid for key in self.store.list_agent_keys(found.id)}
        if known & {jwk["kid"] for jwk in keys}:
            raise Conflict(f"agent `{found.name}` already has a key of this JWKS document")
        return [self._add(found, jwk, "given") for jwk in keys]

    def check_public(
        self, public: str | dict[str, Any] | None = None, jwks: dict[str, Any] | None = None
    ) -> None:
        """Refuse (``InvalidInput``) a key or JWKS that ``add_key``/``add_jwks`` would refuse,
        storing nothing: lets a caller validate before registering an agent."""
        if jwks is not None:
            if not [_usable(jwk) for jwk in parse_jwks(jwks)]:
                raise InvalidInput("the JWKS document holds no keys")
        elif public is not None:
            _usable(parse_public_key(public))

    def _add(self, agent: Agent, jwk: dict[str, Any], source: str) -> AgentKey:
        key = AgentKey(agent.id, jwk["kid"], jwk, self.clock.now(), None, source)
        self.store.add_agent_key(key)
        self.events.record(
            RecordKind.EVENT,
            {
                "event": "agent_key_created",
                "agent": agent.id,
                "kid": key.kid,
                "kty": jwk["kty"],
                "source": source,
            },
            agent_id=agent.id,
        )
        return key

    def revoke_key(self, agent: str, kid: str) -> AgentKey:
        """Revoke one of the agent's keys; ``NotFound`` if unknown or already revoked."""
        found = self.registry.resolve_agent(agent)
        if not self.store.revoke_agent_key(found.id, kid, self.clock.now()):
            shown = kid if isinstance(kid, str) and len(kid) <= MAX_JTI else "..."
            raise NotFound(
                f"agent `{found.name}` has no active key `{shown}`", code="unknown_agent_key"
            )
        self.events.record(
            RecordKind.EVENT,
            {"event": "agent_key_revoked", "agent": found.id, "kid": kid},
            agent_id=found.id,
        )
        return next(k for k in self.store.list_agent_keys(found.id) if k.kid == kid)

    def list_keys(self, agent: str) -> list[AgentKey]:
        """The agent's keys, oldest first, revoked ones included."""
        return self.store.list_agent_keys(self.registry.resolve_agent(agent).id)

    # ----------------------------------------------------------------- verify

    def verify_assertion(self, token: str) -> str:
        """The agent id of a valid client assertion (used up: it never verifies again)."""
        return self._checked("assertion", token, self._assertion).agent_id

    def verify_svid(self, token: str) -> str:
        """The agent id of a valid JWT-SVID."""
        return self._checked("svid", token, self._svid).agent_id

    def authenticate(self, token: str) -> Principal:
        """Who a task token, an agent's assertion or a JWT-SVID stands for."""
        credential, check = self._choose(token)
        return self._checked(credential, token, check)

    def _choose(self, token: object) -> tuple[str, Callable[[object], Principal]]:
        # INVARIANT: nothing here is trusted; it only picks which verifier decides.
        parsed = unverified(token) if isinstance(token, str) and len(token) <= MAX_TOKEN else None
        if parsed is None:
            return "unknown", _malformed
        header, claims = parsed
        kid = header.get("kid")
        if kid in self.tokens.keys.key_ids() or claims.get("iss") == self.tokens.issuer:
            return "task_token", self._task_token
        bundle = self._bundles.get(trust_domain(claims.get("sub")) or "", {})
        if isinstance(kid, str) and kid in bundle:
            return "svid", self._svid
        return "assertion", self._assertion

    def _checked(
        self, credential: str, token: object, check: Callable[[object], Principal]
    ) -> Principal:
        try:
            return check(token)
        except InvalidToken as exc:
            self._refused(exc.reason, credential, token)
            raise

    def _refused(self, reason: str, credential: str, token: object) -> None:
        body: dict[str, Any] = {"event": "auth_refused", "reason": reason, "credential": credential}
        parsed = unverified(token) if isinstance(token, str) and len(token) <= MAX_TOKEN else None
        sub = parsed[1].get("sub") if parsed else None
        agent_id = sub if isinstance(sub, str) and is_agent_id(sub) else None
        if agent_id is not None:
            body["sub"] = agent_id
        self.events.record(RecordKind.EVENT, body, agent_id=agent_id)

    def _task_token(self, token: object) -> Principal:
        if not isinstance(token, str):
            raise InvalidToken("malformed")
        claims = self.tokens.verify(token)
        return Principal(
            claims.agent_id, "task_token", claims.task_id, claims.jti, claims.expires_at
        )

    def _assertion(self, token: object) -> Principal:
        token, unchecked, alg, kid = _parse(token, ASSERTION_ALGS)
        agent_id = unchecked.get("iss")
        if not isinstance(agent_id, str) or not is_agent_id(agent_id):
            raise InvalidToken("malformed")
        key = next((k for k in self.store.list_agent_keys(agent_id) if k.kid == kid), None)
        if key is None:
            raise InvalidToken("unknown_kid")
        if not key.active():
            raise InvalidToken("key_revoked")
        if alg not in key_algorithms(key.jwk):
            raise InvalidToken("bad_algorithm")
        claims = _verified(token, key.jwk, alg)
        if claims.get("iss") != agent_id:  # the signed payload is the one read above
            raise InvalidToken("malformed")
        if claims.get("sub") != agent_id:
            raise InvalidToken("subject_mismatch")
        self._audience(claims)
        exp, iat = self._times(claims, iat_required=True)
        if exp - iat > self.max_assertion_ttl:
            raise InvalidToken("too_long_lived")
        jti = claims.get("jti")
        if jti is None:
            raise InvalidToken("missing_claim")
        if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI:
            raise InvalidToken("malformed")
        self._active(agent_id)
        expires_at = datetime.fromtimestamp(exp, UTC)
        # INVARIANT: the id is kept until the assertion can no longer pass (exp + leeway), so
        # pruning used ids never reopens a window for a replay. Used last: a refused assertion
        # does not burn its jti.
        if not self.store.use_jti(agent_id, jti, expires_at + timedelta(seconds=self.leeway)):
            raise InvalidToken("replayed")
        return Principal(agent_id, "assertion", None, jti, expires_at)

    def _svid(self, token: object) -> Principal:
        token, unchecked, alg, kid = _parse(token, SVID_ALGS)
        sub = unchecked.get("sub")
        domain = trust_domain(sub)
        if domain is None or not isinstance(sub, str):
            raise InvalidToken("malformed")
        bundle = self._bundles.get(domain)
        if bundle is None:
            raise InvalidToken("unknown_trust_domain")
        jwk = bundle.get(kid) if kid is not None else None
        if jwk is None:
            raise InvalidToken("unknown_kid")
        if alg not in key_algorithms(jwk):
            raise InvalidToken("bad_algorithm")
        claims = _verified(token, jwk, alg)
        if claims.get("sub") != sub:  # the signed payload is the one read above
            raise InvalidToken("malformed")
        self._audience(claims)
        exp, _ = self._times(claims, iat_required=False)
        agent_id = self._aliases.get(sub, sub)
        self._active(agent_id)
        return Principal(agent_id, "svid", None, None, datetime.fromtimestamp(exp, UTC))

    def _audience(self, claims: dict[str, Any]) -> None:
        aud = claims.get("aud")
        if aud is None:
            raise InvalidToken("missing_claim")
        values = aud if isinstance(aud, list) else [aud]
        if self.audience not in values or not all(isinstance(v, str) for v in values):
            raise InvalidToken("wrong_audience")

    def _times(self, claims: dict[str, Any], *, iat_required: bool) -> tuple[int, int]:
        """(exp, iat) checked against the clock with leeway; ``nbf`` and ``iat`` are honoured
        when present (``iat`` 0 when absent and not required)."""
        exp = _time(claims, "exp")
        iat = _time(claims, "iat") if iat_required or "iat" in claims else 0
        now = self.clock.now().timestamp()
        if now >= exp + self.leeway:
            raise InvalidToken("expired")
        if "nbf" in claims and _time(claims, "nbf") > now + self.leeway:
            raise InvalidToken("not_yet_valid")
        if iat > now + self.leeway:
            raise InvalidToken("issued_in_future")
        return exp, iat

    def _active(self, agent_id: str) -> None:
        agent = self.store.get_agent(agent_id)
        if agent is None:
            raise InvalidToken("unknown_agent")
        if agent.status is not AgentStatus.ACTIVE:
            raise InvalidToken("agent_inactive")


def _malformed(token: object) -> Principal:
    raise InvalidToken("malformed")


def _usable(jwk: dict[str, Any]) -> dict[str, Any]:
    """``jwk`` if it can sign an assertion (an RSA key fixed to RS512, say, never could)."""
    if not key_algorithms(jwk) & ASSERTION_ALGS:
        raise InvalidInput(
            f"key `alg` `{jwk.get('alg')}` cannot sign assertions",
            hint="use EdDSA, ES256, ES384, RS256 or PS256",
        )
    return jwk
