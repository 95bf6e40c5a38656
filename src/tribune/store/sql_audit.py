"""The audit log on SQL: an append-only, hash-chained table and its signed checkpoints.

An append reads the chain head, links the new record to it and inserts it in ONE transaction
that holds the database's append lock, so concurrent appenders (threads, processes, replicas)
never fork the chain. SQLite: ``BEGIN IMMEDIATE`` on one dedicated raw ``sqlite3`` connection,
because SQLAlchemy Core's per-statement overhead would dominate this hot path.
PostgreSQL: Core under ``pg_advisory_xact_lock``. Reading streams keyset batches.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Engine, bindparam, func, insert, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import PoolProxiedConnection

from tribune.core.audit import GENESIS, link
from tribune.core.model import AuditEntry, AuditRecord, Checkpoint, RecordKind
from tribune.errors import AuditIntegrityError, Conflict, InvalidInput, StoreError
from tribune.store.codec import check_aware, from_micros, to_micros
from tribune.store.engine import AUDIT_LOCK, read_tx, translate_errors, write_tx
from tribune.store.tables import audit_checkpoints, audit_records

BATCH = 5000
MAX_FIND = 10_000
WAL_EVERY = 1000  # appends between background WAL checkpoints (SQLite)
_KINDS = {k.value: k for k in RecordKind}
_HEAD = select(audit_records.c.seq, audit_records.c.hash).order_by(audit_records.c.seq.desc())
_HEAD = _HEAD.limit(1)
_INSERT = insert(audit_records)
# The SQLite append path's statements, compiled once from the table definition.
_SQLITE_HEAD = str(_HEAD.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
_compiled_insert = _INSERT.compile(dialect=sqlite.dialect())
_SQLITE_INSERT = str(_compiled_insert)
_INSERT_ORDER = tuple(_compiled_insert.positiontup or ())
_PAGE = (
    select(audit_records)
    .where(audit_records.c.seq > bindparam("after"))
    .order_by(audit_records.c.seq)
    .limit(bindparam("size"))
)
_compiled_page = _PAGE.compile(dialect=sqlite.dialect())
_SQLITE_PAGE = str(_compiled_page)
_PAGE_ORDER = tuple(_compiled_page.positiontup or ())


class SqlAuditLog:
    """``tribune.ports.AuditLog`` on SQLite or PostgreSQL.

    ``engine`` comes from ``engine.make_engine`` and its database is migrated (``SqlStore``
    does both).
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._closed = False
        self._dialect = engine.dialect.name
        self._append_lock = threading.Lock()
        # the raw connection the SQLite append path keeps for itself (taken from the pool)
        self._raw: PoolProxiedConnection | None = None
        # and a second one for the decision path's reads, so reads never wait behind an append
        # (WAL: a reader sees the last commit and blocks no writer)
        self._read_lock = threading.Lock()
        self._raw_read: PoolProxiedConnection | None = None
        self._appends = 0
        self._wal_due = threading.Event()
        self._wal_worker: threading.Thread | None = None
        if self._dialect == "sqlite":
            with translate_errors():
                self._raw = engine.raw_connection()
                # The append connection never checkpoints the WAL itself: a checkpoint writes
                # pages back and syncs the database file (milliseconds), which would land on a
                # governed call. A worker thread does it instead, every WAL_EVERY appends.
                cast(sqlite3.Connection, self._raw.driver_connection).execute(
                    "PRAGMA wal_autocheckpoint=0"
                )
                self._raw_read = engine.raw_connection()

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for diagnostics and tests); ``StoreError`` once closed."""
        if self._closed:
            raise StoreError("the store is closed")
        return self._engine

    def _checkpoint_wal_soon(self) -> None:
        if self._wal_worker is None:
            self._wal_worker = threading.Thread(
                target=self._wal_loop, name="tribune-wal-checkpoint", daemon=True
            )
            self._wal_worker.start()
        self._wal_due.set()

    def _wal_loop(self) -> None:
        try:
            raw = self._engine.raw_connection()
        except Exception:
            return
        try:
            while True:
                self._wal_due.wait()
                self._wal_due.clear()
                if self._closed:
                    return
                try:
                    conn = cast(sqlite3.Connection, raw.driver_connection)
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:
                    pass  # busy or locked: the next round catches up
        finally:
            raw.close()

    def close(self) -> None:
        """Release every connection. Using the store afterwards raises ``StoreError``."""
        if self._wal_worker is not None:
            self._closed = True
            self._wal_due.set()
            self._wal_worker.join(timeout=10)
            self._wal_worker = None
        with self._append_lock:
            self._closed = True
            if self._raw is not None:
                self._raw.close()
                self._raw = None
        with self._read_lock:
            if self._raw_read is not None:
                self._raw_read.close()
                self._raw_read = None
        self._engine.dispose()

    # ------------------------------------------------------------------ append

    def append(
        self,
        kind: RecordKind,
        ts: datetime,
        body: dict[str, object],
        *,
        action_id: str | None = None,
        task_id: str | None = None,
        agent_id: str | None = None,
    ) -> AuditRecord:
        """Append one record to the chain; it is committed (durable) when this returns."""
        entry = AuditEntry(kind, ts, body, action_id, task_id, agent_id)
        return self.append_many((entry,))[0]

    def append_many(self, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        """Append ``entries`` as consecutive records in ONE transaction (group commit)."""
        for entry in entries:
            check_aware(entry.ts)
        if self._dialect == "sqlite":
            return self._append_sqlite(entries)
        out: list[AuditRecord] = []
        with write_tx(self.engine, lock=AUDIT_LOCK) as conn:
            row = conn.execute(_HEAD).first()
            seq, prev = (row[0], row[1]) if row is not None else (0, GENESIS)
            for entry in entries:
                seq += 1
                record = _link(seq, prev, entry)
                conn.execute(_INSERT, _row(record))
                out.append(record)
                prev = record.hash
        return out

    def _append_sqlite(self, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        out: list[AuditRecord] = []
        with self._append_lock, translate_errors():
            if self._raw is None:
                raise StoreError("the store is closed")
            conn = cast(sqlite3.Connection, self._raw.driver_connection)
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(_SQLITE_HEAD).fetchone()
                seq, prev = row if row is not None else (0, GENESIS)
                for entry in entries:
                    seq += 1
                    record = _link(seq, prev, entry)
                    values = _row(record)
                    conn.execute(_SQLITE_INSERT, [values[c] for c in _INSERT_ORDER])
                    out.append(record)
                    prev = record.hash
                conn.execute("COMMIT")
                self._appends += len(out)
                if self._appends // WAL_EVERY != (self._appends - len(out)) // WAL_EVERY:
                    self._checkpoint_wal_soon()
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        return out

    def _sqlite_read_one(self, sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
        """One row from the dedicated raw read connection (SQLite only): the decision path's
        reads skip SQLAlchemy's per-statement overhead like its appends do. Outside a
        transaction each statement reads the latest committed state (WAL)."""
        with self._read_lock, translate_errors():
            if self._raw_read is None:
                raise StoreError("the store is closed")
            conn = cast(sqlite3.Connection, self._raw_read.driver_connection)
            row: tuple[Any, ...] | None = conn.execute(sql, tuple(params)).fetchone()
            return row

    # ------------------------------------------------------------------ read

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the last record; (0, GENESIS) when empty."""
        with read_tx(self.engine) as conn:
            row = conn.execute(_HEAD).first()
        return (int(row[0]), str(row[1])) if row is not None else (0, GENESIS)

    def records(self, *, after_seq: int = 0, limit: int | None = None) -> Iterator[AuditRecord]:
        """Records with seq > ``after_seq`` in chain order, read in batches of ``BATCH``.

        Each batch is its own short read, so a long stream holds no lock or snapshot.
        """
        if limit is not None and limit < 0:
            raise InvalidInput(f"invalid limit `{limit}`")
        left = limit
        while left is None or left > 0:
            size = BATCH if left is None else min(BATCH, left)
            rows = self._page(after_seq, size)
            for row in rows:
                # INVARIANT: _PAGE selects the columns in _record's argument order
                yield _record(*row)
            if len(rows) < size:
                return
            after_seq = rows[-1][0]
            if left is not None:
                left -= len(rows)

    def _page(self, after_seq: int, size: int) -> Sequence[Any]:
        params = {"after": after_seq, "size": size}
        if self._dialect != "sqlite":
            with read_tx(self.engine) as conn:
                return conn.execute(_PAGE, params).all()
        # SQLite: the raw driver reads rows about 1.5x faster than Core; `audit verify` is
        # bound by this loop. One statement, so autocommit gives it a consistent snapshot.
        with translate_errors():
            raw = self.engine.raw_connection()
            try:
                db = cast(sqlite3.Connection, raw.driver_connection)
                bound = _compiled_page.construct_params(params)  # adds the OFFSET 0 it renders
                args = [bound[name] for name in _PAGE_ORDER]
                rows: list[Any] = db.execute(_SQLITE_PAGE, args).fetchall()
                return rows
            finally:
                raw.close()

    def find_records(
        self,
        *,
        after_seq: int = 0,
        limit: int = 100,
        kinds: Sequence[RecordKind] = (),
        action_id: str | None = None,
        task_id: str | None = None,
        agent_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[AuditRecord]:
        """Up to ``limit`` records with seq > ``after_seq`` matching every filter given, in
        chain order (``since`` inclusive, ``until`` exclusive)."""
        if not 0 < limit <= MAX_FIND:
            raise InvalidInput(f"limit must be between 1 and {MAX_FIND}")
        c = audit_records.c
        query = select(audit_records).where(c.seq > after_seq)
        if kinds:
            query = query.where(c.kind.in_([k.value for k in kinds]))
        for column, value in (
            (c.action_id, action_id),
            (c.task_id, task_id),
            (c.agent_id, agent_id),
        ):
            if value is not None:
                query = query.where(column == value)
        if since is not None:
            query = query.where(c.ts >= to_micros(check_aware(since)))
        if until is not None:
            query = query.where(c.ts < to_micros(check_aware(until)))
        with read_tx(self.engine) as conn:
            rows = conn.execute(query.order_by(c.seq).limit(limit)).all()
        return [_record(*row) for row in rows]

    def count(self) -> int:
        """How many records the log holds."""
        with read_tx(self.engine) as conn:
            return int(conn.scalar(select(func.count()).select_from(audit_records)) or 0)

    # ------------------------------------------------------------------ checkpoints

    def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Store a signed checkpoint; ``Conflict`` if one exists for its seq and key."""
        values = {
            "seq": checkpoint.seq,
            "key_id": checkpoint.key_id,
            "hash": checkpoint.hash,
            "ts": to_micros(checkpoint.ts),
            "signature": checkpoint.signature,
        }
        with write_tx(self.engine) as conn:
            try:
                conn.execute(insert(audit_checkpoints).values(values))
            except IntegrityError:
                raise Conflict(
                    f"checkpoint at seq {checkpoint.seq} by key `{checkpoint.key_id}` exists"
                ) from None

    def checkpoints(self) -> list[Checkpoint]:
        """All checkpoints by seq, then key id."""
        c = audit_checkpoints.c
        with read_tx(self.engine) as conn:
            rows = conn.execute(select(audit_checkpoints).order_by(c.seq, c.key_id)).all()
        return [
            Checkpoint(
                seq=r.seq, hash=r.hash, ts=from_micros(r.ts), key_id=r.key_id, signature=r.signature
            )
            for r in rows
        ]


def _link(seq: int, prev: str, entry: AuditEntry) -> AuditRecord:
    try:
        return link(
            seq,
            prev,
            entry.kind,
            entry.ts,
            entry.body,
            action_id=entry.action_id,
            task_id=entry.task_id,
            agent_id=entry.agent_id,
        )
    except (ValueError, TypeError) as e:  # rfc8785 refuses values JSON cannot hold
        raise InvalidInput(f"audit body is not JSON: {e}") from None


def _row(record: AuditRecord) -> dict[str, Any]:
    return {
        "seq": record.seq,
        "kind": record.kind.value,
        "ts": to_micros(record.ts),
        "action_id": record.action_id,
        "task_id": record.task_id,
        "agent_id": record.agent_id,
        "body": record.body,
        "prev_hash": record.prev_hash,
        "hash": record.hash,
    }


def _record(
    seq: int,
    kind: str,
    ts: int,
    action_id: str | None,
    task_id: str | None,
    agent_id: str | None,
    body: str,
    prev_hash: str,
    hash_: str,
) -> AuditRecord:
    found = _KINDS.get(kind)
    if found is None:
        raise AuditIntegrityError(f"audit record {seq} has unknown kind `{kind}`")
    return AuditRecord(
        seq, found, from_micros(ts), action_id, task_id, agent_id, body, prev_hash, hash_
    )
