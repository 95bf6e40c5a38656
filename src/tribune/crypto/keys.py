"""Ed25519 key pairs: generate, identify, export as JWK, save to and load from a keys directory.

A key's id is its RFC 7638 JWK thumbprint (base64url SHA-256 of the canonical public JWK), so the
id names the key itself and cannot be reassigned to another key.

Layout of a keys directory (created with mode 0700):

    <name>.key.pem    the private key, PKCS#8 PEM, mode 0600 (``name`` e.g. ``signing``)
    <key id>.pub.pem  every public key ever used, SubjectPublicKeyInfo PEM, kept after rotation
                      so old checkpoints and tokens still verify

A private key file readable by group or others, or owned by another user, is refused.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tribune.core.model import check_name
from tribune.errors import InvalidInput, KeyFileInsecure, KeyFileInvalid

PRIVATE_SUFFIX = ".key.pem"
PUBLIC_SUFFIX = ".pub.pem"
MAX_KEY_FILE = 16 * 1024  # a PEM Ed25519 key is ~120 bytes; anything this large is not a key


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: Any) -> bytes:
    """Strict inverse of :func:`b64url`: raise ``ValueError`` on padding, foreign characters or a
    non-canonical encoding (so one value has exactly one text form)."""
    if not isinstance(text, str) or not text.isascii() or any(c in text for c in "+/=\n\r "):
        raise ValueError("not base64url")
    raw = base64.b64decode(
        text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), validate=True
    )
    if b64url(raw) != text:
        raise ValueError("non-canonical base64url")
    return raw


def raw_public_bytes(public_key: Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of an Ed25519 public key."""
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key: Ed25519PublicKey) -> str:
    """RFC 7638 thumbprint of the key: base64url SHA-256 of ``{"crv","kty","x"}`` (RFC 8037)."""
    members = {"crv": "Ed25519", "kty": "OKP", "x": b64url(raw_public_bytes(public_key))}
    # INVARIANT: RFC 7638 wants sorted keys, no whitespace; all members are ASCII strings.
    text = json.dumps(members, sort_keys=True, separators=(",", ":"))
    return b64url(hashlib.sha256(text.encode("ascii")).digest())


def public_jwk(public_key: Ed25519PublicKey) -> dict[str, str]:
    """The public key as a JWK (for a JWKS document); ``kid`` is the thumbprint."""
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": b64url(raw_public_bytes(public_key)),
        "kid": key_id(public_key),
        "alg": "EdDSA",
        "use": "sig",
    }


def public_key_from_jwk(jwk: Any) -> Ed25519PublicKey:
    """Read an Ed25519 public JWK. A ``kid``, if present, must equal the key's thumbprint."""
    if not isinstance(jwk, dict) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
        raise InvalidInput("not an Ed25519 public JWK", hint="expected `kty` OKP, `crv` Ed25519")
    if "d" in jwk:
        raise InvalidInput("JWK holds a private key", hint="publish public keys only")
    try:
        raw = b64url_decode(jwk.get("x"))
        public_key = Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise InvalidInput("JWK `x` is not an Ed25519 public key") from None
    kid = jwk.get("kid")
    if kid is not None and not (
        isinstance(kid, str) and hmac.compare_digest(kid.encode(), key_id(public_key).encode())
    ):
        raise InvalidInput(f"JWK `kid` `{kid}` is not the key's thumbprint")
    return public_key


@dataclass(frozen=True, slots=True)
class KeyPair:
    """An Ed25519 private key with its public half and key id. Never printed with its secret."""

    private_key: Ed25519PrivateKey
    public_key: Ed25519PublicKey
    key_id: str

    @classmethod
    def generate(cls) -> KeyPair:
        """A fresh key pair from the operating system's randomness."""
        return cls.from_private_key(Ed25519PrivateKey.generate())

    @classmethod
    def from_private_key(cls, private_key: Ed25519PrivateKey) -> KeyPair:
        public_key = private_key.public_key()
        return cls(private_key, public_key, key_id(public_key))

    def public_jwk(self) -> dict[str, str]:
        return public_jwk(self.public_key)

    def __repr__(self) -> str:
        return f"KeyPair(key_id={self.key_id!r})"


# --------------------------------------------------------------------------- files


def ensure_keys_dir(keys_dir: Path) -> Path:
    """Create ``keys_dir`` (mode 0700) if missing and return it."""
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return keys_dir


def _write_new(path: Path, data: bytes, mode: int) -> None:
    # INVARIANT: O_EXCL means an existing key is never overwritten and the file is born with
    # `mode`, so the secret is never readable by others, not even for a moment.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        path.unlink(missing_ok=True)  # never leave a half-written key behind
        raise


def private_key_path(keys_dir: Path, name: str = "signing") -> Path:
    return keys_dir / f"{check_name('key', name)}{PRIVATE_SUFFIX}"


