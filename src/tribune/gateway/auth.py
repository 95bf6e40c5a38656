"""Who is calling the gateway: a task token, checked by Tribune's identity service.

Over streamable HTTP the agent presents its task token as a bearer token on every request;
``TaskTokenVerifier`` is the SDK's ``TokenVerifier`` for it. Over stdio the token comes from the
environment when the gateway starts and is checked again on every request, so a task that
ended or a token that was revoked stops working at once.

Only task tokens pass: the gateway governs calls of a task. The token's signature, issuer,
audience (Tribune's own, ``spiffe://<trust domain>/tribune``), expiry, revocation and the task's
and agent's state are all checked by ``IdentityService.authenticate``; every refusal is one
opaque answer, and its reason goes to an ``auth_refused`` audit event. The token itself is
never logged, recorded or passed upstream.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Protocol

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken

from tribune.crypto.token_keys import InvalidToken
from tribune.gateway.runners import Runner, in_thread
from tribune.services.identity import Principal

log = logging.getLogger(__name__)
TOKEN_ENV = "TRIBUNE_TASK_TOKEN"  # noqa: S105 (a variable name, not a secret)


class Authenticator(Protocol):
    """What the gateway needs of the identity service."""

    def authenticate(self, token: str) -> Principal: ...


def task_principal(identity: Authenticator, token: str | None) -> Principal | None:
    """The principal of a valid task token, else None. Never raises."""
    if not token:
        return None
    try:
        principal = identity.authenticate(token)
    except InvalidToken:
        return None
    except Exception as exc:  # fail closed: a store outage authenticates nobody
        log.warning("token check failed: %s", type(exc).__name__)
        return None
    if principal.via != "task_token" or not principal.task_id:
        return None  # an assertion or an SVID names an agent, not a task
    return principal


class TaskTokenVerifier:
    """The SDK's ``TokenVerifier`` over Tribune's task tokens (HTTP)."""

    def __init__(self, identity: Authenticator, audience: str, run: Runner = in_thread) -> None:
        self.identity = identity
        self.audience = audience  # what ``authenticate`` checked the token's `aud` against
        self.run = run

    async def verify_token(self, token: str) -> AccessToken | None:
        principal = await self.run(lambda: task_principal(self.identity, token))
        if principal is None:
            return None
        return AccessToken(
            token="",  # INVARIANT: the raw token is not kept past this check
            client_id=principal.agent_id,
            scopes=[],
            expires_at=int(principal.expires_at.timestamp()),
            resource=self.audience,
            subject=principal.agent_id,
            claims=_claims(principal),
        )


def _claims(principal: Principal) -> dict[str, Any]:
    return {
        "task": principal.task_id,
        "jti": principal.jti,
        "exp": principal.expires_at.isoformat(),
    }


def bearer_principal() -> Principal | None:
    """The principal the HTTP auth middleware verified for this request, if any."""
    token = get_access_token()
    if token is None or not token.claims or not token.claims.get("task"):
        return None
    claims = token.claims
    return Principal(
        agent_id=token.client_id,
        via="task_token",
        task_id=str(claims["task"]),
        jti=claims.get("jti"),
        expires_at=datetime.fromisoformat(str(claims["exp"])),
    )
