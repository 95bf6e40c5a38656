"""Sealing long-lived secrets at rest: AES-256-GCM under a key of the home's keys directory.

A sealed value is base64url(nonce || ciphertext || tag) with a 96-bit random nonce and the
secret's name as associated data, so a sealed value copied to another name does not open.

The sealing key comes from ``TRIBUNE_SEALING_KEY`` (base64url of 32 bytes) when set, else from
the key file (made on first use):

    <keys dir>/sealing.key            the current key, 32 raw bytes, mode 0600
    <keys dir>/sealing.old/<id>.key   keys rotated out, kept so older sealed values still open

A key is named by its id: 16 hex characters of SHA-256 over a fixed label and the key. Every
failure to open (unknown key, wrong key, altered value, another name) raises the same
``SealedSecretError``; neither a message nor a repr ever holds a key or a plaintext.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tribune.crypto.keys import _read_key_file, _write_new, b64url, b64url_decode, ensure_keys_dir
from tribune.errors import ConfigError, CredentialBackendUnavailable, KeyFileInvalid

ENV_KEY = "TRIBUNE_SEALING_KEY"
KEY_FILE = "sealing.key"
OLD_DIR = "sealing.old"
KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
_ID_LABEL = b"tribune sealing key id v1\x00"


class SealedSecretError(CredentialBackendUnavailable):
    """A sealed secret that cannot be opened. The message never says why."""

    code = "secret_unreadable"


def sealing_key_id(key: bytes) -> str:
    """The public name of a sealing key: 16 hex characters of SHA-256(label || key)."""
    return hashlib.sha256(_ID_LABEL + key).hexdigest()[:16]


def parse_env_key(text: str) -> bytes:
    """The key in ``TRIBUNE_SEALING_KEY``: base64url of 32 bytes (padding and surrounding
    whitespace tolerated). ``ConfigError`` otherwise; the message never quotes the value."""
    try:
        key = b64url_decode(text.strip().rstrip("="))
    except ValueError:
        key = b""
    if len(key) != KEY_SIZE:
        make = f"python -c 'import secrets; print(secrets.token_urlsafe({KEY_SIZE}))'"
        raise ConfigError(
            f"`{ENV_KEY}` is not base64url of {KEY_SIZE} bytes", hint=f"make one with `{make}`"
        )
    return key


def _unreadable(name: str) -> SealedSecretError:
    return SealedSecretError(
        f"secret `{name}` cannot be opened",
        hint="its sealing key may be gone, or the stored value was altered",
    )


def _write_atomically(path: Path, data: bytes, *, replace: bool) -> bool:
    """Write ``data`` to ``path`` (mode 0600) so that the path never shows a partial file:
    a temporary file is written and synced, then linked (``replace`` false: False, nothing
    changed, if ``path`` exists) or renamed over ``path``."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    _write_new(tmp, data, 0o600)
    try:
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _read_key(path: Path) -> bytes:
    data = _read_key_file(path, private=True)
    if len(data) != KEY_SIZE:
        raise KeyFileInvalid(f"sealing key file `{path}` is not a {KEY_SIZE}-byte key")
    return data


def _hkdf(key: bytes, label: bytes) -> bytes:
    return HKDF(algorithm=SHA256(), length=KEY_SIZE, salt=None, info=label).derive(key)