def save_key_pair(keys_dir: Path, pair: KeyPair, *, name: str = "signing") -> Path:
    """Write the private key as ``<name>.key.pem`` (0600) and the public key as
    ``<key id>.pub.pem``; refuse to overwrite an existing private key. Returns the private path."""
    ensure_keys_dir(keys_dir)
    path = private_key_path(keys_dir, name)
    pem = pair.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        _write_new(path, pem, 0o600)
    except FileExistsError:
        raise KeyFileInvalid(
            f"key file `{path}` already exists", hint="remove it first to replace the key"
        ) from None
    save_public_key(keys_dir, pair.public_key)
    return path


def save_public_key(keys_dir: Path, public_key: Ed25519PublicKey) -> Path:
    """Write ``<key id>.pub.pem`` (0644) unless it is already there."""
    ensure_keys_dir(keys_dir)
    path = keys_dir / f"{key_id(public_key)}{PUBLIC_SUFFIX}"
    pem = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    try:
        _write_new(path, pem, 0o644)
    except FileExistsError:
        if raw_public_bytes(load_public_key(path)) != raw_public_bytes(public_key):
            raise KeyFileInvalid(f"public key file `{path}` holds another key") from None
    return path


def _read_key_file(path: Path, *, private: bool) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise KeyFileInvalid(f"key file `{path}` does not exist") from None
    except OSError as exc:
        raise KeyFileInvalid(f"cannot open key file `{path}`: {exc.strerror}") from None
    try:
        # INVARIANT: checks use fstat on the opened file, so the file checked is the file read.
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileInvalid(f"key file `{path}` is not a regular file")
        if private and os.name == "posix":
            if st.st_mode & 0o077:
                raise KeyFileInsecure(
                    f"private key file `{path}` is readable by group or others "
                    f"(mode {stat.S_IMODE(st.st_mode):04o})",
                    hint=f"run `chmod 600 {path}`",
                )
            if st.st_uid not in (os.geteuid(), 0):
                raise KeyFileInsecure(
                    f"private key file `{path}` is owned by another user",
                    hint="the key must belong to the user running tribune",
                )
        data = os.read(fd, MAX_KEY_FILE + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_KEY_FILE:
        raise KeyFileInvalid(f"key file `{path}` is too large to be a key")
    return data


def load_key_pair(keys_dir: Path, *, name: str = "signing") -> KeyPair:
    """Load ``<name>.key.pem``; raise ``KeyFileInsecure`` if its mode lets others read it."""
    path = private_key_path(keys_dir, name)
    data = _read_key_file(path, private=True)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # The parser's message may quote key material: say nothing about why.
        raise KeyFileInvalid(f"key file `{path}` is not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileInvalid(f"key file `{path}` is not an Ed25519 key")
    return KeyPair.from_private_key(key)


def load_or_create_key_pair(keys_dir: Path, *, name: str = "signing") -> KeyPair:
    """Load the named key pair, generating and saving it first if there is none."""
    if not private_key_path(keys_dir, name).exists():
        with contextlib.suppress(KeyFileInvalid):  # another process made it first: load theirs
            save_key_pair(keys_dir, KeyPair.generate(), name=name)
    return load_key_pair(keys_dir, name=name)


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Load one public key PEM file."""
    data = _read_key_file(path, private=False)
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyFileInvalid(f"key file `{path}` is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileInvalid(f"key file `{path}` is not an Ed25519 key")
    return key


def load_public_keys(keys_dir: Path) -> dict[str, Ed25519PublicKey]:
    """Every ``<key id>.pub.pem`` in ``keys_dir`` by key id. A file whose name is not the
    thumbprint of the key it holds is refused (someone swapped keys)."""
    out: dict[str, Ed25519PublicKey] = {}
    if not keys_dir.is_dir():
        return out
    for path in sorted(keys_dir.glob(f"*{PUBLIC_SUFFIX}")):
        public_key = load_public_key(path)
        kid = key_id(public_key)
        if not hmac.compare_digest(path.name.encode(), f"{kid}{PUBLIC_SUFFIX}".encode()):
            raise KeyFileInvalid(
                f"public key file `{path}` is not named after its key id",
                hint=f"its key id is `{kid}`",
            )
        out[kid] = public_key
    return out


# --------------------------------------------------------------------------- secret keys

SECRET_SUFFIX = ".secret"  # noqa: S105  (a file name ending, not a secret)
SECRET_SIZE = 32


def load_or_create_secret(keys_dir: Path, *, name: str = "digest") -> bytes:
    """A 32-byte random secret kept as ``<name>.secret`` (0600, refused if others can read it),
    made on first use. It keys the digests of argument values in audit records and of task
    literals, so a guessable value cannot be recovered by hashing guesses."""
    path = keys_dir / f"{check_name('key', name)}{SECRET_SUFFIX}"
    if not path.exists():
        ensure_keys_dir(keys_dir)
        with contextlib.suppress(FileExistsError):  # another process made it first: use theirs
            _write_new(path, os.urandom(SECRET_SIZE), 0o600)
    data = _read_key_file(path, private=True)
    if len(data) != SECRET_SIZE:
        raise KeyFileInvalid(f"secret file `{path}` is not a {SECRET_SIZE}-byte key")
    return data
