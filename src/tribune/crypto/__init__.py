"""Keys and signatures. The only package that imports ``cryptography`` primitives."""

from tribune.crypto.keys import (
    KeyPair,
    b64url,
    b64url_decode,
    key_id,
    load_key_pair,
    load_or_create_key_pair,
    load_or_create_secret,
    load_public_keys,
    public_jwk,
    public_key_from_jwk,
    save_key_pair,
    save_public_key,
)
from tribune.crypto.signing import Ed25519Signer, Ed25519Verifier

__all__ = [
    "Ed25519Signer",
    "Ed25519Verifier",
    "KeyPair",
    "b64url",
    "b64url_decode",
    "key_id",
    "load_key_pair",
    "load_or_create_key_pair",
    "load_or_create_secret",
    "load_public_keys",
    "public_jwk",
    "public_key_from_jwk",
    "save_key_pair",
    "save_public_key",
]
