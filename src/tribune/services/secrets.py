"""Brokered secrets: long-lived secrets of downstream services, stored sealed, opened only at the
enforcement point (through the ``secret`` credential backend), never shown to a model.

Audit records name secrets and keys only: never a value, never a digest of one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tribune.core.model import RecordKind, SealedSecret, check_name
from tribune.crypto.sealing import SealedSecretError, Sealer
from tribune.errors import InvalidInput, NotFound
from tribune.ports import Clock, Credentials
from tribune.services.registry import Events

MAX_VALUE = 64 * 1024  # bytes of UTF-8
MAX_NOTE = 200


@dataclass(frozen=True, slots=True)
class SecretInfo:
    """What may be shown of a stored secret: never its value or its sealed form."""

    name: str
    key_id: str
    updated_at: datetime
    note: str


class SecretService:
    """Store, open, list, delete and re-seal brokered secrets."""

    def __init__(self, store: Credentials, clock: Clock, events: Events, sealer: Sealer) -> None:
        self.store = store
        self.clock = clock
        self.events = events
        self.sealer = sealer

    def put(self, name: str, value: str, note: str = "") -> SecretInfo:
        """Seal ``value`` under ``name``, replacing any secret of that name."""
        check_name("secret", name)
        plaintext = _check_value(value)
        note = _check_note(note)
        sealed, key_id = self.sealer.seal(name, plaintext)
        replaced = self.store.get_secret(name) is not None
        secret = SealedSecret(name, sealed, key_id, self.clock.now(), note)
        self.store.put_secret(secret)
        self.events.record(
            RecordKind.EVENT,
            {"event": "secret_stored", "name": name, "key_id": key_id, "replaced": replaced},
        )
        return _info(secret)

    def open(self, name: str) -> str:
        """The plaintext of the secret ``name``: ``NotFound`` if there is none,
        ``SealedSecretError`` if it cannot be opened. For the enforcement point only."""
        secret = self._get(name)
        plaintext = self.sealer.open(secret.name, secret.sealed, secret.key_id)
        try:
            return plaintext.decode("utf-8")
        except UnicodeDecodeError:  # authentic but not text: only a foreign writer does this
            raise SealedSecretError(f"secret `{name}` cannot be opened") from None

    def get(self, name: str) -> SecretInfo:
        """What may be shown of one secret; ``NotFound`` if there is none."""
        return _info(self._get(name))

    def exists(self, name: str) -> bool:
        return self.store.get_secret(check_name("secret", name)) is not None

    def list(self) -> list[SecretInfo]:
        """Every secret by name: names, key ids, times and notes, never values."""
        return [_info(s) for s in self.store.list_secrets()]

    def delete(self, name: str) -> None:
        """Forget the secret ``name``; ``NotFound`` if there is none."""
        check_name("secret", name)
        if not self.store.delete_secret(name):
            raise _missing(name)
        self.events.record(RecordKind.EVENT, {"event": "secret_deleted", "name": name})

    def reseal_all(self) -> int:
        """Re-seal every secret not sealed with the current key; return how many were.

        Secrets that cannot be opened are left as they are; after the others are done, a
        ``SealedSecretError`` names them. ``updated_at`` stays the time the value was set.
        """
        current = self.sealer.key_id
        moved: list[str] = []
        unreadable: list[str] = []
        for secret in self.store.list_secrets():
            if secret.key_id == current:
                continue
            try:
                plaintext = self.sealer.open(secret.name, secret.sealed, secret.key_id)
            except SealedSecretError:
                unreadable.append(secret.name)
                continue
            sealed, key_id = self.sealer.seal(secret.name, plaintext)
            # Skip a secret changed while it was being re-sealed (a put wins). Not atomic: the
            # store has no compare-and-set for secrets, so this only narrows the window.
            if self.store.get_secret(secret.name) != secret:
                continue
            self.store.put_secret(
                SealedSecret(secret.name, sealed, key_id, secret.updated_at, secret.note)
            )
            moved.append(secret.name)
        self.events.record(
            RecordKind.EVENT,
            {
                "event": "secrets_resealed",
                "key_id": current,
                "names": moved,
                "unreadable": unreadable,
            },
        )
        if unreadable:
            listed = ", ".join(f"`{n}`" for n in unreadable)
            raise SealedSecretError(
                f"{len(unreadable)} secret(s) cannot be opened: {listed}",
                hint="their sealing keys may be gone; put them again with `tribune secrets put`",
            )
        return len(moved)

    def _get(self, name: str) -> SealedSecret:
        secret = self.store.get_secret(check_name("secret", name))
        if secret is None:
            raise _missing(name)
        return secret


def _info(secret: SealedSecret) -> SecretInfo:
    return SecretInfo(secret.name, secret.key_id, secret.updated_at, secret.note)


def _missing(name: str) -> NotFound:
    return NotFound(f"no secret `{name}`", hint="see `tribune secrets list`")


def _check_value(value: str) -> bytes:
    # Messages say nothing of the value itself.
    if not isinstance(value, str) or not value:
        raise InvalidInput("a secret's value must be non-empty text")
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("a secret's value must be valid Unicode text") from None
    if len(data) > MAX_VALUE:
        raise InvalidInput(f"a secret's value is at most {MAX_VALUE} bytes (UTF-8)")
    return data


def _check_note(note: str) -> str:
    if not isinstance(note, str) or len(note) > MAX_NOTE or not note.isprintable():
        raise InvalidInput(f"a note is at most {MAX_NOTE} printable characters")
    return note.strip()