class Sealer:
    """Seals and opens secrets with the home's sealing keys; rotates the key file.

    Keys are read on first use. A key id this process does not know makes it read the key
    directory again once, so a rotation by another process (the CLI) is picked up.
    """

    def __init__(self, keys_dir: Path, *, env: Mapping[str, str] | None = None) -> None:
        self.dir = keys_dir
        self._env_text = (os.environ if env is None else env).get(ENV_KEY) or None
        self._lock = threading.Lock()
        self._current: tuple[str, AESGCM] | None = None
        self._keys: dict[str, AESGCM] = {}  # every key that opens, by id
        self._derived: dict[str, bytes] = {}  # by id: a subkey for `derived`, never the key

    def __repr__(self) -> str:
        return f"Sealer(dir={str(self.dir)!r}, from_env={self.from_env})"

    @property
    def from_env(self) -> bool:
        """Whether the current key comes from ``TRIBUNE_SEALING_KEY``."""
        return self._env_text is not None

    @property
    def key_id(self) -> str:
        """The id of the key ``seal`` uses."""
        return self._loaded()[0]

    def key_ids(self) -> list[str]:
        """Ids of every key that opens (current and rotated out), sorted."""
        self._loaded()
        with self._lock:
            return sorted(self._keys)

    def derived(self, label: bytes) -> list[bytes]:
        """Keys for another purpose named by ``label`` (HKDF-SHA256 over each sealing key), the
        current key's first: processes and replicas that share the sealing keys share these,
        and values made under a key rotated out still open."""
        kid, _ = self._loaded()
        with self._lock:
            others = sorted(k for k in self._derived if k != kid)
            return [_hkdf(self._derived[k], label) for k in (kid, *others)]

    # ------------------------------------------------------------------ seal / open

    def seal(self, name: str, plaintext: bytes) -> tuple[str, str]:
        """``(sealed, key id)`` for ``plaintext`` bound to ``name``."""
        kid, aead = self._loaded()
        nonce = os.urandom(NONCE_SIZE)
        # INVARIANT: a fresh random nonce per seal; 2^32 seals per key keep the collision
        # chance negligible, far beyond what a secret store sees between rotations.
        return b64url(nonce + aead.encrypt(nonce, plaintext, name.encode("utf-8"))), kid

    def open(self, name: str, sealed: str, key_id: str) -> bytes:
        """The plaintext of ``sealed``; ``SealedSecretError`` for any failure, whatever the
        cause (unknown key id, wrong key, altered value, value sealed for another name)."""
        aead = self._key(key_id)
        if aead is None:
            raise _unreadable(name)
        try:
            raw = b64url_decode(sealed)
        except ValueError:
            raise _unreadable(name) from None
        if len(raw) < NONCE_SIZE + TAG_SIZE:
            raise _unreadable(name)
        try:
            return aead.decrypt(raw[:NONCE_SIZE], raw[NONCE_SIZE:], name.encode("utf-8"))
        except InvalidTag:
            raise _unreadable(name) from None

    # ------------------------------------------------------------------ rotation

    def rotate(self) -> str:
        """Keep the current key file in ``sealing.old/``, make a new current key; return its id.
        Values sealed before still open; ``SecretService.reseal_all`` moves them over."""
        if self.from_env:
            raise ConfigError(
                f"the sealing key comes from `{ENV_KEY}` and cannot be rotated here",
                hint=f"put the old key (32 raw bytes, mode 0600) in `{self.dir / OLD_DIR}` as "
                f"`<name>.key`, set a new `{ENV_KEY}`, then run `tribune secrets reseal`",
            )
        self._loaded()
        with self._lock:
            path = self.dir / KEY_FILE
            old = _read_key(path)
            old_dir = self.dir / OLD_DIR
            old_dir.mkdir(mode=0o700, exist_ok=True)
            kept = old_dir / f"{sealing_key_id(old)}.key"
            # INVARIANT: the old key is safely kept before the current one is replaced.
            if not _write_atomically(kept, old, replace=False) and _read_key(kept) != old:
                raise KeyFileInvalid(f"sealing key file `{kept}` holds another key")
            new = os.urandom(KEY_SIZE)
            _write_atomically(path, new, replace=True)
            new_id = sealing_key_id(new)
            self._keys[new_id] = AESGCM(new)
            self._derived[new_id] = _hkdf(new, b"tribune derived keys v1")
            self._current = (new_id, self._keys[new_id])
            return new_id

    # ------------------------------------------------------------------ loading

    def _loaded(self) -> tuple[str, AESGCM]:
        with self._lock:
            if self._current is None:
                self._load()
            assert self._current is not None
            return self._current

    def _key(self, key_id: str) -> AESGCM | None:
        with self._lock:
            if self._current is None or key_id not in self._keys:
                self._load()  # first use, or a key another process made since
            return self._keys.get(key_id)

    def _load(self) -> None:
        # Called with the lock held.
        env = self._env_text
        current = parse_env_key(env) if env is not None else self._file_key()
        raw = {sealing_key_id(k): k for k in (*self._old_keys(), current)}
        self._keys = {k: AESGCM(v) for k, v in raw.items()}
        self._derived = {k: _hkdf(v, b"tribune derived keys v1") for k, v in raw.items()}
        kid = sealing_key_id(current)
        self._current = (kid, self._keys[kid])

    def _file_key(self) -> bytes:
        path = self.dir / KEY_FILE
        if not path.exists():
            ensure_keys_dir(self.dir)
            # Another process may make it first: then this link fails and theirs is used.
            _write_atomically(path, os.urandom(KEY_SIZE), replace=False)
        return _read_key(path)

    def _old_keys(self) -> list[bytes]:
        old_dir = self.dir / OLD_DIR
        if not old_dir.is_dir():
            return []
        # INVARIANT: a file here that is not a private 32-byte key stops loading (fail closed).
        return [_read_key(path) for path in sorted(old_dir.glob("*.key"))]
