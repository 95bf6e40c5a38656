"""Engines for the SQL store: connection settings, transactions and error translation.

SQLite: WAL, ``synchronous=NORMAL`` (``durability="full"``: FULL), foreign keys, a 5 s busy
timeout, all set per connection. SQLAlchemy, not the ``sqlite3`` module, emits BEGIN: ``BEGIN``
for reads and ``BEGIN IMMEDIATE`` for writes, so a writer takes the lock up front and waits for it
instead of failing on a read-to-write upgrade.
PostgreSQL (psycopg 3): a connect timeout, so an unreachable server fails instead of hanging;
reads in autocommit (one round trip each).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Engine,
    String,
    bindparam,
    create_engine,
    event,
    exc,
    func,
    select,
)
from sqlalchemy.engine import URL, make_url

from tribune.errors import ConfigError, StoreError

DURABILITY = {"normal": "NORMAL", "full": "FULL"}
BUSY_TIMEOUT_MS = 5000
CONNECT_TIMEOUT_S = 5

# Keys of PostgreSQL advisory locks (one database-wide 64-bit space).
MIGRATION_LOCK = 0x7472_6962_756E_0001
AUDIT_LOCK = 0x7472_6962_756E_0002
POLICY_LOCK = 0x7472_6962_756E_0003

_XACT_LOCK = select(func.pg_advisory_xact_lock(bindparam("key", type_=BigInteger)))

# Execution option marking a connection whose transactions write.
WRITE = "tribune_write"


def make_engine(url: URL, durability: str = "normal") -> Engine:
    """A configured engine for a ``sqlite`` or ``postgresql+psycopg`` URL."""
    if durability not in DURABILITY:
        raise ConfigError(f"unknown durability `{durability}`", hint="use `normal` or `full`")
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, DURABILITY[durability])
    if url.get_backend_name() == "postgresql":
        return _postgres_engine(url)
    raise ConfigError(f"unsupported database `{url.get_backend_name()}`")


def _sqlite_engine(url: URL, synchronous: str) -> Engine:
    engine = create_engine(
        url, connect_args={"check_same_thread": False}, pool_size=8, max_overflow=16
    )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module; see `_begin`.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            _enable_wal(cur)
            cur.execute(f"PRAGMA synchronous = {synchronous}")
            cur.execute("PRAGMA foreign_keys = ON")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _enable_wal(cur: sqlite3.Cursor) -> None:
    # Switching a new database to WAL needs an exclusive lock, and SQLite may answer "locked"
    # at once, without its busy handler, while another connection does the same; so retry.
    # INVARIANT: WAL is a property of the file; once set, this statement changes nothing.
    for _ in range(BUSY_TIMEOUT_MS // 10):
        try:
            if str(cur.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower() == "wal":
                return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e):
                raise
        time.sleep(0.01)
    raise StoreError("could not switch the sqlite database to WAL mode", hint="is it locked?")


def _postgres_engine(url: URL) -> Engine:
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
    if "application_name" not in url.query:
        connect_args["application_name"] = "tribune"
    try:
        # No pre-ping: it costs a round trip per operation. After a server restart the first
        # operation fails (StoreError) and invalidates the pool; the next ones reconnect.
        return create_engine(url, connect_args=connect_args)
    except (exc.NoSuchModuleError, ImportError):
        raise ConfigError(
            "the postgresql driver is not installed",
            hint="install the `postgres` extra: pip install 'tribune[postgres]' "
            "(from a checkout: '.[postgres]')",
        ) from None


def parse_url(text: str) -> URL:
    """Parse a database URL; raise ``ConfigError`` when it is malformed."""
    try:
        return make_url(text)
    except exc.ArgumentError:
        raise ConfigError("invalid database url") from None


@contextmanager
def translate_errors() -> Iterator[None]:
    """Turn driver and SQLAlchemy failures into ``StoreError``; let Tribune errors through.

    The message names the failure class and the driver's first line; no SQL, no parameters.
    """
    try:
        yield
    except exc.DBAPIError as e:
        raise _store_error(e.orig if e.orig is not None else e) from e
    except (exc.SQLAlchemyError, sqlite3.Error, OSError) as e:
        raise _store_error(e) from e


def _store_error(e: BaseException) -> StoreError:
    # The driver's words may name hosts, ports, users or databases: they go to ``detail``
    # (for the operator's log and the CLI), never into the message or hint a caller sees.
    error = StoreError(
        f"store operation failed: {type(e).__name__}",
        hint="the store did not answer; nothing was decided or changed",
    )
    error.detail = (str(e).strip().splitlines() or [""])[0][:200]
    return error


@contextmanager
def write_tx(engine: Engine, lock: int | None = None) -> Iterator[Connection]:
    """A write transaction: SQLite ``BEGIN IMMEDIATE``; PostgreSQL takes advisory ``lock``."""
    with translate_errors(), engine.connect() as conn:
        conn.execution_options(**{WRITE: True})
        with conn.begin():
            if lock is not None and conn.dialect.name == "postgresql":
                conn.execute(_XACT_LOCK, {"key": lock})
            yield conn


@contextmanager
def read_tx(engine: Engine) -> Iterator[Connection]:
    """A connection for reading. SQLite: a read transaction, rolled back at the end.

    PostgreSQL: autocommit, so a one-statement read costs one round trip, not three
    (BEGIN, SELECT, ROLLBACK); a read of several statements may see commits in between.
    """
    with translate_errors(), engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="AUTOCOMMIT")
        yield conn


def bytewise(col: ColumnElement[Any], dialect: str) -> ColumnElement[Any]:
    """A text ``col`` ordered by code point on every database (PostgreSQL: ``C`` collation)."""
    # INVARIANT: SQLite's default BINARY collation already compares UTF-8 bytes.
    if dialect == "postgresql" and isinstance(col.type, String):
        return col.collate("C")
    return col
