"""The ``Credentials`` part of the SQL store: agent keys, token ids, leases, sealed secrets.

A mixin of ``SqlStore``: it uses the engine and dialect ``SqlAuditLog`` sets up. Every state
change is one conditional UPDATE or one INSERT, so two replicas racing on the same row cannot
both win.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, bindparam, delete, exists, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from tribune.core.model import (
    AgentKey,
    AgentStatus,
    Lease,
    LeaseState,
    SealedSecret,
    TaskState,
    TokenState,
)
from tribune.errors import Conflict, InvalidInput, UnknownTask
from tribune.store import codec
from tribune.store.engine import bytewise, read_tx, write_tx
from tribune.store.tables import (
    agent_keys,
    agents,
    leases,
    revoked_tokens,
    sealed_secrets,
    tasks,
    used_token_ids,
)

MAX_LEASES = 10_000


# One read for a token check: task, its agent's status and the revocation list.
_TOKEN_STATE = (
    select(
        tasks.c.agent_id,
        tasks.c.state,
        tasks.c.expires_at,
        agents.c.status,
        exists().where(revoked_tokens.c.jti == bindparam("jti")),
    )
    .select_from(tasks.outerjoin(agents, agents.c.id == tasks.c.agent_id))
    .where(tasks.c.id == bindparam("task"))
)
_SQLITE_TOKEN_STATE = str(_TOKEN_STATE.compile(dialect=sqlite.dialect()))


class SqlCredentials:
    engine: Engine
    _dialect: str

    if TYPE_CHECKING:  # SqlAuditLog's raw read connection (it follows this class in the MRO)

        def _sqlite_read_one(self, sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None: ...

    def _insert_ignoring(self, table: Any, values: dict[str, Any], keys: list[str]) -> bool:
        """INSERT ... ON CONFLICT DO NOTHING; True when the row was inserted. (RETURNING, as
        psycopg reports no row count for this statement.)"""
        dialect_insert = postgresql.insert if self._dialect == "postgresql" else sqlite.insert
        stmt = (
            dialect_insert(table)
            .values(values)
            .on_conflict_do_nothing(index_elements=keys)
            .returning(table.c[keys[0]])
        )
        with write_tx(self.engine) as conn:
            return conn.execute(stmt).first() is not None

    # ------------------------------------------------------------------ agent keys

    def add_agent_key(self, key: AgentKey) -> None:
        values = {
            "agent_id": key.agent_id,
            "kid": key.kid,
            "jwk": codec.dumps(key.jwk),
            "source": key.source,
            "created_at": codec.to_micros(key.created_at),
            "revoked_at": _micros(key.revoked_at),
        }
        with write_tx(self.engine) as conn:
            try:
                conn.execute(insert(agent_keys).values(values))
            except IntegrityError:
                raise Conflict(f"agent `{key.agent_id}` already has key `{key.kid}`") from None

    def list_agent_keys(self, agent_id: str) -> list[AgentKey]:
        k = agent_keys.c
        stmt = (
            select(agent_keys)
            .where(k.agent_id == agent_id)
            .order_by(k.created_at, bytewise(k.kid, self._dialect))
        )
        with read_tx(self.engine) as conn:
            rows = conn.execute(stmt).all()
        return [
            AgentKey(
                agent_id=r.agent_id,
                kid=r.kid,
                jwk=codec.loads(dict[str, Any], r.jwk),
                created_at=codec.from_micros(r.created_at),
                revoked_at=_time(r.revoked_at),
                source=r.source,
            )
            for r in rows
        ]

    def revoke_agent_key(self, agent_id: str, kid: str, at: datetime) -> bool:
        k = agent_keys.c
        stmt = (
            update(agent_keys)
            .where(k.agent_id == agent_id, k.kid == kid, k.revoked_at.is_(None))
            .values(revoked_at=codec.to_micros(at))
        )
        with write_tx(self.engine) as conn:
            return bool(conn.execute(stmt).rowcount == 1)

    # ------------------------------------------------------------------ token ids

    def use_jti(self, issuer: str, jti: str, expires_at: datetime) -> bool:
        values = {"issuer": issuer, "jti": jti, "expires_at": codec.to_micros(expires_at)}
        return self._insert_ignoring(used_token_ids, values, ["issuer", "jti"])

    def revoke_token(self, jti: str, expires_at: datetime, at: datetime) -> bool:
        values = {
            "jti": jti,
            "expires_at": codec.to_micros(expires_at),
            "revoked_at": codec.to_micros(at),
        }
        return self._insert_ignoring(revoked_tokens, values, ["jti"])

    def token_revoked(self, jti: str) -> bool:
        stmt = select(revoked_tokens.c.jti).where(revoked_tokens.c.jti == jti)
        with read_tx(self.engine) as conn:
            return conn.execute(stmt).first() is not None

    def token_state(self, task_id: str, jti: str) -> TokenState | None:
        if self._dialect == "sqlite":
            row = self._sqlite_read_one(_SQLITE_TOKEN_STATE, (jti, task_id))
        else:
            with read_tx(self.engine) as conn:
                row = conn.execute(_TOKEN_STATE, {"jti": jti, "task": task_id}).first()
        if row is None:
            return None
        agent_id, state, expires, status, revoked = row
        return TokenState(
            agent_id=agent_id,
            task_state=TaskState(state),
            task_expires_at=codec.from_micros(expires),
            agent_status=AgentStatus(status) if status is not None else None,
            revoked=bool(revoked),
        )

    def prune_token_ids(self, before: datetime) -> int:
        when = codec.to_micros(before)
        with write_tx(self.engine) as conn:
            used = conn.execute(delete(used_token_ids).where(used_token_ids.c.expires_at < when))
            revoked = conn.execute(delete(revoked_tokens).where(revoked_tokens.c.expires_at < when))
            return int(used.rowcount + revoked.rowcount)

    # ------------------------------------------------------------------ leases

    def add_lease(self, lease: Lease) -> None:
        with write_tx(self.engine) as conn:
            if conn.execute(select(tasks.c.id).where(tasks.c.id == lease.task_id)).first() is None:
                raise UnknownTask(f"unknown task `{lease.task_id}`")
            try:
                conn.execute(insert(leases).values(_lease_row(lease)))
            except IntegrityError:
                raise Conflict(f"lease `{lease.id}` already exists") from None

    def get_lease(self, lease_id: str) -> Lease | None:
        with read_tx(self.engine) as conn:
            body = conn.execute(select(leases.c.body).where(leases.c.id == lease_id)).scalar()
        return codec.loads(Lease, body) if body is not None else None

    def list_leases(
        self,
        *,
        task_ids: Sequence[str] | None = None,
        state: LeaseState | None = None,
        expired_at: datetime | None = None,
        limit: int = 1000,
    ) -> list[Lease]:
        if not 1 <= limit <= MAX_LEASES:
            raise InvalidInput(f"limit must be 1..{MAX_LEASES}")
        c = leases.c
        stmt = select(c.body)
        if task_ids is not None:
            if not task_ids:
                return []
            stmt = stmt.where(or_(*(c.task_id == t for t in dict.fromkeys(task_ids))))
        if state is not None:
            stmt = stmt.where(c.state == state.value)
        if expired_at is not None:
            stmt = stmt.where(c.expires_at <= codec.to_micros(expired_at))
        stmt = stmt.order_by(c.issued_at, bytewise(c.id, self._dialect)).limit(limit)
        with read_tx(self.engine) as conn:
            bodies = conn.execute(stmt).scalars().all()
        return [codec.loads(Lease, b) for b in bodies]

    def replace_lease(self, lease: Lease, expected: LeaseState) -> bool:
        row = _lease_row(lease)
        c = leases.c
        stmt = (
            update(leases)
            .where(
                c.id == row.pop("id"),
                c.state == expected.value,
                # a lease's task and issue time never change
                c.task_id == row.pop("task_id"),
                c.issued_at == row.pop("issued_at"),
            )
            .values(row)
        )
        with write_tx(self.engine) as conn:
            return bool(conn.execute(stmt).rowcount == 1)

    # ------------------------------------------------------------------ sealed secrets

    def put_secret(self, secret: SealedSecret) -> None:
        dialect_insert = postgresql.insert if self._dialect == "postgresql" else sqlite.insert
        stmt = dialect_insert(sealed_secrets).values(name=secret.name, body=codec.dumps(secret))
        stmt = stmt.on_conflict_do_update(
            index_elements=["name"], set_={"body": stmt.excluded.body}
        )
        with write_tx(self.engine) as conn:
            conn.execute(stmt)

    def get_secret(self, name: str) -> SealedSecret | None:
        with read_tx(self.engine) as conn:
            body = conn.execute(
                select(sealed_secrets.c.body).where(sealed_secrets.c.name == name)
            ).scalar()
        return codec.loads(SealedSecret, body) if body is not None else None

    def list_secrets(self) -> list[SealedSecret]:
        stmt = select(sealed_secrets.c.body).order_by(
            bytewise(sealed_secrets.c.name, self._dialect)
        )
        with read_tx(self.engine) as conn:
            bodies = conn.execute(stmt).scalars().all()
        return [codec.loads(SealedSecret, b) for b in bodies]

    def delete_secret(self, name: str) -> bool:
        with write_tx(self.engine) as conn:
            done = conn.execute(delete(sealed_secrets).where(sealed_secrets.c.name == name))
            return bool(done.rowcount == 1)


def _micros(ts: datetime | None) -> int | None:
    return codec.to_micros(ts) if ts is not None else None


def _time(us: int | None) -> datetime | None:
    return codec.from_micros(us) if us is not None else None


def _lease_row(lease: Lease) -> dict[str, Any]:
    return {
        "id": lease.id,
        "task_id": lease.task_id,
        "state": lease.state.value,
        "expires_at": codec.to_micros(lease.expires_at),
        "issued_at": codec.to_micros(lease.issued_at),
        "body": codec.dumps(lease),
    }
