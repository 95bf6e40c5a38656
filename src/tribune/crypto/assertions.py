"""The agent's side of key-based authentication: an RFC 7523-style client assertion (a JWT the
agent signs with its own Ed25519 key), for SDKs and tests.

It runs in the agent's process, so it reads the system clock unless given ``now``.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tribune.crypto.keys import key_id
from tribune.errors import InvalidInput

ALGORITHM = "EdDSA"


def sign_assertion(
    private_key_pem: str | bytes,
    agent_id: str,
    audience: str,
    *,
    ttl: int = 60,
    kid: str | None = None,
    now: datetime | None = None,
) -> str:
    """A signed assertion that ``agent_id`` is calling ``audience``: ``iss`` = ``sub`` = the
    agent, ``iat``, ``exp`` = ``iat`` + ``ttl``, a fresh random ``jti``. ``kid`` defaults to
    the key's RFC 7638 thumbprint, which is the id Tribune gives the key."""
    if type(ttl) is not int or ttl <= 0:
        raise InvalidInput(f"invalid ttl `{ttl}`", hint="give a positive whole number of seconds")
    data = private_key_pem.encode("ascii") if isinstance(private_key_pem, str) else private_key_pem
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # The parser's message may quote key material: say nothing about why.
        raise InvalidInput("not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidInput("assertions are signed with an Ed25519 key")
    iat = int((now or datetime.now(UTC)).timestamp())
    claims = {
        "iss": agent_id,
        "sub": agent_id,
        "aud": audience,
        "iat": iat,
        "exp": iat + ttl,
        "jti": secrets.token_urlsafe(24),
    }
    headers = {"kid": kid or key_id(key.public_key()), "typ": "JWT"}
    return jwt.encode(claims, key, algorithm=ALGORITHM, headers=headers)
