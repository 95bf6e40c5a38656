"""Brokered secrets: store, open, list, delete, rotate and re-seal, the audit trail (which must
never hold a value), and the ``secret`` credential backend. Real stores, real keys."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import timedelta
from typing import Any

import pytest

from tribune.core.model import Lease, SealedSecret
from tribune.credentials import CredentialBackend
from tribune.credentials.secrets import SecretBackend
from tribune.crypto.keys import b64url
from tribune.crypto.sealing import ENV_KEY, OLD_DIR, SealedSecretError
from tribune.errors import InvalidInput, NotFound
from tribune.services.secrets import MAX_VALUE, SecretInfo

from .conftest import START, World

VALUE = "sk_live_51HqLyjW-example-Ø-value"


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """The key file is used, whatever the developer's environment holds."""
    monkeypatch.delenv(ENV_KEY, raising=False)


def forms(value: str) -> list[str]:
    """Ways a value could leak into a record: itself, its base64 forms, its digests."""
    raw = value.encode()
    return [
        value,
        json.dumps(value)[1:-1],  # as escaped inside a JSON string
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode(),
        b64url(raw),
        raw.hex(),
        hashlib.sha256(raw).hexdigest(),
        b64url(hashlib.sha256(raw).digest()),
    ]


def assert_audit_holds_no(world: World, *values: str) -> None:
    bodies = [r.body for r in world.tr.store.records()]
    assert bodies
    for body in bodies:
        for value in values:
            for form in forms(value):
                assert form not in body, (form, body)


def secret_events(world: World) -> list[dict[str, Any]]:
    return [
        r["data"] for r in world.records() if str(r["data"].get("event", "")).startswith("secret")
    ]


# --------------------------------------------------------------------------- put / open


def test_put_and_open_round_trip(world: World) -> None:
    info = world.tr.secrets.put("stripe", VALUE, note="payments API key")
    assert info == SecretInfo("stripe", world.tr.secrets.sealer.key_id, START, "payments API key")
    assert world.tr.secrets.open("stripe") == VALUE
    stored = world.tr.store.get_secret("stripe")
    assert stored is not None and stored.key_id == info.key_id
    assert all(form not in stored.sealed for form in forms(VALUE))
    world.reopen()  # another process, the same key file
    assert world.tr.secrets.open("stripe") == VALUE


def test_put_replaces(world: World) -> None:
    world.tr.secrets.put("stripe", "first")
    world.clock.advance(60)
    info = world.tr.secrets.put("stripe", "second", note="rolled")
    assert info.updated_at == START + timedelta(seconds=60) and info.note == "rolled"
    assert world.tr.secrets.open("stripe") == "second"
    assert [s.name for s in world.tr.secrets.list()] == ["stripe"]


def test_list_shows_no_values(world: World) -> None:
    world.tr.secrets.put("stripe", VALUE, note="payments")
    world.tr.secrets.put("github", "ghp_other", note="")
    listed = world.tr.secrets.list()
    assert [s.name for s in listed] == ["github", "stripe"]
    for info in listed:
        assert isinstance(info, SecretInfo)
        assert not hasattr(info, "sealed") and not hasattr(info, "value")
        text = repr(info)
        assert VALUE not in text and "ghp_other" not in text
    stored = world.tr.store.get_secret("stripe")
    assert stored is not None and stored.sealed not in repr(listed)


def test_open_missing_and_delete(world: World) -> None:
    with pytest.raises(NotFound):
        world.tr.secrets.open("stripe")
    world.tr.secrets.put("stripe", VALUE)
    world.tr.secrets.delete("stripe")
    with pytest.raises(NotFound):
        world.tr.secrets.open("stripe")
    with pytest.raises(NotFound):
        world.tr.secrets.delete("stripe")
    assert world.tr.secrets.list() == []


