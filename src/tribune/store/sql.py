"""``SqlStore``: the whole ``tribune.ports.Store`` on SQLAlchemy Core, SQLite or PostgreSQL.

Rows hold the model's scalar fields as columns and nested values as codec JSON; see tables.py.
Writes run in ``write_tx`` (SQLite ``BEGIN IMMEDIATE``), reads in ``read_tx``; every driver
failure surfaces as ``StoreError``.
"""

from __future__ import annotations

import functools
from collections import namedtuple
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, insert, or_, select, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Row
from sqlalchemy.exc import IntegrityError

from tribune.core.model import (
    Agent,
    AgentStatus,
    ApiKey,
    Entitlements,
    Group,
    OwnerRef,
    PolicyVersion,
    Role,
    Scope,
    SessionState,
    Task,
    TaskState,
    Tool,
    User,
)
from tribune.errors import Conflict, InvalidInput, NotFound, UnknownAgent, UnknownTask
from tribune.store import codec
from tribune.store.engine import (
    POLICY_LOCK,
    bytewise,
    make_engine,
    parse_url,
    read_tx,
    write_tx,
)
from tribune.store.migrations import migrate
from tribune.store.sql_approvals import SqlApprovals
from tribune.store.sql_audit import SqlAuditLog
from tribune.store.sql_credentials import SqlCredentials
from tribune.store.tables import (
    agents,
    api_keys,
    groups,
    learned_targets,
    policy_versions,
    tasks,
    tools,
    users,
)

# get_task on SQLite: compiled once, read on the raw connection (see SqlAuditLog).
_compiled_task = (
    select(tasks).where(tasks.c.id == bindparam("id")).compile(dialect=sqlite.dialect())
)
_SQLITE_TASK = str(_compiled_task)
_TaskRow = namedtuple("_TaskRow", [c.name for c in tasks.c])  # type: ignore[misc]
# get_api_key on SQLite likewise: it authenticates every API request.
_SQLITE_API_KEY = str(
    select(api_keys).where(api_keys.c.id == bindparam("id")).compile(dialect=sqlite.dialect())
)
_ApiKeyRow = namedtuple("_ApiKeyRow", [c.name for c in api_keys.c])  # type: ignore[misc]


