"""Ed25519 signing and verification by key id: the adapters behind the ``Signer`` and
``Verifier`` ports.

Verification never raises on bad input: an unknown key id, a signature of the wrong length or
type, or a message that does not match all give ``False`` (one opaque failure, as in
pyca/cryptography), so callers cannot leak why a signature failed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tribune.crypto.keys import KeyPair, key_id, public_jwk, public_key_from_jwk
from tribune.errors import InvalidInput

SIGNATURE_SIZE = 64


class Ed25519Signer:
    """Signs with one private key; ``key_id`` is the key's RFC 7638 thumbprint."""

    def __init__(self, key: KeyPair | Ed25519PrivateKey) -> None:
        pair = key if isinstance(key, KeyPair) else KeyPair.from_private_key(key)
        self._private_key = pair.private_key
        self.public_key = pair.public_key
        self.key_id = pair.key_id

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``."""
        return self._private_key.sign(message)

    def public_jwk(self) -> dict[str, str]:
        return public_jwk(self.public_key)

    def __repr__(self) -> str:
        return f"Ed25519Signer(key_id={self.key_id!r})"


class Ed25519Verifier:
    """Holds public keys by key id and checks signatures against them."""

    def __init__(
        self, keys: Mapping[str, Ed25519PublicKey] | Iterable[Ed25519PublicKey] = ()
    ) -> None:
        self._keys: dict[str, Ed25519PublicKey] = {}
        if isinstance(keys, Mapping):
            for kid, public_key in keys.items():
                if kid != key_id(public_key):
                    raise InvalidInput(f"key id `{kid}` is not the key's thumbprint")
                self._keys[kid] = public_key
        else:
            for public_key in keys:
                self.add(public_key)

    @classmethod
    def from_jwks(cls, jwks: Any) -> Ed25519Verifier:
        """Build from a JWKS document ``{"keys": [...]}``; keys other than Ed25519 are skipped."""
        if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
            raise InvalidInput("not a JWKS document", hint='expected `{"keys": [...]}`')
        out = cls()
        for jwk in jwks["keys"]:
            if isinstance(jwk, dict) and jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
                out.add(public_key_from_jwk(jwk))
        return out

    def add(self, public_key: Ed25519PublicKey) -> str:
        """Trust ``public_key``; returns its key id."""
        kid = key_id(public_key)
        self._keys[kid] = public_key
        return kid

    def key_ids(self) -> list[str]:
        return sorted(self._keys)

    def knows(self, key_id: str) -> bool:
        return key_id in self._keys

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """Every trusted key as a JWKS document, in key id order."""
        return {"keys": [public_jwk(self._keys[kid]) for kid in sorted(self._keys)]}

    def verify(self, key_id: str, message: bytes, signature: bytes) -> bool:
        """True only if ``signature`` is a valid signature of ``message`` by key ``key_id``."""
        try:
            public_key = self._keys.get(key_id)
            if public_key is None:
                return False
            if not isinstance(signature, bytes | bytearray) or len(signature) != SIGNATURE_SIZE:
                return False
            if not isinstance(message, bytes | bytearray | memoryview):
                return False
            # Verification handles public data only; OpenSSL rejects a non-canonical S (RFC 8032
            # section 5.1.7), so a valid signature cannot be altered into another valid one.
            public_key.verify(bytes(signature), bytes(message))
            return True
        except InvalidSignature:
            return False
        except Exception:  # INVARIANT: any failure is False, never an exception
            return False
