"""Schema migrations: an ordered list of versioned steps recorded in ``schema_migrations``.

Each step runs in its own transaction together with the row that records it, under a lock
(SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: an advisory transaction lock), and the version is read
again under that lock, so two processes opening one database at once apply each step once.
Re-opening an up-to-date database changes nothing. A database recorded at a version newer than
this code knows refuses to open.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, func, insert, inspect, select

from tribune.errors import StoreError
from tribune.store import tables
from tribune.store.engine import MIGRATION_LOCK, read_tx, write_tx


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    apply: Callable[[Connection], None]


# The tables of version 1. A table added later comes with its own step, never here.
_V1_TABLES = (
    tables.users,
    tables.groups,
    tables.agents,
    tables.tools,
    tables.tasks,
    tables.policy_versions,
    tables.learned_targets,
    tables.audit_records,
    tables.audit_checkpoints,
)


def _initial(conn: Connection) -> None:
    # The schema as first released. A later change to tables.py must come as a new step, and
    # this step must then keep creating the tables as they were at version 1.
    tables.metadata.create_all(conn, tables=list(_V1_TABLES))


def _api_keys(conn: Connection) -> None:
    tables.api_keys.create(conn)


def _credentials(conn: Connection) -> None:
    for table in (
        tables.agent_keys,
        tables.used_token_ids,
        tables.revoked_tokens,
        tables.leases,
        tables.sealed_secrets,
    ):
        table.create(conn)


def _approvals(conn: Connection) -> None:
    tables.approval_tickets.create(conn)
    tables.approval_votes.create(conn)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema", _initial),
    Migration(2, "api keys", _api_keys),
    Migration(3, "identities, token ids, leases, sealed secrets", _credentials),
    Migration(4, "approval tickets and votes", _approvals),
)
LATEST = MIGRATIONS[-1].version

# INVARIANT: versions strictly increase.
assert all(a.version < b.version for a, b in itertools.pairwise(MIGRATIONS))


def current_version(conn: Connection) -> int:
    """The highest recorded version; 0 for an empty database."""
    if not inspect(conn).has_table(tables.schema_migrations.name):
        return 0
    return int(conn.scalar(select(func.max(tables.schema_migrations.c.version))) or 0)


def _refuse_newer(version: int) -> None:
    if version > LATEST:
        raise StoreError(
            f"database schema version {version} is newer than this tribune (knows {LATEST})",
            hint="upgrade tribune, or open a database made by this version",
        )


def migrate(engine: Engine) -> int:
    """Bring the database to ``LATEST``; return the version found before."""
    with read_tx(engine) as conn:
        found = current_version(conn)
    _refuse_newer(found)
    if found == LATEST:
        return found
    while True:
        with write_tx(engine, lock=MIGRATION_LOCK) as conn:
            version = current_version(conn)
            _refuse_newer(version)
            pending = [m for m in MIGRATIONS if m.version > version]
            if not pending:
                return found
            step = pending[0]
            tables.schema_migrations.create(conn, checkfirst=True)
            step.apply(conn)
            conn.execute(insert(tables.schema_migrations).values(version=step.version))
