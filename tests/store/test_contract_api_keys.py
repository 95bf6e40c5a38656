"""The API key part of the store contract, on every backend; and the migrations after 1."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy import create_engine, inspect

from tribune.core.model import ApiKey, RecordKind, Role, User
from tribune.errors import Conflict, InvalidInput
from tribune.ports import Store
from tribune.store import migrations, open_store
from tribune.store.factory import store_url as parse_store_url

from .contract_helpers import IST, T0, agent

HASH = "9f" * 32


def key(key_id: str = "abcdefghijklmnop", **changes: object) -> ApiKey:
    values: dict[str, object] = {
        "id": key_id,
        "principal": "user:alice",
        "role": Role.ADMIN,
        "secret_hash": HASH,
        "created_at": T0.astimezone(IST),
        "expires_at": None,
        "revoked_at": None,
        "note": "ci — deploys ✓",
    }
    values.update(changes)
    return ApiKey(**values)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- contract


def test_api_key_round_trips_exactly(store: Store) -> None:
    assert store.get_api_key("abcdefghijklmnop") is None
    k = key(expires_at=T0 + timedelta(days=30), revoked_at=T0 + timedelta(days=1))
    store.add_api_key(k)
    got = store.get_api_key(k.id)
    assert got == k
    assert got is not None and got.created_at.utcoffset() == timedelta(0)
    assert got.role is Role.ADMIN
    plain = key("agentkey00000000", principal="agent:spiffe://x/agent/a", role=Role.AGENT)
    store.add_api_key(plain)
    assert store.get_api_key(plain.id) == plain


def test_duplicate_api_key_conflicts_and_keeps_the_first(store: Store) -> None:
    store.add_api_key(key())
    with pytest.raises(Conflict):
        store.add_api_key(key(principal="user:mallory", secret_hash="00" * 32))
    assert store.get_api_key(key().id) == key()
    assert len(store.list_api_keys()) == 1


def test_list_api_keys_oldest_first_then_by_id(store: Store) -> None:
    store.add_api_key(key("cccccccccccccccc", created_at=T0 + timedelta(minutes=1)))
    store.add_api_key(key("bbbbbbbbbbbbbbbb", created_at=T0 + timedelta(minutes=1)))
    store.add_api_key(key("zzzzzzzzzzzzzzzz", created_at=T0))
    assert [k.id for k in store.list_api_keys()] == [
        "zzzzzzzzzzzzzzzz",
        "bbbbbbbbbbbbbbbb",
        "cccccccccccccccc",
    ]


def test_revoke_changes_an_active_key_once(store: Store) -> None:
    store.add_api_key(key())
    store.add_api_key(key("otherotherother0"))
    at = T0 + timedelta(hours=2)
    assert store.revoke_api_key(key().id, at.astimezone(IST)) is True
    assert store.revoke_api_key(key().id, at + timedelta(hours=1)) is False
    assert store.revoke_api_key("missing", at) is False
    got = store.get_api_key(key().id)
    assert got is not None and got.revoked_at == at and not got.active(at)
    other = store.get_api_key("otherotherother0")
    assert other is not None and other.revoked_at is None  # only the one named


def test_revoking_an_expired_key_changes_nothing(store: Store) -> None:
    expires = T0 + timedelta(minutes=5)
    store.add_api_key(key(expires_at=expires))
    assert store.revoke_api_key(key().id, expires) is False
    got = store.get_api_key(key().id)
    assert got is not None and got.revoked_at is None
    assert store.revoke_api_key(key().id, expires - timedelta(microseconds=1)) is True


def test_concurrent_revokes_change_the_key_once(store: Store) -> None:
    store.add_api_key(key())
    results: list[bool] = []
    threads = [
        threading.Thread(target=lambda: results.append(store.revoke_api_key(key().id, T0)))
        for _ in range(8)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert results.count(True) == 1


def test_api_keys_refuse_naive_times(store: Store) -> None:
    naive = datetime(2026, 3, 1, 9, 0)
    with pytest.raises(InvalidInput):
        store.add_api_key(key(created_at=naive))
    assert store.get_api_key(key().id) is None
    store.add_api_key(key())
    with pytest.raises(InvalidInput):
        store.revoke_api_key(key().id, naive)


def test_the_hash_stays_out_of_repr() -> None:
    assert HASH not in repr(key())


# --------------------------------------------------------------------------- migrations

V1_TABLES = {
    "schema_migrations",
    "users",
    "groups",
    "agents",
    "tools",
    "tasks",
    "policy_versions",
    "learned_targets",
    "audit_records",
    "audit_checkpoints",
}
V2_TABLES = V1_TABLES | {"api_keys"}
V3_TABLES = V2_TABLES | {
    "agent_keys",
    "used_token_ids",
    "revoked_tokens",
    "leases",
    "sealed_secrets",
}
V4_TABLES = V3_TABLES | {"approval_tickets", "approval_votes"}
LATEST_TABLES = V4_TABLES


def _tables(url: str) -> set[str]:
    engine = create_engine(parse_store_url(url))
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def test_a_version_1_database_migrates_to_the_latest_and_keeps_its_data(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A database as version 1 of tribune made it: only the first step applied.
    with monkeypatch.context() as patch:
        patch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:1])
        patch.setattr(migrations, "LATEST", 1)
        old = open_store(store_url)
        old.add_agent(agent())
        old.put_user(User("alice", groups=("sre",)))
        rec = old.append(RecordKind.EVENT, T0, {"event": "before"})
        old.close()
    assert _tables(store_url) == V1_TABLES  # step 1 creates the version-1 tables only

    store = open_store(store_url)
    try:
        assert _tables(store_url) == LATEST_TABLES
        assert store.get_agent(agent().id) == agent()
        assert store.get_user("alice") == User("alice", groups=("sre",))
        assert list(store.records()) == [rec]
        store.add_api_key(key())
        assert store.get_api_key(key().id) == key()
    finally:
        store.close()
    engine = create_engine(parse_store_url(store_url))
    with engine.connect() as conn:
        found = sorted(r[0] for r in conn.exec_driver_sql("SELECT version FROM schema_migrations"))
    engine.dispose()
    assert found == [m.version for m in migrations.MIGRATIONS]


def test_a_fresh_database_reaches_the_latest_version(store_url: str) -> None:
    store = open_store(store_url)
    store.add_api_key(key())
    store.close()
    assert _tables(store_url) == LATEST_TABLES
    again = open_store(store_url)  # reopening applies nothing and keeps the key
    try:
        assert again.get_api_key(key().id) == key()
    finally:
        again.close()
