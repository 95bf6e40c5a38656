"""The ``secret`` backend: a lease on a brokered secret hands its plaintext to the holder.

Scope is ``{"name": <secret name>}``. The secret is opened at issue time, at the enforcement
point, and handed to the governed function (never to the model).
"""

from __future__ import annotations

from typing import Any

from tribune.core.model import Lease
from tribune.credentials import own_scope
from tribune.errors import InvalidInput
from tribune.services.secrets import SecretService


class SecretBackend:
    """Brokers sealed secrets of a ``SecretService`` as lease credentials."""

    name = "secret"

    def __init__(self, service: SecretService) -> None:
        self.service = service

    def handle_for(self, lease_id: str, scope: dict[str, Any]) -> str:
        """The secret's name: what the lease hands over, never the value."""
        return str(self.check_scope(scope)["name"])

    def check_scope(self, scope: dict[str, Any]) -> dict[str, Any]:
        """``{"name": NAME}`` and nothing else (besides the lease service's own keys), naming a
        stored secret."""
        if not isinstance(scope, dict) or set(own_scope(scope)) != {"name"}:
            raise InvalidInput(
                'a secret lease\'s scope is `{"name": NAME}` and nothing else',
            )
        name = scope["name"]
        if not isinstance(name, str) or not self.service.exists(name):
            raise InvalidInput(f"no secret `{name}`", hint="see `tribune secrets list`")
        return {"name": name}

    def issue(self, lease: Lease) -> dict[str, Any]:
        """``{"value": plaintext}``, opened now from the store."""
        return {"value": self.service.open(self.check_scope(lease.scope)["name"])}

    def renew(self, lease: Lease) -> dict[str, Any] | None:
        """Nothing to renew: the holder keeps the value it has."""
        return None

    def revoke(self, lease: Lease) -> None:
        """Nothing to do: the value lives only in the holder's memory for the call it was issued
        for, and the stored secret is long-lived by design. To make a leaked value useless,
        change it at its source and `tribune secrets put` the new one."""
