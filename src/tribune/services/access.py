"""API keys for Tribune's own API: creating, authenticating, revoking, and the first admin key.

A token is ``trb_<id>_<secret>``: ``id`` is 16 characters of lowercase base32 (80 random bits,
public), ``secret`` 43 characters of base64url (256 random bits). The store keeps the id and a
SHA-256 of the secret; the token itself is shown once, when the key is created.

Every way a token can fail (missing, malformed, unknown, wrong secret, revoked, expired, its
holder gone or inactive) raises the same ``Unauthenticated`` with the same message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from tribune.core.model import AgentStatus, ApiKey, RecordKind, Role, check_name
from tribune.errors import (
    AgentInactive,
    Conflict,
    InvalidInput,
    NotFound,
    Unauthenticated,
    UnknownPrincipal,
)
from tribune.ports import Clock, Ids, Store
from tribune.services.registry import Events, RegistryService

TOKEN_PREFIX = "trb_"  # noqa: S105 (a public prefix, not a secret)
ID_BYTES = 10  # 16 base32 characters
SECRET_BYTES = 32  # 43 base64url characters
TOKEN_RE = re.compile(r"trb_([a-z2-7]{16})_([A-Za-z0-9_\-]{43})")
TOKEN_LENGTH = len(TOKEN_PREFIX) + 16 + 1 + 43
MAX_NOTE = 200
MAX_TTL = 10 * 366 * 86_400  # ten years, in seconds
ADMINS_GROUP = "admins"

_REFUSED = "invalid or missing credential"
# Compared against when the id is unknown, so an unknown id costs what a wrong secret does.
_NO_HASH = "0" * 64


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling Tribune's API, as an authenticated key says."""

    key_id: str
    principal: str  # "user:alice" / "agent:spiffe://..."
    role: Role
    task_id: str | None = None  # a task token's caller acts only in that task
    via: str = "api_key"  # api_key | task_token | assertion | svid

    @property
    def user(self) -> str | None:
        """The user's name for a user principal, else None."""
        kind, _, rest = self.principal.partition(":")
        return rest if kind == "user" else None

    @property
    def agent_id(self) -> str | None:
        """The agent's SPIFFE id for an agent principal, else None."""
        kind, _, rest = self.principal.partition(":")
        return rest if kind == "agent" else None


def secret_hash(secret: str) -> str:
    """The stored form of a token's secret part: hex SHA-256."""
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def _refuse() -> Unauthenticated:
    return Unauthenticated(_REFUSED)


