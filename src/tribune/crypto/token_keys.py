"""Task-token signing keys, and the JWS signing and checking done with them (EdDSA via PyJWT).

Layout of ``<home>/keys/tokens/`` (mode 0700):

    active.key.pem   the signing key, PKCS#8 PEM, mode 0600
    <kid>.pub.pem    every verification key: the active one and those rotated out
    retired.json     ``{kid: unix time it was rotated out}``; ``prune`` drops keys past
                     ``retire_after``

A key id (``kid``) is the RFC 7638 thumbprint of the public key. ``rotate`` makes a new active
key; old public keys keep verifying until pruned, so rotation needs no downtime. Choose
``retire_after`` longer than the longest token lifetime.

Every failure to check a token raises :class:`InvalidToken`: one opaque message for the caller,
the precise ``reason`` for the audit log.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tribune.crypto.keys import (
    KeyPair,
    ensure_keys_dir,
    key_id,
    load_key_pair,
    load_or_create_key_pair,
    load_public_key,
    load_public_keys,
    private_key_path,
    public_jwk,
    save_key_pair,
    save_public_key,
)
from tribune.errors import KeyFileInvalid, Unauthenticated
from tribune.ports import Clock

ALGORITHM = "EdDSA"
ACTIVE = "active"
NEXT = "next"
RETIRED_FILE = "retired.json"
DEFAULT_RETIRE_AFTER = 2 * 86400
MAX_TOKEN = 16 * 1024  # a task token is well under 2 KiB; refuse anything huge before parsing
VERIFIED_CACHE = 10_000  # tokens whose signature is remembered (only valid ones get in)
KID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{43}$")  # base64url of a SHA-256 digest


class InvalidToken(Unauthenticated):
    """A token that does not verify. ``reason`` (a snake_case word) is for the audit log only;
    the message is always the same, so the caller learns nothing about why."""

    def __init__(self, reason: str) -> None:
        super().__init__("invalid token")
        self.reason = reason

    def __repr__(self) -> str:
        return f"InvalidToken(reason={self.reason!r})"


class TokenKeys:
    """The token signing key of one home, and every key that still verifies its tokens."""

    def __init__(
        self,
        keys_dir: Path,
        clock: Clock,
        *,
        retire_after: int = DEFAULT_RETIRE_AFTER,
        recheck_every: float = 1.0,
    ) -> None:
        if retire_after <= 0:
            raise ValueError("retire_after must be positive")
        self.dir = ensure_keys_dir(keys_dir)
        self.clock = clock
        self.retire_after = retire_after
        self._lock = threading.Lock()
        # A rotation or prune made by another process (the CLI beside a server) is picked up
        # within ``recheck_every`` seconds: the key files' identities are compared that often.
        self._recheck_every = recheck_every
        self._checked = time.monotonic()
        # Tokens whose signature verified, with their claims: an agent presents one token on
        # every call of its task, and the EdDSA check is most of a verification's cost. Only
        # the signature is remembered; every claim is checked again by the caller each time.
        self._verified: dict[str, dict[str, Any]] = {}
        self._active = load_or_create_key_pair(self.dir, name=ACTIVE)
        save_public_key(self.dir, self._active.public_key)
        self._public = load_public_keys(self.dir)
        self._seen = self._stamp()

    @property
    def kid(self) -> str:
        """The key id of the active signing key."""
        self._fresh()
        return self._active.key_id

    def key_ids(self) -> list[str]:
        """Every key id that verifies, sorted."""
        self._fresh()
        return sorted(self._public)

    def _stamp(self) -> tuple[tuple[int, int], ...]:
        """Identities (inode, mtime) of the active key and the retirement list."""
        out = []
        for path in (private_key_path(self.dir, ACTIVE), self.dir / RETIRED_FILE):
            try:
                st = path.stat()
            except FileNotFoundError:
                out.append((0, 0))
            else:
                out.append((st.st_ino, st.st_mtime_ns))
        return tuple(out)

    def _fresh(self) -> None:
        """Reload if another process rotated or pruned since the last look (at most one look
        per ``recheck_every`` seconds)."""
        now = time.monotonic()
        if now - self._checked < self._recheck_every:
            return
        self._checked = now
        stamp = self._stamp()
        if stamp != self._seen:
            self.reload()

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """Every verification key as a JWKS document (OKP, Ed25519, ``use`` sig, ``alg`` EdDSA)."""
        self._fresh()
        with self._lock:
            keys = dict(self._public)
        return {"keys": [public_jwk(keys[kid]) for kid in sorted(keys)]}

    # ----------------------------------------------------------------------- rotation

    def rotate(self) -> str:
        """Make a new active key and return its id; the old key keeps verifying until pruned."""
        with self._lock:
            old = self._active
            new = KeyPair.generate()
            next_path = private_key_path(self.dir, NEXT)
            next_path.unlink(missing_ok=True)  # left over from a rotation that crashed
            # INVARIANT: the new public key is on disk before the new key signs anything, and
            # the swap of the private key is one atomic rename.
            save_key_pair(self.dir, new, name=NEXT)
            retired = self._read_retired()
            retired[old.key_id] = int(self.clock.now().timestamp())
            self._write_retired(retired)
            os.replace(next_path, private_key_path(self.dir, ACTIVE))
            self._active = new
            self._public[new.key_id] = new.public_key
            self._seen = self._stamp()
            return new.key_id

    def prune(self) -> list[str]:
        """Forget keys rotated out more than ``retire_after`` seconds ago; returns their ids.
        The active key is never pruned."""
        with self._lock:
            now = int(self.clock.now().timestamp())
            retired = self._read_retired()
            gone = sorted(
                kid
                for kid, at in retired.items()
                if kid != self._active.key_id and now - at >= self.retire_after
            )
            if gone:
                self._verified.clear()  # a pruned key verifies nothing any more
            for kid in gone:
                if KID_PATTERN.match(kid):
                    (self.dir / f"{kid}.pub.pem").unlink(missing_ok=True)
                self._public.pop(kid, None)
                del retired[kid]
            if gone:
                self._write_retired(retired)
            self._seen = self._stamp()
            return gone

    def reload(self) -> None:
        """Pick up a rotation or prune made by another process."""
        with self._lock:
            self._verified.clear()
            self._seen = self._stamp()
            self._active = load_key_pair(self.dir, name=ACTIVE)
            self._public = load_public_keys(self.dir)
            self._public.setdefault(self._active.key_id, self._active.public_key)

    def _read_retired(self) -> dict[str, int]:
        path = self.dir / RETIRED_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            raise KeyFileInvalid(f"`{path}` is not a JSON object of key ids") from None
        if not isinstance(data, dict) or not all(
            isinstance(k, str) and type(v) is int for k, v in data.items()
        ):
            raise KeyFileInvalid(f"`{path}` is not a JSON object of key ids")
        return data

    def _write_retired(self, retired: dict[str, int]) -> None:
        path = self.dir / RETIRED_FILE
        tmp = self.dir / f"{RETIRED_FILE}.tmp"
        tmp.write_text(json.dumps(retired, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)

    def _public_key(self, kid: str) -> Ed25519PublicKey | None:
        public_key = self._public.get(kid)
        if public_key is not None or not KID_PATTERN.match(kid):
            return public_key
        # Another process may have rotated: look for the key on disk (the kid is checked above,
        # so it cannot name a path outside this directory).
        path = self.dir / f"{kid}.pub.pem"
        if not path.is_file():
            return None
        with contextlib.suppress(KeyFileInvalid):
            loaded = load_public_key(path)
            if hmac.compare_digest(key_id(loaded).encode(), kid.encode()):
                with self._lock:
                    self._public[kid] = loaded
                return loaded
        return None

    # ----------------------------------------------------------------------- tokens

    def sign(self, claims: dict[str, Any]) -> str:
        """``claims`` as a compact JWS signed by the active key (header alg, kid, typ)."""
        self._fresh()
        pair = self._active
        return jwt.encode(
            claims,
            pair.private_key,
            algorithm=ALGORITHM,
            headers={"kid": pair.key_id, "typ": "JWT"},
        )

    def verified_claims(self, token: object) -> dict[str, Any]:
        """The claims of ``token`` once its header and signature check out. Checks nothing in the
        claims (time, audience, issuer): the caller does. Raises :class:`InvalidToken`."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN or token.count(".") != 2:
            raise InvalidToken("malformed")
        self._fresh()
        known = self._verified.get(token)
        if known is not None:
            return dict(known)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("malformed") from None
        # INVARIANT: only EdDSA is ever accepted; `none`, HMAC and anything else stop here.
        if header.get("alg") != ALGORITHM:
            raise InvalidToken("bad_algorithm")
        if header.get("typ", "JWT") != "JWT" or "crit" in header:
            raise InvalidToken("bad_header")
        kid = header.get("kid")
        public_key = self._public_key(kid) if isinstance(kid, str) else None
        if public_key is None:
            raise InvalidToken("unknown_kid")
        try:
            signed = jwt.api_jws.decode_complete(token, public_key, algorithms=[ALGORITHM])
            claims = json.loads(signed["payload"])
        except jwt.InvalidSignatureError:
            raise InvalidToken("bad_signature") from None
        except (jwt.PyJWTError, ValueError, TypeError):
            raise InvalidToken("malformed") from None
        if not isinstance(claims, dict):
            raise InvalidToken("malformed")
        if len(self._verified) >= VERIFIED_CACHE:
            self._verified.clear()
        self._verified[token] = claims
        return dict(claims)

    def __repr__(self) -> str:
        return f"TokenKeys(dir={str(self.dir)!r}, kid={self.kid!r})"
