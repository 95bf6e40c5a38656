"""Credential backends: what a lease mints, renews and revokes.

A backend turns a ``Lease`` (already stored, with its id, task, scope and expiry) into a
credential for the lease's holder, and takes it away again. ``LeaseService`` owns the lease's
state and its audit records; a backend only talks to the system it mints for.

A lease's scope is what the backend's ``check_scope`` returned plus two keys the lease service
adds, which backends ignore: ``source`` (the credential source's name) and, for a lease bound to
one call, ``call`` (tool, action id and action digest).

Backends must be idempotent in ``revoke`` (a sweeper and a kill switch may both call it) and must
never log or return anything but the credential itself from ``issue``/``renew``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from tribune.core.model import Lease
from tribune.errors import InvalidInput

RESERVED = frozenset({"source", "call"})  # scope keys the lease service adds


def injected_value(credential: Mapping[str, Any]) -> Any:
    """What an enforcement point hands on for a credential (the SDK to a governed function, the
    gateway to an upstream): a secret's value, a bearer token, or a database connection URI."""
    for key in ("value", "token", "dsn"):
        if key in credential:
            return credential[key]
    raise InvalidInput("the credential backend returned nothing to inject")


def own_scope(scope: dict[str, Any]) -> dict[str, Any]:
    """``scope`` without the keys the lease service adds: what the backend itself checks."""
    return {k: v for k, v in scope.items() if k not in RESERVED}


class CredentialBackend(Protocol):
    name: str

    def handle_for(self, lease_id: str, scope: dict[str, Any]) -> str:
        """The name of what ``issue`` will make for this lease (a role name, a token id): known
        before issuing, so a lease is stored, and can be revoked, before its credential exists."""
        ...

    def check_scope(self, scope: dict[str, Any]) -> dict[str, Any]:
        """The scope in its normal form, or ``InvalidInput`` if this backend cannot mint it."""
        ...

    def issue(self, lease: Lease) -> dict[str, Any]:
        """Mint the credential for ``lease`` (valid until ``lease.expires_at`` at most) and
        return it for the holder. ``lease.handle`` names what is made."""
        ...

    def renew(self, lease: Lease) -> dict[str, Any] | None:
        """Extend the credential to the lease's new ``expires_at``; a new credential to hand
        over, or None when the old one simply lives longer."""
        ...

    def revoke(self, lease: Lease) -> None:
        """Make the credential unusable now. Idempotent; a missing credential is revoked."""
        ...