class SqlStore(SqlCredentials, SqlApprovals, SqlAuditLog):
    """Registry, tasks, policy versions, learned targets and the audit log in one database.

    Opening applies pending migrations. ``url`` is a SQLAlchemy URL (``sqlite:///...`` or
    ``postgresql+psycopg://...``); most callers want ``tribune.store.open_store``.
    """

    def __init__(self, url: str | URL, *, durability: str = "normal") -> None:
        engine = make_engine(url if isinstance(url, URL) else parse_url(url), durability)
        try:
            migrate(engine)
            super().__init__(engine)
        except BaseException:
            engine.dispose()
            raise

    # ------------------------------------------------------------------ helpers

    def _order(self, table: Table, *names: str) -> list[Any]:
        return [bytewise(table.c[n], self._dialect) for n in names]

    def _insert(self, table: Table) -> Any:
        """The dialect's INSERT, which has ``on_conflict_*`` (same API on both)."""
        return (postgresql.insert if self._dialect == "postgresql" else sqlite.insert)(table)

    def _upsert(self, table: Table, values: dict[str, Any], key: str) -> None:
        stmt = self._insert(table).values(values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[key], set_={k: stmt.excluded[k] for k in values if k != key}
        )
        with write_tx(self.engine) as conn:
            conn.execute(stmt)

    def _one(self, table: Table, key: str, value: str) -> Row[Any] | None:
        with read_tx(self.engine) as conn:
            return conn.execute(select(table).where(table.c[key] == value)).first()

    def _all(self, table: Table, *order: str) -> list[Row[Any]]:
        with read_tx(self.engine) as conn:
            return list(conn.execute(select(table).order_by(*self._order(table, *order))).all())

    # ------------------------------------------------------------------ users and groups

    def put_user(self, user: User) -> None:
        """Insert or replace a user by name."""
        self._upsert(users, _user_row(user), "name")

    def get_user(self, name: str) -> User | None:
        row = self._one(users, "name", name)
        return _user(row) if row is not None else None

    def list_users(self) -> list[User]:
        """Users by name."""
        return [_user(r) for r in self._all(users, "name")]

    def put_group(self, group: Group) -> None:
        """Insert or replace a group by name."""
        self._upsert(groups, {"name": group.name, "description": group.description}, "name")

    def get_group(self, name: str) -> Group | None:
        row = self._one(groups, "name", name)
        return Group(row.name, row.description) if row is not None else None

    def list_groups(self) -> list[Group]:
        """Groups by name."""
        return [Group(r.name, r.description) for r in self._all(groups, "name")]

    # ------------------------------------------------------------------ agents and tools

    def add_agent(self, agent: Agent) -> None:
        """Insert a new agent; ``Conflict`` if its id exists."""
        values = _agent_row(agent)
        with write_tx(self.engine) as conn:
            try:
                conn.execute(insert(agents).values(values))
            except IntegrityError:
                raise Conflict(f"agent `{agent.id}` already exists") from None

    def get_agent(self, agent_id: str) -> Agent | None:
        row = self._one(agents, "id", agent_id)
        return _agent(row) if row is not None else None

    def list_agents(self) -> list[Agent]:
        """Agents by id."""
        return [_agent(r) for r in self._all(agents, "id")]

    def set_agent_status(self, agent_id: str, status: AgentStatus) -> None:
        """Change an agent's status; ``UnknownAgent`` if there is no such agent."""
        with write_tx(self.engine) as conn:
            stmt = update(agents).where(agents.c.id == agent_id)
            done = conn.execute(stmt.values(status=AgentStatus(status).value))
            if done.rowcount != 1:
                raise UnknownAgent(f"unknown agent `{agent_id}`")

    def put_tool(self, tool: Tool) -> None:
        """Insert or replace a tool by name."""
        self._upsert(tools, {"name": tool.name, "spec": codec.dumps(tool)}, "name")

    def get_tool(self, name: str) -> Tool | None:
        row = self._one(tools, "name", name)
        return codec.loads(Tool, row.spec) if row is not None else None

    def list_tools(self) -> list[Tool]:
        """Tools by name."""
        return [codec.loads(Tool, r.spec) for r in self._all(tools, "name")]

    # ------------------------------------------------------------------ api keys

    def add_api_key(self, key: ApiKey) -> None:
        """Insert a new key; ``Conflict`` if its id exists."""
        values = _api_key_row(key)
        with write_tx(self.engine) as conn:
            try:
                conn.execute(insert(api_keys).values(values))
            except IntegrityError:
                raise Conflict(f"api key `{key.id}` already exists") from None

    def get_api_key(self, key_id: str) -> ApiKey | None:
        if self._dialect == "sqlite":
            raw = self._sqlite_read_one(_SQLITE_API_KEY, (key_id,))
            return _api_key(_ApiKeyRow(*raw)) if raw is not None else None
        row = self._one(api_keys, "id", key_id)
        return _api_key(row) if row is not None else None

    def list_api_keys(self) -> list[ApiKey]:
        """Keys, oldest first (then by id)."""
        return [_api_key(r) for r in self._all(api_keys, "created_at", "id")]

    def revoke_api_key(self, key_id: str, at: datetime) -> bool:
        """Revoke a key active at ``at``; False if it is missing, revoked or expired."""
        when = codec.to_micros(at)
        k = api_keys.c
        with write_tx(self.engine) as conn:
            done = conn.execute(
                update(api_keys)
                .where(
                    k.id == key_id,
                    k.revoked_at.is_(None),
                    or_(k.expires_at.is_(None), k.expires_at > when),
                )
                .values(revoked_at=when)
            )
            return bool(done.rowcount == 1)

    # ------------------------------------------------------------------ tasks

    def add_task(self, task: Task) -> None:
        """Insert a new task: ``UnknownAgent`` for a missing agent, ``Conflict`` for a taken id."""
        values = _task_row(task)
        with write_tx(self.engine) as conn:
            if conn.scalar(select(agents.c.id).where(agents.c.id == task.agent_id)) is None:
                raise UnknownAgent(f"unknown agent `{task.agent_id}`")
            try:
                conn.execute(insert(tasks).values(values))
            except IntegrityError:
                raise Conflict(f"task `{task.id}` already exists") from None

    def get_task(self, task_id: str) -> Task | None:
        if self._dialect == "sqlite":
            raw = self._sqlite_read_one(_SQLITE_TASK, (task_id,))
            return _task_from_raw(raw) if raw is not None else None
        row = self._one(tasks, "id", task_id)
        return _task(row) if row is not None else None

    def list_tasks(
        self, *, agent_id: str | None = None, active_at: datetime | None = None
    ) -> list[Task]:
        """Tasks, newest first (then by id, descending); ``active_at``: those active then."""
        stmt = select(tasks)
        if agent_id is not None:
            stmt = stmt.where(tasks.c.agent_id == agent_id)
        if active_at is not None:
            stmt = stmt.where(
                tasks.c.state == TaskState.ACTIVE.value,
                tasks.c.expires_at > codec.to_micros(active_at),
            )
        stmt = stmt.order_by(tasks.c.created_at.desc(), bytewise(tasks.c.id, self._dialect).desc())
        with read_tx(self.engine) as conn:
            rows = conn.execute(stmt).all()
        return [_task(r) for r in rows]

    def end_task(self, task_id: str, ended_at: datetime) -> bool:
        """Mark an active task ended; False if it is missing or already ended."""
        with write_tx(self.engine) as conn:
            done = conn.execute(
                update(tasks)
                .where(tasks.c.id == task_id, tasks.c.state == TaskState.ACTIVE.value)
                .values(state=TaskState.ENDED.value, ended_at=codec.to_micros(ended_at))
            )
            return bool(done.rowcount == 1)

    def update_session(self, task_id: str, session: SessionState) -> None:
        """Replace a task's session state; ``UnknownTask`` if there is no such task."""
        with write_tx(self.engine) as conn:
            done = conn.execute(
                update(tasks).where(tasks.c.id == task_id).values(session=codec.dumps(session))
            )
            if done.rowcount != 1:
                raise UnknownTask(f"unknown task `{task_id}`")

    def merge_session(
        self, task_id: str, *, tainted: bool, data_read: frozenset[str], calls: int
    ) -> SessionState:
        merged = self._change_session(
            task_id, lambda old: old.merged(tainted=tainted, data_read=data_read, calls=calls)
        )
        assert merged is not None  # INVARIANT: merging always yields a state
        return merged

    def reserve_call(self, task_id: str, limit: int) -> bool:
        return self._change_session(task_id, lambda old: old.reserved(limit)) is not None

    def _change_session(
        self, task_id: str, change: Callable[[SessionState], SessionState | None]
    ) -> SessionState | None:
        """Read, change and write a task's session state in one write transaction (SQLite:
        BEGIN IMMEDIATE; PostgreSQL: the row is locked FOR UPDATE). ``change`` returning None
        writes nothing."""
        with write_tx(self.engine) as conn:
            query = select(tasks.c.session).where(tasks.c.id == task_id)
            if self._dialect == "postgresql":
                query = query.with_for_update()
            text = conn.execute(query).scalar()
            if text is None:
                raise UnknownTask(f"unknown task `{task_id}`")
            new = change(codec.loads(SessionState, text))
            if new is not None:
                conn.execute(
                    update(tasks).where(tasks.c.id == task_id).values(session=codec.dumps(new))
                )
        return new

    # ------------------------------------------------------------------ policy versions

    def add_policy_version(self, version: PolicyVersion) -> None:
        """Store a new, inactive version; ``Conflict`` if its id exists (versions are immutable)."""
        if version.active:
            raise InvalidInput(
                f"policy version `{version.id}` must be added inactive",
                hint="add it, then activate it",
            )
        values = {
            "id": version.id,
            "created_at": codec.to_micros(version.created_at),
            "digest": version.digest,
            "note": version.note,
            "files": codec.dumps(version.files),
            "active": False,
        }
        with write_tx(self.engine) as conn:
            try:
                conn.execute(insert(policy_versions).values(values))
            except IntegrityError:
                raise Conflict(f"policy version `{version.id}` already exists") from None

    def get_policy_version(self, version_id: str) -> PolicyVersion | None:
        row = self._one(policy_versions, "id", version_id)
        return _policy(row) if row is not None else None

    def active_policy_version(self) -> PolicyVersion | None:
        """The one active version, or None."""
        with read_tx(self.engine) as conn:
            row = conn.execute(
                select(policy_versions).where(policy_versions.c.active == true())
            ).first()
        return _policy(row) if row is not None else None

    def active_policy_id(self) -> str | None:
        """The active version's id, without its files."""
        with read_tx(self.engine) as conn:
            found: str | None = conn.execute(
                select(policy_versions.c.id).where(policy_versions.c.active == true())
            ).scalar()
        return found

    def activate_policy_version(self, version_id: str) -> None:
        """Make exactly this version active, atomically; ``NotFound`` keeps the old one."""
        pv = policy_versions.c
        with write_tx(self.engine, lock=POLICY_LOCK) as conn:
            if conn.scalar(select(pv.id).where(pv.id == version_id)) is None:
                raise NotFound(f"unknown policy version `{version_id}`")
            # INVARIANT: deactivate first; the unique index allows one active row at a time.
            conn.execute(update(policy_versions).where(pv.active == true()).values(active=False))
            conn.execute(update(policy_versions).where(pv.id == version_id).values(active=True))

    def list_policy_versions(self) -> list[PolicyVersion]:
        """Versions, oldest first (then by id)."""
        return [_policy(r) for r in self._all(policy_versions, "created_at", "id")]

    # ------------------------------------------------------------------ learned targets

    def learn_targets(self, targets: Sequence[str], at: datetime) -> None:
        """Remember targets; a target already known keeps its first-seen time."""
        first_seen = codec.to_micros(at)
        rows = [{"target": t, "first_seen": first_seen} for t in dict.fromkeys(targets)]
        if not rows:
            return
        stmt = self._insert(learned_targets).on_conflict_do_nothing(index_elements=["target"])
        with write_tx(self.engine) as conn:
            conn.execute(stmt, rows)

    def learned_targets(self) -> frozenset[str]:
        with read_tx(self.engine) as conn:
            return frozenset(conn.scalars(select(learned_targets.c.target)).all())


