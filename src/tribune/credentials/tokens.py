"""Downstream tokens: audience-bound JWTs Tribune signs for a service a task calls.

The token says who (``sub``: the agent, ``owner``), for what (``task``, ``lease``, and RFC 9396
``authorization_details``: the task's declared scope, or one call's tool and action digest when
the lease is for one call) and until when (``exp`` = the lease's expiry). Services verify it
offline with the JWKS, or online with RFC 7662 introspection, which also sees revocation.

Its ``jti`` is the lease id, so revoking the lease revokes every token minted for it, renewals
included. Its audience is never Tribune's own, so it can never pass as a task token.
"""

from __future__ import annotations

from typing import Any

from tribune.core.model import Lease
from tribune.crypto.token_keys import TokenKeys
from tribune.errors import InvalidInput
from tribune.ports import Clock, Store

DOWNSTREAM_TYPE = "tribune_downstream"


class TokenBackend:
    name = "token"

    def __init__(self, store: Store, clock: Clock, keys: TokenKeys, *, issuer: str) -> None:
        self.store = store
        self.clock = clock
        self.keys = keys
        self.issuer = issuer

    def handle_for(self, lease_id: str, scope: dict[str, Any]) -> str:
        return lease_id

    def check_scope(self, scope: dict[str, Any]) -> dict[str, Any]:
        audience = scope.get("audience")
        if not isinstance(audience, str) or not audience:
            raise InvalidInput("a token lease needs an `audience`")
        if audience == self.issuer:
            raise InvalidInput("a downstream token cannot be for Tribune itself")
        call = scope.get("call")
        if call is not None and not isinstance(call, dict):
            raise InvalidInput("`call` must be an object")
        return dict(scope)

    def issue(self, lease: Lease) -> dict[str, Any]:
        return {"token": self._sign(lease), "token_type": "Bearer"}

    def renew(self, lease: Lease) -> dict[str, Any] | None:
        # A JWT's expiry is fixed when signed: a renewal hands over a new one (same jti).
        return self.issue(lease)

    def revoke(self, lease: Lease) -> None:
        # Online checks (introspection) read the lease; the list serves those that only check
        # ids. Idempotent: a second entry is refused by the store and changes nothing.
        self.store.revoke_token(lease.id, lease.max_expires_at, self.clock.now())

    def _sign(self, lease: Lease) -> str:
        agent = self.store.get_agent(lease.agent_id)
        owner = f"{agent.owner.kind}:{agent.owner.name}" if agent is not None else ""
        call = lease.scope.get("call")
        if call is not None:
            details: dict[str, Any] = {"type": DOWNSTREAM_TYPE, "call": call}
        else:
            task = self.store.get_task(lease.task_id)
            details = {"type": DOWNSTREAM_TYPE, "purpose": task.scope.purpose if task else ""}
            if task is not None:
                details["tools"] = sorted(task.scope.tools)
                details["environment"] = task.scope.environment
        now = int(self.clock.now().timestamp())
        claims = {
            "iss": self.issuer,
            "aud": lease.scope["audience"],
            "sub": lease.agent_id,
            "owner": owner,
            "task": lease.task_id,
            "lease": lease.id,
            "jti": lease.id,
            "iat": now,
            "nbf": now,
            "exp": int(lease.expires_at.timestamp()),
            "authorization_details": [details],
        }
        return self.keys.sign(claims)
