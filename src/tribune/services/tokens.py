"""Task tokens: a JWT (EdDSA) Tribune signs when a task starts, and the check every enforcement
point runs on it.

The token carries the agent (``sub``, its SPIFFE id), the owner, the task id and the task's
declared scope as RFC 9396 ``authorization_details``. Task literals never appear in a token, not
even as digests. ``exp`` is never later than the task's own expiry.

``verify`` refuses with one opaque ``InvalidToken("invalid token")``; the precise reason is on
the exception's ``reason`` attribute, for the audit log only.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tribune.core.model import Agent, AgentStatus, Task
from tribune.crypto.token_keys import InvalidToken, TokenKeys
from tribune.ports import Clock, Store

DETAILS_TYPE = "tribune_task"
DEFAULT_MAX_TTL = 3600
DEFAULT_LEEWAY = 30  # seconds of clock skew tolerated on iat / nbf / exp
REQUIRED = ("iss", "aud", "sub", "owner", "task", "jti", "iat", "nbf", "exp")


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a verified task token says."""

    agent_id: str
    owner: str
    task_id: str
    jti: str
    expires_at: datetime
    scope: dict[str, Any]  # the ``tribune_task`` entry of ``authorization_details``


def authorization_details(task: Task) -> list[dict[str, Any]]:
    """The task's declared scope in RFC 9396 form. Literals are left out on purpose."""
    scope = task.scope
    limits = scope.limits
    return [
        {
            "type": DETAILS_TYPE,
            "purpose": scope.purpose,
            "tools": sorted(scope.tools),
            "tool_groups": sorted(scope.tool_groups),
            "environment": scope.environment,
            "limits": {
                "max_amount": limits.max_amount,
                "max_count": limits.max_count,
                "max_calls": limits.max_calls,
            },
            "targets": sorted(scope.targets),
            "open_scope": scope.open_scope,
        }
    ]


def _timestamp(claims: dict[str, Any], name: str) -> int:
    value = claims[name]
    if type(value) is not int:  # bool and float are refused too
        raise InvalidToken("malformed")
    return value


class TokenService:
    """Issues and verifies task tokens signed with the home's token keys."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        keys: TokenKeys,
        *,
        issuer: str,
        audience: str,
        max_ttl: int = DEFAULT_MAX_TTL,
        leeway: int = DEFAULT_LEEWAY,
    ) -> None:
        if max_ttl <= 0 or leeway < 0:
            raise ValueError("max_ttl must be positive and leeway not negative")
        self.store = store
        self.clock = clock
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.max_ttl = max_ttl
        self.leeway = leeway

    def issue(self, task: Task, agent: Agent, owner: str) -> str:
        """A signed token for ``agent`` working on ``task``; it expires with the task at the
        latest, and after ``max_ttl`` seconds in any case."""
        if task.agent_id != agent.id:
            raise ValueError("the task belongs to another agent")
        now = int(self.clock.now().timestamp())
        # INVARIANT: rounding the task's expiry down keeps exp at or before it.
        exp = min(int(task.expires_at.timestamp()), now + self.max_ttl)
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": agent.id,
            "owner": owner,
            "task": task.id,
            "jti": secrets.token_urlsafe(16),
            "iat": now,
            "nbf": now,
            "exp": exp,
            "authorization_details": authorization_details(task),
        }
        return self.keys.sign(claims)

    def verify(self, token: str, *, audience: str | None = None) -> TokenClaims:
        """The claims of a valid, unrevoked token whose task and agent are still active.
        Raises ``InvalidToken`` (opaque message, precise ``reason``) otherwise."""
        claims = self.keys.verified_claims(token)
        if any(name not in claims for name in REQUIRED):
            raise InvalidToken("missing_claim")
        if claims["iss"] != self.issuer:
            raise InvalidToken("wrong_issuer")
        if claims["aud"] != (audience or self.audience):
            raise InvalidToken("wrong_audience")
        now = self.clock.now().timestamp()
        if now >= _timestamp(claims, "exp") + self.leeway:
            raise InvalidToken("expired")
        if _timestamp(claims, "nbf") > now + self.leeway:
            raise InvalidToken("not_yet_valid")
        if _timestamp(claims, "iat") > now + self.leeway:
            raise InvalidToken("issued_in_future")
        agent_id, task_id, owner, jti = (claims[n] for n in ("sub", "task", "owner", "jti"))
        if not all(isinstance(v, str) for v in (agent_id, task_id, owner, jti)):
            raise InvalidToken("malformed")
        scope = _scope(claims.get("authorization_details"))
        state = self.store.token_state(task_id, jti)  # one read: task, agent, revocation
        if state is not None and state.revoked:
            raise InvalidToken("revoked")
        if state is None:
            raise InvalidToken("unknown_task")
        if state.agent_id != agent_id:
            raise InvalidToken("subject_mismatch")
        if not state.task_active(self.clock.now()):
            raise InvalidToken("task_inactive")
        if state.agent_status is not AgentStatus.ACTIVE:
            raise InvalidToken("agent_inactive")
        return TokenClaims(
            agent_id=agent_id,
            owner=owner,
            task_id=task_id,
            jti=jti,
            expires_at=datetime.fromtimestamp(claims["exp"], UTC),
            scope=scope,
        )


def _scope(details: Any) -> dict[str, Any]:
    """The one ``tribune_task`` entry of ``authorization_details``."""
    if not isinstance(details, list):
        raise InvalidToken("malformed")
    found = [d for d in details if isinstance(d, dict) and d.get("type") == DETAILS_TYPE]
    if len(found) != 1:
        raise InvalidToken("malformed")
    return dict(found[0])