# --------------------------------------------------------------------------- rows <-> values


def _user_row(user: User) -> dict[str, Any]:
    return {
        "name": user.name,
        "display_name": user.display_name,
        "email": user.email,
        "groups": codec.dumps(user.groups),
    }


def _user(row: Row[Any]) -> User:
    return User(row.name, row.display_name, row.email, codec.loads(tuple[str, ...], row.groups))


def _agent_row(agent: Agent) -> dict[str, Any]:
    return {
        "id": agent.id,
        "name": agent.name,
        "owner_kind": agent.owner.kind,
        "owner_name": agent.owner.name,
        "purpose": agent.purpose,
        "environment": agent.environment,
        "entitlements": codec.dumps(agent.entitlements),
        "status": AgentStatus(agent.status).value,
        "created_at": codec.to_micros(agent.created_at),
    }


def _agent(row: Row[Any]) -> Agent:
    return Agent(
        id=row.id,
        name=row.name,
        owner=OwnerRef(row.owner_kind, row.owner_name),
        purpose=row.purpose,
        environment=row.environment,
        entitlements=codec.loads(Entitlements, row.entitlements),
        status=AgentStatus(row.status),
        created_at=codec.from_micros(row.created_at),
    )


def _api_key_row(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "principal": key.principal,
        "role": Role(key.role).value,
        "secret_hash": key.secret_hash,
        "created_at": codec.to_micros(key.created_at),
        "expires_at": _micros_or_none(key.expires_at),
        "revoked_at": _micros_or_none(key.revoked_at),
        "note": key.note,
    }