class AccessService:
    """API keys: create (the token is returned once), authenticate, revoke, list, bootstrap."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        ids: Ids,
        audit: Events,
        registry: RegistryService,
        *,
        random: Callable[[int], bytes] = secrets.token_bytes,
        cache_seconds: float = 1.0,
    ) -> None:
        self.store = store
        self.clock = clock
        self.ids = ids
        self.audit = audit
        self.registry = registry
        self._random = random  # the only source of key ids and secrets
        # Whether a key's holder (user, agent) is active, per principal: re-read at most every
        # cache_seconds, at once after a change made through this process's registry. A
        # suspension made by another replica takes effect here within cache_seconds.
        # INVARIANT: keys themselves are never cached: a revocation takes effect at once.
        self._ttl = timedelta(seconds=cache_seconds)
        self._holders: dict[str, tuple[bool, datetime]] = {}
        registry.on_change.append(self._holders.clear)

    # ----------------------------------------------------------------- create

    def create_key(
        self, principal: str, role: Role | str, *, note: str = "", ttl: int | None = None
    ) -> tuple[ApiKey, str]:
        """Create a key for ``user:<name>`` or ``agent:<name or spiffe id>``; return it with
        its plaintext token, which is never available again."""
        stored_principal, agent_id, wanted = self._check_principal(principal, role)
        note = _check_note(note)
        now = self.clock.now()
        expires = now + timedelta(seconds=_check_ttl(ttl)) if ttl is not None else None
        for _ in range(3):  # an id collision (80 random bits) is all but impossible
            key_id = base64.b32encode(self._random(ID_BYTES)).decode("ascii").lower()
            secret = base64.urlsafe_b64encode(self._random(SECRET_BYTES)).decode("ascii")[:43]
            key = ApiKey(
                key_id, stored_principal, wanted, secret_hash(secret), now, expires, None, note
            )
            try:
                self.store.add_api_key(key)
            except Conflict:
                continue
            break
        else:
            raise Conflict("could not find a free api key id", hint="check the random source")
        self.audit.record(
            RecordKind.EVENT,
            {
                "event": "api_key_created",
                "key_id": key.id,
                "principal": key.principal,
                "role": key.role.value,
            },
            agent_id=agent_id,
        )
        return key, f"{TOKEN_PREFIX}{key.id}_{secret}"

    def _check_principal(self, principal: str, role: Role | str) -> tuple[str, str | None, Role]:
        """(principal as stored, agent id or None, role), or raise for bad input."""
        try:
            wanted = Role(role)
        except ValueError:
            raise InvalidInput(
                f"invalid role `{role}`", hint="use admin, approver, auditor, agent or resource"
            ) from None
        kind, sep, name = principal.partition(":") if isinstance(principal, str) else ("", "", "")
        if kind == "service" and sep:
            if wanted is not Role.RESOURCE:
                raise InvalidInput("a service key can only have the `resource` role")
            return f"service:{check_name('service', name)}", None, wanted
        if wanted is Role.RESOURCE:
            raise InvalidInput("only a `service:NAME` key can have the `resource` role")
        if kind == "user" and sep:
            if wanted is Role.AGENT:
                raise InvalidInput("a user key cannot have the `agent` role")
            if self.store.get_user(check_name("user", name)) is None:
                raise UnknownPrincipal(
                    f"unknown user `{name}`", hint="add it with `tribune user add`"
                )
            return f"user:{name}", None, wanted
        if kind == "agent" and sep:
            if wanted is not Role.AGENT:
                raise InvalidInput(
                    f"an agent key can only have the `agent` role, not `{wanted.value}`"
                )
            agent = self.registry.resolve_agent(name)
            if agent.status is AgentStatus.RETIRED:
                raise AgentInactive(f"agent `{agent.name}` is retired")
            return f"agent:{agent.id}", agent.id, wanted
        raise InvalidInput(
            f"invalid principal `{principal}`",
            hint="write `user:NAME`, `agent:NAME` or `service:NAME`",
        )

    # ----------------------------------------------------------------- authenticate

    def authenticate(self, token: str | None) -> Caller:
        """The caller a token stands for, or ``Unauthenticated`` (one message for every
        failure). Reads the key and its holder; writes nothing."""
        if not isinstance(token, str) or len(token) != TOKEN_LENGTH:
            raise _refuse()
        match = TOKEN_RE.fullmatch(token)
        if match is None:
            raise _refuse()
        key_id, secret = match.groups()
        key = self.store.get_api_key(key_id)
        ok = hmac.compare_digest(secret_hash(secret), key.secret_hash if key else _NO_HASH)
        now = self.clock.now()
        if key is None or not ok or not key.active(now):
            raise _refuse()
        if not self._holder_active(key, now):
            raise _refuse()
        return Caller(key.id, key.principal, key.role)

    def _holder_active(self, key: ApiKey, now: datetime) -> bool:
        """The key's role fits its principal, and the principal exists and is active."""
        kind = key.principal.partition(":")[0]
        if (kind == "agent") != (key.role is Role.AGENT) or kind not in (
            "user",
            "agent",
            "service",
        ):
            return False
        if (kind == "service") != (key.role is Role.RESOURCE):
            return False
        if kind == "service":
            return True  # a downstream service: nothing to look up, the key is all there is
        hit = self._holders.get(key.principal)
        if hit is not None and timedelta(0) <= now - hit[1] < self._ttl:
            return hit[0]
        active = self._read_holder(key.principal)
        if len(self._holders) > 10_000:
            self._holders.clear()
        self._holders[key.principal] = (active, now)
        return active

    def _read_holder(self, principal: str) -> bool:
        kind, _, rest = principal.partition(":")
        if kind == "user":
            return self.store.get_user(rest) is not None
        agent = self.store.get_agent(rest)
        return agent is not None and agent.status is AgentStatus.ACTIVE

    # ----------------------------------------------------------------- revoke and list

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key; revoking one that is already revoked (or expired) changes nothing."""
        if self.store.get_api_key(key_id) is None:
            raise NotFound(f"unknown api key `{key_id}`", code="unknown_api_key")
        if self.store.revoke_api_key(key_id, self.clock.now()):
            key = self.store.get_api_key(key_id)
            assert key is not None  # INVARIANT: keys are never deleted
            kind, _, rest = key.principal.partition(":")
            self.audit.record(
                RecordKind.EVENT,
                {"event": "api_key_revoked", "key_id": key.id, "principal": key.principal},
                agent_id=rest if kind == "agent" else None,
            )
            return key
        key = self.store.get_api_key(key_id)
        assert key is not None
        return key

    def list(self) -> list[ApiKey]:
        """Every key, oldest first, revoked and expired ones included."""
        return self.store.list_api_keys()

    # ----------------------------------------------------------------- bootstrap

    def ensure_admin(self, user: str = "admin") -> str | None:
        """First run: when no active admin key exists, make sure ``user`` exists (in group
        ``admins``, created if missing), create an admin key for them and return its token.
        Otherwise return None."""
        now = self.clock.now()
        for key in self.store.list_api_keys():
            if key.role is Role.ADMIN and key.active(now) and self._holder_active(key, now):
                return None
        if self.store.get_user(check_name("user", user)) is None:
            if self.store.get_group(ADMINS_GROUP) is None:
                self.registry.add_group(ADMINS_GROUP, "Tribune administrators")
            self.registry.add_user(user, groups=(ADMINS_GROUP,))
        _, token = self.create_key(f"user:{user}", Role.ADMIN, note="first admin key")
        return token


def _check_note(note: str) -> str:
    if not isinstance(note, str) or len(note) > MAX_NOTE or not note.isprintable():
        raise InvalidInput(f"a note is at most {MAX_NOTE} printable characters")
    return note.strip()


def _check_ttl(ttl: int) -> int:
    if type(ttl) is not int or not 0 < ttl <= MAX_TTL:
        raise InvalidInput(
            f"invalid ttl `{ttl}`", hint=f"give a whole number of seconds from 1 to {MAX_TTL}"
        )
    return ttl
