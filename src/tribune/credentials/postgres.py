"""PostgreSQL roles as credentials: one short-lived LOGIN role per lease.

A target is a database reached through an admin URL: a superuser, or a least-privileged role
with ``CREATEROLE``, ``pg_signal_backend``, and ``CONNECT`` on the database, ``USAGE`` on the
schemas and the templates' table privileges, each ``WITH GRANT OPTION`` (tested on PostgreSQL 15).
A template names the table grants a lease may ask for.

``issue`` creates ``tribune_<lease id>`` with a random password, ``VALID UNTIL`` the lease's
expiry, a connection limit and the template's grants, in one transaction. ``renew`` moves
``VALID UNTIL``; ``revoke`` refuses new logins, ends open sessions and drops the role.

The password is hashed here into a SCRAM-SHA-256 verifier (libpq's ``PQencryptPasswordConn``)
so the plain password never reaches the server, its logs or ``pg_stat_activity``. Every name goes
through ``sql.Identifier`` and every value through ``sql.Literal``; DDL takes no bind parameters.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar
from urllib.parse import quote

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from tribune.core.model import Lease
from tribune.credentials import own_scope
from tribune.errors import CredentialBackendUnavailable, InvalidInput

PRIVILEGES = frozenset(
    {"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"}
)
ROLE_PREFIX = "tribune_"
_MAX_NAME_BYTES = 63  # PostgreSQL truncates longer names silently: refuse them instead
_SCOPE_KEYS = frozenset({"target", "template"})
_TERMINATE_WAIT_S = 5.0

T = TypeVar("T")
Conn = psycopg.Connection[tuple[Any, ...]]


class CredentialBackendError(CredentialBackendUnavailable):
    """The credential system failed, refused, or is unreachable. ``detail`` holds the driver's
    first line, secrets removed, for operators; edges must not send it to callers."""

    detail: str = ""


def _name(value: object, what: str) -> str:
    if not isinstance(value, str) or not value or "\x00" in value:
        raise InvalidInput(f"{what} must be a non-empty string")
    if len(value.encode()) > _MAX_NAME_BYTES:
        raise InvalidInput(f"{what} `{value}` is longer than {_MAX_NAME_BYTES} bytes")
    return value


def _split_table(table: object) -> tuple[str, str]:
    if not isinstance(table, str):
        raise InvalidInput("a granted table must be a string `schema.table`")
    schema, dot, name = table.partition(".")
    if not dot:
        raise InvalidInput(f"table `{table}` must be written `schema.table`")
    return _name(schema, "schema name"), _name(name, "table name")


@dataclass(frozen=True, slots=True)
class Grant:
    """Privileges on tables (``schema.table``; split at the first dot)."""

    privileges: tuple[str, ...]
    tables: tuple[str, ...]

    def __post_init__(self) -> None:
        privs = tuple(dict.fromkeys(str(p).upper() for p in self.privileges))
        bad = [p for p in privs if p not in PRIVILEGES]
        if bad or not privs:
            raise InvalidInput(
                f"privileges `{', '.join(bad) or '(none)'}` are not allowed",
                hint=f"use some of {', '.join(sorted(PRIVILEGES))}",
            )
        tables = tuple(dict.fromkeys(self.tables))
        if not tables:
            raise InvalidInput("a grant needs at least one table")
        for table in tables:
            _split_table(table)
        object.__setattr__(self, "privileges", privs)
        object.__setattr__(self, "tables", tables)


@dataclass(frozen=True, slots=True)
class PostgresTarget:
    """One database leases are minted in. ``admin_url`` (a libpq URL) is kept out of ``repr``."""

    name: str
    admin_url: str = field(repr=False)
    templates: Mapping[str, tuple[Grant, ...]]
    connect_host: str | None = None
    connect_port: int | None = None
    connection_limit: int = 5

    def __post_init__(self) -> None:
        _name(self.name, "target name")
        try:
            conninfo_to_dict(self.admin_url)
        except psycopg.Error:
            # The driver's message may quote the URL, password included: say nothing of it.
            raise InvalidInput(f"admin url of postgres target `{self.name}` is invalid") from None
        limit = self.connection_limit
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidInput("connection_limit must be a positive integer")
        templates = dict(self.templates)
        for key, grants in templates.items():
            _name(key, "template name")
            if not grants or not all(isinstance(g, Grant) for g in grants):
                raise InvalidInput(f"template `{key}` needs one or more grants")
        object.__setattr__(self, "templates", MappingProxyType(templates))

    def admin_secret(self) -> str:
        """The admin password in ``admin_url`` ("" if none): scrubbed from error details."""
        return str(conninfo_to_dict(self.admin_url).get("password") or "")


class _AdminLink:
    """One admin connection to a target, opened lazily, reopened when it breaks; one user at a
    time (the lock), so backend calls are thread-safe."""

    def __init__(self, target: PostgresTarget, connect_timeout: int) -> None:
        self.target = target
        self._timeout = connect_timeout
        self._lock = threading.Lock()
        self._conn: Conn | None = None

    def run(self, op: Callable[[Conn, bool], T], doing: str) -> T:
        """``op(conn, retried)``; once more on a fresh connection if the first one broke."""
        with self._lock:
            for retried in (False, True):
                conn = self._connection()
                try:
                    return op(conn, retried)
                except psycopg.OperationalError as e:
                    if retried or not (conn.broken or conn.closed):
                        raise self._error(doing, e) from None
                    self._drop()
                except psycopg.Error as e:
                    raise self._error(doing, e) from None
            raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _connection(self) -> Conn:
        if self._conn is not None and not (self._conn.closed or self._conn.broken):
            return self._conn
        self._drop()
        params = conninfo_to_dict(self.target.admin_url)
        defaults: dict[str, Any] = {
            "application_name": "tribune-credentials",
            "connect_timeout": self._timeout,
        }
        extra = {k: v for k, v in defaults.items() if k not in params}
        try:
            self._conn = psycopg.connect(self.target.admin_url, autocommit=True, **extra)
        except psycopg.Error as e:
            raise self._error("reach", e) from None
        return self._conn

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _error(self, doing: str, e: psycopg.Error) -> CredentialBackendError:
        err = CredentialBackendError(f"postgres target `{self.target.name}` failed to {doing}")
        lines = str(e).strip().splitlines()  # later lines may quote the statement
        detail = f"{type(e).__name__}: {lines[0] if lines else ''}"
        secret = self.target.admin_secret()
        err.detail = detail.replace(secret, "***") if secret else detail
        return err


class PostgresRoleBackend:
    """Credential backend minting a PostgreSQL role per lease. Scope: ``{"target", "template"}``."""

    name = "postgres"

    def __init__(self, targets: Mapping[str, PostgresTarget], *, connect_timeout: int = 3) -> None:
        for key, target in targets.items():
            if key != target.name:
                raise InvalidInput(f"postgres target `{target.name}` is listed as `{key}`")
        self._targets = dict(targets)
        self._links = {key: _AdminLink(t, connect_timeout) for key, t in targets.items()}

    def __repr__(self) -> str:
        return f"PostgresRoleBackend(targets={sorted(self._targets)!r})"

    def close(self) -> None:
        """Close the admin connections (they reopen on next use)."""
        for link in self._links.values():
            link.close()

    def handle_for(self, lease_id: str, scope: dict[str, Any]) -> str:
        suffix = lease_id.replace("-", "").lower()
        # INVARIANT: role names are tribune_[a-z0-9_]+, so revoke can never name another role.
        if (
            not suffix
            or len(ROLE_PREFIX + suffix) > _MAX_NAME_BYTES
            or not all(c.isascii() and (c.isalnum() or c == "_") for c in suffix)
        ):
            raise InvalidInput(f"lease id `{lease_id}` cannot name a postgres role")
        return ROLE_PREFIX + suffix

    def check_scope(self, scope: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(scope, dict):
            raise InvalidInput("postgres scope must be an object")
        extra = sorted(str(k) for k in own_scope(scope) if k not in _SCOPE_KEYS)
        if extra:
            raise InvalidInput(f"unexpected postgres scope keys `{', '.join(extra)}`")
        target, template = scope.get("target"), scope.get("template")
        if not isinstance(target, str) or not isinstance(template, str):
            raise InvalidInput("postgres scope needs `target` and `template` strings")
        if target not in self._targets:
            raise InvalidInput(f"unknown postgres target `{target}`")
        if template not in self._targets[target].templates:
            raise InvalidInput(f"unknown template `{template}` for postgres target `{target}`")
        return {"target": target, "template": template}

    def issue(self, lease: Lease) -> dict[str, Any]:
        scope = self.check_scope(lease.scope)
        target = self._targets[scope["target"]]
        grants = target.templates[scope["template"]]
        role = self._role(lease)
        password = secrets.token_urlsafe(32)
        until = _until(lease)

        def op(conn: Conn, retried: bool) -> tuple[str, int, str]:
            verifier = sql.Literal(
                conn.pgconn.encrypt_password(
                    password.encode(), role.encode(), b"scram-sha-256"
                ).decode()
            )
            create = _create_role(role, verifier, until, target.connection_limit, conn, grants)
            try:
                conn.execute(create)
            except pg_errors.DuplicateObject:
                if not retried:
                    raise
                # The first try committed before its connection broke: set a password we know.
                conn.execute(
                    sql.SQL("ALTER ROLE {} PASSWORD {} VALID UNTIL {}").format(
                        sql.Identifier(role), verifier, until
                    )
                )
            return conn.info.host, conn.info.port, conn.info.dbname

        host, port, dbname = self._links[target.name].run(op, f"create role `{role}`")
        host = target.connect_host or host
        port = target.connect_port or port
        return {
            "username": role,
            "password": password,
            "host": host,
            "port": port,
            "dbname": dbname,
            "dsn": _url(role, password, host, port, dbname),
            "expires_at": lease.expires_at.isoformat(),
        }

    def renew(self, lease: Lease) -> dict[str, Any] | None:
        link = self._link(lease)
        role = self._role(lease)
        alter = sql.SQL("ALTER ROLE {} VALID UNTIL {}").format(sql.Identifier(role), _until(lease))
        link.run(lambda conn, _: conn.execute(alter), f"renew role `{role}`")
        return None

    def revoke(self, lease: Lease) -> None:
        link = self._link(lease)
        role = self._role(lease)
        ident = sql.Identifier(role)

        def op(conn: Conn, _: bool) -> None:
            try:
                # Autocommitted on its own, so no new session can start from here on.
                conn.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(ident))
            except pg_errors.UndefinedObject:
                return  # never issued, or already revoked
            # Signal its sessions now; wait for them after the drop (pg_terminate_backend's own
            # wait polls every 100 ms, which would dominate a kill switch's time).
            found = conn.execute(
                "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (role,),
            )
            signalled = [pid for pid, ok in found if ok]
            # One implicit transaction: the role's objects and grants go with it. DROP OWNED
            # needs the role's privileges; a CREATEROLE admin may grant itself the role.
            drop = sql.SQL("GRANT {0} TO CURRENT_USER; DROP OWNED BY {0}; DROP ROLE IF EXISTS {0}")
            with contextlib.suppress(pg_errors.UndefinedObject):  # a concurrent revoke won
                conn.execute(drop.format(ident))
            _wait_gone(conn, signalled)

        link.run(op, f"revoke role `{role}`")

    def _role(self, lease: Lease) -> str:
        role = self.handle_for(lease.id, lease.scope)
        if lease.handle and lease.handle != role:
            raise InvalidInput(f"lease `{lease.id}` handle does not match its role")
        return role

    def _link(self, lease: Lease) -> _AdminLink:
        target = lease.scope.get("target") if isinstance(lease.scope, dict) else None
        link = self._links.get(target) if isinstance(target, str) else None
        if link is None:
            raise CredentialBackendError(f"postgres target `{target}` is not configured")
        return link


def _wait_gone(conn: Conn, pids: list[int]) -> None:
    """Until the signalled sessions have exited (a bounded wait: the role is dropped already)."""
    deadline, pause = time.monotonic() + _TERMINATE_WAIT_S, 0.001
    while pids and time.monotonic() < deadline:
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
        left = conn.execute("SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,))
        pids = [pid for (pid,) in left]


def _until(lease: Lease) -> sql.Literal:
    if lease.expires_at.utcoffset() is None:
        raise InvalidInput(f"lease `{lease.id}` expiry has no time zone")
    return sql.Literal(lease.expires_at.isoformat())


def _create_role(
    role: str,
    verifier: sql.Literal,
    until: sql.Literal,
    limit: int,
    conn: Conn,
    grants: tuple[Grant, ...],
) -> sql.Composed:
    """The whole issue as one multi-statement query: one round trip, one implicit transaction
    (any failing statement undoes them all)."""
    ident = sql.Identifier(role)
    parts = [
        sql.SQL(
            "CREATE ROLE {} LOGIN NOINHERIT PASSWORD {} VALID UNTIL {} CONNECTION LIMIT {}"
        ).format(ident, verifier, until, sql.Literal(limit)),
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
            sql.Identifier(conn.info.dbname), ident
        ),
    ]
    tables = [[_split_table(t) for t in g.tables] for g in grants]
    schemas = dict.fromkeys(s for group in tables for s, _ in group)
    parts.append(
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
            sql.SQL(", ").join(sql.Identifier(s) for s in schemas), ident
        )
    )
    for grant, names in zip(grants, tables, strict=True):
        # INVARIANT: privileges are from PRIVILEGES (checked in Grant), so plain SQL is safe.
        parts.append(
            sql.SQL("GRANT {} ON TABLE {} TO {}").format(
                sql.SQL(", ").join(sql.SQL(p) for p in grant.privileges),
                sql.SQL(", ").join(sql.Identifier(s, t) for s, t in names),
                ident,
            )
        )
    return sql.SQL("; ").join(parts)


def _url(user: str, password: str, host: str, port: int, dbname: str) -> str:
    """A libpq URL for the issued role."""

    def q(part: str) -> str:
        return quote(part, safe="")

    if host.startswith("/"):  # a socket directory
        return f"postgresql://{q(user)}:{q(password)}@:{port}/{q(dbname)}?host={q(host)}"
    netloc = f"[{host}]" if ":" in host else q(host)
    return f"postgresql://{q(user)}:{q(password)}@{netloc}:{port}/{q(dbname)}"