def _api_key(row: Any) -> ApiKey:
    return ApiKey(
        id=row.id,
        principal=row.principal,
        role=Role(row.role),
        secret_hash=row.secret_hash,
        created_at=codec.from_micros(row.created_at),
        expires_at=codec.from_micros(row.expires_at) if row.expires_at is not None else None,
        revoked_at=codec.from_micros(row.revoked_at) if row.revoked_at is not None else None,
        note=row.note,
    )


def _micros_or_none(ts: datetime | None) -> int | None:
    return codec.to_micros(ts) if ts is not None else None


def _task_row(task: Task) -> dict[str, Any]:
    return {
        "id": task.id,
        "agent_id": task.agent_id,
        "state": TaskState(task.state).value,
        "created_at": codec.to_micros(task.created_at),
        "expires_at": codec.to_micros(task.expires_at),
        "ended_at": codec.to_micros(task.ended_at) if task.ended_at is not None else None,
        "parent_id": task.parent_id,
        "root_id": task.root_id,
        "depth": task.depth,
        "scope": codec.dumps(task.scope),
        "session": codec.dumps(task.session),
    }


@functools.lru_cache(maxsize=4096)
def _task_from_raw(raw: tuple[Any, ...]) -> Task:
    # A row is a tuple of plain values: equal rows decode to equal (immutable) tasks.
    return _task(_TaskRow(*raw))


@functools.lru_cache(maxsize=4096)
def _scope(text: str) -> Scope:
    # INVARIANT: a task's scope never changes after it starts, so decoding it once is enough.
    scope: Scope = codec.loads(Scope, text)
    return scope


def _task(row: Any) -> Task:
    return Task(
        id=row.id,
        agent_id=row.agent_id,
        scope=_scope(row.scope),
        state=TaskState(row.state),
        created_at=codec.from_micros(row.created_at),
        expires_at=codec.from_micros(row.expires_at),
        ended_at=codec.from_micros(row.ended_at) if row.ended_at is not None else None,
        parent_id=row.parent_id,
        root_id=row.root_id,
        depth=row.depth,
        session=codec.loads(SessionState, row.session),
    )


def _policy(row: Row[Any]) -> PolicyVersion:
    return PolicyVersion(
        id=row.id,
        created_at=codec.from_micros(row.created_at),
        files=codec.loads(dict[str, str], row.files),
        digest=row.digest,
        active=bool(row.active),
        note=row.note,
    )
