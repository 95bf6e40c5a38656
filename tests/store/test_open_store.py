"""``open_store``: URL forms, SQLite connection settings, and failures surfacing as StoreError."""

from __future__ import annotations

import socket
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from tribune.core.model import RecordKind
from tribune.errors import ConfigError, StoreError
from tribune.store import MemoryStore, SqlStore, open_store
from tribune.store.factory import store_url

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def test_url_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert store_url("memory://") is None
    url = store_url("sqlite:///var/lib/tribune/tribune.db")
    assert url is not None and (url.drivername, url.database) == (
        "sqlite",
        "/var/lib/tribune/tribune.db",
    )
    monkeypatch.chdir(tmp_path)
    url = store_url("data/tribune.db")
    assert url is not None and url.database == str(tmp_path / "data" / "tribune.db")
    monkeypatch.setenv("HOME", str(tmp_path))
    url = store_url("~/t.db")
    assert url is not None and url.database == str(tmp_path / "t.db")
    for pg in ["postgres://u@db:5432/x", "postgresql://u@db/x", "postgresql+psycopg://u@db/x"]:
        url = store_url(pg)
        assert url is not None and url.drivername == "postgresql+psycopg"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "   ",
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite:///x.db?mode=ro",
        "mysql://u@h/db",
        "postgresql+psycopg2://u@h/db",
        "memory://named",
    ],
)
def test_bad_urls_are_config_errors(bad: str) -> None:
    with pytest.raises(ConfigError):
        open_store(bad)


def test_bad_durability_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        open_store(str(tmp_path / "t.db"), durability="fast")
    assert not (tmp_path / "t.db").exists()


def test_adapters_by_url(tmp_path: Path) -> None:
    mem = open_store("memory://")
    assert isinstance(mem, MemoryStore)
    path = tmp_path / "t.db"
    sql = open_store(str(path))
    assert isinstance(sql, SqlStore)
    sql.close()
    assert path.exists()


def _pragmas(store: SqlStore) -> dict[str, object]:
    with store.engine.connect() as conn:
        return {
            name: conn.execute(text(f"PRAGMA {name}")).scalar()
            for name in ["journal_mode", "synchronous", "foreign_keys", "busy_timeout"]
        }


@pytest.mark.parametrize(("durability", "synchronous"), [("normal", 1), ("full", 2)])
def test_sqlite_connection_settings(tmp_path: Path, durability: str, synchronous: int) -> None:
    store = open_store(f"sqlite://{tmp_path / 't.db'}", durability=durability)
    assert isinstance(store, SqlStore)
    assert _pragmas(store) == {
        "journal_mode": "wal",
        "synchronous": synchronous,
        "foreign_keys": 1,
        "busy_timeout": 5000,
    }
    store.close()


def test_missing_directory_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        open_store(str(tmp_path / "nope" / "t.db"))


def test_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    path.write_bytes(b"this is not a database file at all, just text" * 100)
    with pytest.raises(StoreError) as err:
        open_store(str(path))
    assert not isinstance(err.value.__cause__, StoreError)


def test_locked_database_surfaces_as_store_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tribune.store.engine.BUSY_TIMEOUT_MS", 50)
    path = tmp_path / "t.db"
    store = open_store(str(path))
    first = store.append(RecordKind.EVENT, T0, {"n": 1})
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError, match="OperationalError"):
            store.append(RecordKind.EVENT, T0, {"n": 2})
        with pytest.raises(StoreError):
            store.learn_targets(["x"], T0)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    second = store.append(RecordKind.EVENT, T0, {"n": 2})
    assert (second.seq, second.prev_hash) == (2, first.hash)
    store.close()


def test_refused_postgres_is_a_store_error_without_the_password() -> None:
    with pytest.raises(StoreError) as err:
        open_store("postgresql://tribune:s3cret-pw@127.0.0.1:1/test")
    assert "s3cret-pw" not in str(err.value)
    assert "s3cret-pw" not in repr(err.value.to_dict())


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    sock.close()


def test_silent_postgres_times_out_as_a_store_error(
    silent_server: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the store's default connect timeout is its guard against hanging; 2 s is libpq's minimum
    monkeypatch.setattr("tribune.store.engine.CONNECT_TIMEOUT_S", 2)
    with pytest.raises(StoreError):
        open_store(f"postgresql://postgres@127.0.0.1:{silent_server}/test")


@pytest.mark.postgres
def test_dropped_postgres_connection_fails_once_then_recovers(pg_dsn: str) -> None:
    store = open_store(pg_dsn)
    assert isinstance(store, SqlStore)
    store.append(RecordKind.EVENT, T0, {"n": 1})
    with store.engine.connect() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
    admin = open_store(pg_dsn)
    assert isinstance(admin, SqlStore)
    with admin.engine.connect() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    admin.close()
    with pytest.raises(StoreError):
        store.append(RecordKind.EVENT, T0, {"n": 2})
    assert store.append(RecordKind.EVENT, T0, {"n": 2}).seq == 2
    assert store.count() == 2
    store.close()