@pytest.mark.parametrize(
    ("name", "value", "note"),
    [
        ("bad name", VALUE, ""),
        ("", VALUE, ""),
        ("x" * 129, VALUE, ""),
        ("stripe", "", ""),
        ("stripe", "\ud800", ""),  # a lone surrogate is not text
        ("stripe", "x" * (MAX_VALUE + 1), ""),
        ("stripe", "é" * (MAX_VALUE // 2 + 1), ""),  # the limit is in UTF-8 bytes
        ("stripe", VALUE, "line\nbreak"),
        ("stripe", VALUE, "n" * 201),
    ],
)
def test_put_refuses_bad_input(world: World, name: str, value: str, note: str) -> None:
    before = world.tr.store.count()
    with pytest.raises(InvalidInput) as info:
        world.tr.secrets.put(name, value, note=note)
    if value:
        assert value[:20] not in str(info.value)
    assert world.tr.store.list_secrets() == []
    assert world.tr.store.count() == before


def test_largest_value_is_accepted(world: World) -> None:
    big = "v" * MAX_VALUE
    world.tr.secrets.put("big", big)
    assert world.tr.secrets.open("big") == big


def test_tampered_or_moved_value_does_not_open(world: World) -> None:
    world.tr.secrets.put("stripe", VALUE)
    stored = world.tr.store.get_secret("stripe")
    assert stored is not None
    # Copied to another name in the database: the name is bound in, so it does not open.
    world.tr.store.put_secret(SealedSecret("github", stored.sealed, stored.key_id, START))
    with pytest.raises(SealedSecretError) as info:
        world.tr.secrets.open("github")
    assert info.value.code == "secret_unreadable" and VALUE not in str(info.value)
    # One character of the sealed text changed.
    last = "A" if stored.sealed[-1] != "A" else "B"
    world.tr.store.put_secret(
        SealedSecret("stripe", stored.sealed[:-1] + last, stored.key_id, START)
    )
    with pytest.raises(SealedSecretError):
        world.tr.secrets.open("stripe")


# --------------------------------------------------------------------------- audit


def test_audit_records_name_secrets_and_never_hold_values(world: World) -> None:
    world.tr.secrets.put("stripe", VALUE, note="payments")
    world.tr.secrets.put("stripe", VALUE + "-2")
    world.tr.secrets.put("github", "ghp_second_value")
    world.tr.secrets.open("stripe")
    world.tr.secrets.sealer.rotate()
    assert world.tr.secrets.reseal_all() == 2
    world.tr.secrets.delete("github")
    key_id = world.tr.secrets.sealer.key_id
    events = secret_events(world)
    assert [e["event"] for e in events] == [
        "secret_stored",
        "secret_stored",
        "secret_stored",
        "secrets_resealed",
        "secret_deleted",
    ]
    assert events[0] == {
        "event": "secret_stored",
        "name": "stripe",
        "key_id": events[0]["key_id"],
        "replaced": False,
    }
    assert events[1]["replaced"] is True
    assert events[3] == {
        "event": "secrets_resealed",
        "key_id": key_id,
        "names": ["github", "stripe"],
        "unreadable": [],
    }
    assert events[4] == {"event": "secret_deleted", "name": "github"}
    assert_audit_holds_no(world, VALUE, VALUE + "-2", "ghp_second_value")
    assert world.tr.audit.verify().ok


# --------------------------------------------------------------------------- rotation


def test_rotation_keeps_secrets_readable_and_reseal_moves_them(world: World) -> None:
    secrets = world.tr.secrets
    secrets.put("stripe", VALUE)
    secrets.put("github", "ghp_x")
    old_id = secrets.sealer.key_id
    new_id = secrets.sealer.rotate()
    assert (world.home / "keys" / OLD_DIR / f"{old_id}.key").exists()
    # Not yet re-sealed: still on the old key, and still readable.
    assert {s.key_id for s in secrets.list()} == {old_id}
    assert secrets.open("stripe") == VALUE
    # Stored after the rotation: the new key.
    secrets.put("slack", "xoxb")
    assert secrets.get("slack").key_id == new_id
    world.clock.advance(5)
    assert secrets.reseal_all() == 2
    listed = secrets.list()
    assert {s.key_id for s in listed} == {new_id}
    assert {s.updated_at for s in listed} == {START}  # re-sealing is not a change of value
    assert [secrets.open(n) for n in ("github", "slack", "stripe")] == ["ghp_x", "xoxb", VALUE]
    assert secrets.reseal_all() == 0
    # With the old key gone, everything still opens: nothing depends on it any more.
    (world.home / "keys" / OLD_DIR / f"{old_id}.key").unlink()
    world.reopen()
    assert world.tr.secrets.open("stripe") == VALUE


def test_reseal_moves_what_it_can_and_names_what_it_cannot(world: World) -> None:
    secrets = world.tr.secrets
    secrets.put("stripe", VALUE)
    world.tr.store.put_secret(SealedSecret("lost", "AAAA", "0123456789abcdef", START))
    secrets.sealer.rotate()
    with pytest.raises(SealedSecretError) as info:
        secrets.reseal_all()
    assert "`lost`" in info.value.message and "stripe" not in info.value.message
    assert secrets.get("stripe").key_id == secrets.sealer.key_id
    assert secret_events(world)[-1]["unreadable"] == ["lost"]


# --------------------------------------------------------------------------- backend


def lease(scope: dict[str, Any]) -> Lease:
    return Lease(
        id="lease-1",
        task_id="task-1",
        agent_id="spiffe://acme.test/agent/helper",
        backend="secret",
        scope=scope,
        issued_at=START,
        expires_at=START + timedelta(minutes=5),
        max_expires_at=START + timedelta(hours=1),
        handle="stripe",
    )


def test_backend_issues_the_value(world: World) -> None:
    world.tr.secrets.put("stripe", VALUE)
    backend: CredentialBackend = SecretBackend(world.tr.secrets)
    assert backend.name == "secret"
    assert backend.check_scope({"name": "stripe"}) == {"name": "stripe"}
    assert backend.handle_for("lease-1", {"name": "stripe"}) == "stripe"
    assert backend.issue(lease({"name": "stripe"})) == {"value": VALUE}
    assert backend.renew(lease({"name": "stripe"})) is None
    backend.revoke(lease({"name": "stripe"}))
    backend.revoke(lease({"name": "stripe"}))  # idempotent
    assert_audit_holds_no(world, VALUE)


@pytest.mark.parametrize(
    "scope",
    [{}, {"name": "missing"}, {"name": "stripe", "extra": 1}, {"name": 7}, {"name": "bad name"}],
)
def test_backend_refuses_bad_scopes(world: World, scope: dict[str, Any]) -> None:
    world.tr.secrets.put("stripe", VALUE)
    backend = SecretBackend(world.tr.secrets)
    with pytest.raises(InvalidInput):
        backend.check_scope(scope)
    with pytest.raises(InvalidInput):
        backend.handle_for("lease-1", scope)


def test_backend_issue_of_a_deleted_secret_fails(world: World) -> None:
    world.tr.secrets.put("stripe", VALUE)
    backend = SecretBackend(world.tr.secrets)
    world.tr.secrets.delete("stripe")
    with pytest.raises(InvalidInput):
        backend.issue(lease({"name": "stripe"}))
