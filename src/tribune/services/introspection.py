"""Online checks of Tribune's tokens for the services that receive them: RFC 7662
introspection and RFC 7009 revocation.

Both kinds of token are signed by the home's token keys. A task token (audience: Tribune) is
active while its task and agent are; a downstream token (another audience) while its lease is.
Neither is active once on the revocation list.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tribune.core.model import AgentStatus, RecordKind, Role
from tribune.crypto.token_keys import InvalidToken, TokenKeys
from tribune.ports import Clock, Store
from tribune.services.access import Caller
from tribune.services.leases import LeaseService
from tribune.services.registry import Events
from tribune.services.tokens import TokenService

INACTIVE: dict[str, Any] = {"active": False}
SHOWN = ("iss", "sub", "aud", "exp", "iat", "nbf", "jti", "owner", "task", "lease")


class Introspection:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        keys: TokenKeys,
        tokens: TokenService,
        leases: LeaseService,
        events: Events,
        *,
        leeway: int = 30,
    ) -> None:
        self.events = events
        self.store = store
        self.clock = clock
        self.keys = keys
        self.tokens = tokens
        self.leases = leases
        self.leeway = leeway

    def introspect(self, token: str) -> dict[str, Any]:
        """RFC 7662's answer for ``token``: ``{"active": false}`` for anything not usable now."""
        try:
            claims = self._active_claims(token)
        except InvalidToken:
            return dict(INACTIVE)
        out = {name: claims[name] for name in SHOWN if name in claims}
        out.update(
            active=True,
            token_type="Bearer",  # noqa: S106 (a token type, not a secret)
            client_id=claims["sub"],
            authorization_details=claims.get("authorization_details", []),
        )
        return out

    def revoke(self, token: str, *, caller: Caller) -> None:
        """RFC 7009: a downstream token's lease is revoked; a task token goes on the revocation
        list. An agent may revoke only its own tokens; a token that does not verify is
        ignored."""
        try:
            claims = self.keys.verified_claims(token)
        except InvalidToken:
            return
        sub = claims.get("sub")
        if caller.role is Role.AGENT and sub != caller.agent_id:
            return
        if "lease" in claims and isinstance(claims["lease"], str):
            if self.store.get_lease(claims["lease"]) is not None:
                self.leases.revoke(claims["lease"], "token_revoked")
            return
        jti, exp = claims.get("jti"), claims.get("exp")
        if claims.get("aud") == self.tokens.audience and isinstance(jti, str):
            # A task token: onto the revocation list until it expires; its task goes on (the
            # agent may hold other tokens for it; ending the task is `POST /v1/tasks/{id}/end`).
            until = datetime.fromtimestamp(exp if type(exp) is int else 0, UTC)
            if self.store.revoke_token(jti, max(until, self.clock.now()), self.clock.now()):
                self.events.record(
                    RecordKind.EVENT,
                    {"event": "token_revoked", "jti": jti},
                    task_id=claims.get("task") if isinstance(claims.get("task"), str) else None,
                    agent_id=sub if isinstance(sub, str) else None,
                )

    def _active_claims(self, token: str) -> dict[str, Any]:
        claims = self.keys.verified_claims(token)
        if claims.get("aud") == self.tokens.audience:
            self.tokens.verify(token)  # task, agent and revocation list
            return claims
        lease_id = claims.get("lease")
        if claims.get("iss") != self.tokens.issuer or not isinstance(lease_id, str):
            raise InvalidToken("malformed")
        now = self.clock.now()
        exp, nbf = claims.get("exp"), claims.get("nbf", 0)
        if type(exp) is not int or type(nbf) is not int:
            raise InvalidToken("malformed")
        if now >= datetime.fromtimestamp(exp, UTC) or nbf > now.timestamp() + self.leeway:
            raise InvalidToken("expired")
        lease = self.store.get_lease(lease_id)
        if lease is None or not lease.live(now) or lease.agent_id != claims.get("sub"):
            raise InvalidToken("lease_inactive")
        task = self.store.get_task(lease.task_id)
        if task is None or not task.is_active(now):
            raise InvalidToken("task_inactive")
        agent = self.store.get_agent(lease.agent_id)
        if agent is None or agent.status is not AgentStatus.ACTIVE:
            raise InvalidToken("agent_inactive")
        if self.store.token_revoked(lease_id):
            raise InvalidToken("revoked")
        return claims
