"""PostgresRoleBackend against a private cluster that enforces passwords: real logins over TCP."""

from __future__ import annotations

import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from tribune.core.model import Lease
from tribune.credentials.postgres import (
    CredentialBackendError,
    Grant,
    PostgresRoleBackend,
    PostgresTarget,
)
from tribune.errors import InvalidInput

from .conftest import WEIRD_TABLE, Cluster

TEMPLATES = {
    "reader": (Grant(("SELECT",), ("public.invoices",)),),
    "weird": (Grant(("select",), (f"public.{WEIRD_TABLE}",)),),
    "missing": (Grant(("SELECT",), ('public.nope"; DROP TABLE public.salaries; --',)),),
}


@pytest.fixture
def backend(pg_cluster: Cluster) -> Iterator[PostgresRoleBackend]:
    b = PostgresRoleBackend({"app": PostgresTarget("app", pg_cluster.url(), TEMPLATES)})
    yield b
    b.close()


@pytest.fixture
def offline() -> PostgresRoleBackend:
    """A backend whose target is never reached: for what needs no server."""
    url = "postgresql://postgres:pw@127.0.0.1:1/app"
    return PostgresRoleBackend({"app": PostgresTarget("app", url, TEMPLATES)})


def lease(
    b: PostgresRoleBackend, template: str = "reader", ttl: float = 300, target: str = "app"
) -> Lease:
    now = datetime.now(UTC)
    lease_id = str(uuid.uuid4())
    scope = {"target": target, "template": template}
    return Lease(
        id=lease_id,
        task_id="task-1",
        agent_id="spiffe://example.org/agent/reporter",
        backend="postgres",
        scope=scope,
        issued_at=now,
        expires_at=now + timedelta(seconds=ttl),
        max_expires_at=now + timedelta(hours=1),
        handle=b.handle_for(lease_id, scope),
    )


def login(cred: dict[str, Any], password: str | None = None) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host=cred["host"],
        port=cred["port"],
        dbname=cred["dbname"],
        user=cred["username"],
        password=cred["password"] if password is None else password,
        connect_timeout=5,
    )


def admin_query(cluster: Cluster, query: str, params: tuple[Any, ...] = ()) -> list[Any]:
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        cur = conn.execute(query, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def role_exists(cluster: Cluster, role: str) -> bool:
    return bool(admin_query(cluster, "SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)))


def test_issued_role_reads_invoices_but_not_salaries(
    backend: PostgresRoleBackend, pg_cluster: Cluster
) -> None:
    one = lease(backend)
    cred = backend.issue(one)
    assert cred["username"] == one.handle == "tribune_" + one.id.replace("-", "")
    assert (cred["host"], cred["port"], cred["dbname"]) == ("127.0.0.1", pg_cluster.port, "app")
    assert cred["expires_at"] == one.expires_at.isoformat()
    assert len(cred["password"]) >= 43
    with psycopg.connect(cred["dsn"], connect_timeout=5) as conn:
        assert conn.execute("SELECT count(*) FROM public.invoices").fetchone() == (3,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM public.salaries")
    with login(cred) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("INSERT INTO public.invoices VALUES (9, 1)")
    backend.revoke(one)


def test_wrong_password_fails(backend: PostgresRoleBackend) -> None:
    one = lease(backend)
    cred = backend.issue(one)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        login(cred, password=cred["password"][:-1] + ("A" if cred["password"][-1] != "A" else "B"))
    backend.revoke(one)


def test_revoke_ends_sessions_refuses_logins_and_drops_the_role(
    backend: PostgresRoleBackend, pg_cluster: Cluster
) -> None:
    one = lease(backend)
    cred = backend.issue(one)
    session = login(cred)
    assert session.execute("SELECT 1").fetchone() == (1,)
    backend.revoke(one)
    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT 1")
    session.close()
    with pytest.raises(psycopg.OperationalError):
        login(cred)
    assert not role_exists(pg_cluster, one.handle)
    backend.revoke(one)  # idempotent
    with pytest.raises(CredentialBackendError, match="failed to renew"):
        backend.renew(one)  # nothing left to renew
    backend.revoke(lease(backend))  # never issued: fine too


def test_valid_until_is_enforced_and_renew_moves_it(
    backend: PostgresRoleBackend, pg_cluster: Cluster
) -> None:
    lapsing, renewed = lease(backend, ttl=2), lease(backend, ttl=2)
    lapsing_cred, renewed_cred = backend.issue(lapsing), backend.issue(renewed)
    login(lapsing_cred).close()
    later = datetime.now(UTC) + timedelta(minutes=5)
    assert backend.renew(Lease(**{**_fields(renewed), "expires_at": later})) is None
    time.sleep(max(0.0, (lapsing.expires_at - datetime.now(UTC)).total_seconds()) + 0.5)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        login(lapsing_cred)
    login(renewed_cred).close()  # renewed before its expiry: still logs in
    backend.renew(Lease(**{**_fields(lapsing), "expires_at": later}))
    login(lapsing_cred).close()  # VALID UNTIL moved: logs in again
    backend.revoke(lapsing)
    backend.revoke(renewed)


def _fields(one: Lease) -> dict[str, Any]:
    return {name: getattr(one, name) for name in Lease.__slots__}  # type: ignore[attr-defined]


def test_connection_limit_is_enforced(pg_cluster: Cluster) -> None:
    b = PostgresRoleBackend(
        {"app": PostgresTarget("app", pg_cluster.url(), TEMPLATES, connection_limit=1)}
    )
    one = lease(b)
    cred = b.issue(one)
    with login(cred), pytest.raises(psycopg.OperationalError, match="too many connections"):
        login(cred)
    b.revoke(one)
    b.close()


def test_connect_host_and_port_override_what_is_handed_out(pg_cluster: Cluster) -> None:
    target = PostgresTarget(
        "app", pg_cluster.url(), TEMPLATES, connect_host="db.internal", connect_port=6432
    )
    b = PostgresRoleBackend({"app": target})
    one = lease(b)
    cred = b.issue(one)
    assert (cred["host"], cred["port"]) == ("db.internal", 6432)
    assert cred["dsn"].startswith(f"postgresql://{one.handle}:")
    assert cred["dsn"].endswith("@db.internal:6432/app")
    b.revoke(one)
    b.close()


@pytest.mark.parametrize(
    ("scope", "message"),
    [
        ({"target": "nope", "template": "reader"}, "unknown postgres target `nope`"),
        ({"target": "app", "template": "nope"}, "unknown template `nope`"),
        ({"target": "app", "template": "reader", "role": "postgres"}, "unexpected .* `role`"),
        ({"target": "app"}, "needs `target` and `template`"),
        ({"target": "app", "template": 1}, "needs `target` and `template`"),
    ],
)
def test_check_scope_refuses(offline: PostgresRoleBackend, scope: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        offline.check_scope(scope)


def test_check_scope_returns_the_normal_form(offline: PostgresRoleBackend) -> None:
    scope = {"template": "reader", "target": "app"}
    assert offline.check_scope(scope) == {"target": "app", "template": "reader"}


@pytest.mark.parametrize(
    ("privileges", "tables"),
    [
        (("ALL",), ("public.invoices",)),
        (("SELECT; DROP TABLE public.salaries",), ("public.invoices",)),
        (("CONNECT",), ("public.invoices",)),
        ((), ("public.invoices",)),
        (("SELECT",), ()),
        (("SELECT",), ("invoices",)),
        (("SELECT",), ("public.",)),
        (("SELECT",), ("public." + "x" * 64,)),
        (("SELECT",), ("public.a\x00b",)),
    ],
)
def test_grant_refuses_bad_privileges_and_tables(privileges: Any, tables: Any) -> None:
    with pytest.raises(InvalidInput):
        Grant(privileges, tables)


def test_grant_normalises_privileges() -> None:
    grant = Grant(("select", "Insert", "SELECT"), ("public.invoices",))
    assert grant.privileges == ("SELECT", "INSERT")


def test_handle_for_names_a_safe_role(offline: PostgresRoleBackend) -> None:
    lease_id = "0190A3B4-C5D6-7E8F-9012-3456789ABCDE"
    assert offline.handle_for(lease_id, {}) == "tribune_0190a3b4c5d67e8f90123456789abcde"
    for bad in ['x"; DROP ROLE postgres; --', "a b", "é", "x" * 56, "", "--"]:
        with pytest.raises(InvalidInput):
            offline.handle_for(bad, {})
    one = lease(offline)
    for call in (offline.issue, offline.renew, offline.revoke):
        with pytest.raises(InvalidInput, match="handle"):
            call(Lease(**{**_fields(one), "handle": "postgres"}))
    naive = datetime.now() + timedelta(minutes=5)
    for call in (offline.issue, offline.renew):
        with pytest.raises(InvalidInput, match="time zone"):
            call(Lease(**{**_fields(one), "expires_at": naive}))


def test_hostile_table_names_are_quoted_never_injected(
    backend: PostgresRoleBackend, pg_cluster: Cluster
) -> None:
    # A real table named `odd"; DROP TABLE public.salaries; --`: granted and readable as itself.
    one = lease(backend, template="weird")
    with login(backend.issue(one)) as conn:
        query = 'SELECT id FROM public."odd""; DROP TABLE public.salaries; --"'
        assert conn.execute(query).fetchone() == (7,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM public.invoices")
    backend.revoke(one)
    # A hostile name that is no table: the grant fails, the whole issue is undone.
    bad = lease(backend, template="missing")
    with pytest.raises(CredentialBackendError) as caught:
        backend.issue(bad)
    assert caught.value.code == "credential_backend_unavailable"
    assert "UndefinedTable" in caught.value.detail
    assert not role_exists(pg_cluster, bad.handle)
    assert admin_query(pg_cluster, "SELECT count(*) FROM public.salaries") == [(1,)]


def test_plain_password_never_reaches_the_server(
    backend: PostgresRoleBackend, pg_cluster: Cluster
) -> None:
    one = lease(backend)
    cred = backend.issue(one)
    backend.revoke(one)
    server_log = pg_cluster.log_path.read_text()
    assert f'CREATE ROLE "{one.handle}"' in server_log  # every statement is logged
    assert cred["password"] not in server_log
    assert "SCRAM-SHA-256$" in server_log  # only the verifier went over the wire


def test_no_secret_in_reprs_or_errors(backend: PostgresRoleBackend, pg_cluster: Cluster) -> None:
    one = lease(backend)
    cred = backend.issue(one)
    for thing in (one, backend, backend._targets["app"]):
        assert cred["password"] not in repr(thing)
        assert pg_cluster.superuser_password not in repr(thing)
    backend.revoke(one)

    admin_pw = "admin-secret-9f8e7d"
    with socket_closed_port() as port:
        url = f"postgresql://postgres:{admin_pw}@127.0.0.1:{port}/app"
        target = PostgresTarget("down", url, TEMPLATES)
        down = PostgresRoleBackend({"down": target})
        with pytest.raises(CredentialBackendError) as caught:
            down.issue(lease(down, target="down"))
    err = caught.value
    assert err.code == "credential_backend_unavailable"
    assert "OperationalError" in err.detail
    shown = [
        str(err),
        repr(err),
        err.detail,
        repr(err.to_dict()),
        "".join(traceback.format_exception(err)),
        repr(target),
        repr(down),
    ]
    assert not any(admin_pw in text for text in shown)
    with pytest.raises(InvalidInput) as bad_url:
        PostgresTarget("bad", f"postgresql://u:{admin_pw}@h/db?bogus=1", TEMPLATES)
    assert admin_pw not in "".join(traceback.format_exception(bad_url.value))


class socket_closed_port:
    """A port on 127.0.0.1 that nothing listens on (bound, never listening)."""

    def __enter__(self) -> int:
        import socket

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        port: int = self._sock.getsockname()[1]
        return port

    def __exit__(self, *exc: object) -> None:
        self._sock.close()


def test_admin_connection_is_reopened_after_it_dies(
    backend: PostgresRoleBackend, pg_cluster: Cluster
) -> None:
    first = lease(backend)
    backend.issue(first)
    killed = admin_query(
        pg_cluster,
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
        " WHERE application_name = 'tribune-credentials' AND pid <> pg_backend_pid()",
    )
    assert killed and all(row == (True,) for row in killed)
    second = lease(backend)
    with login(backend.issue(second)) as conn:
        assert conn.execute("SELECT count(*) FROM public.invoices").fetchone() == (3,)
    backend.revoke(first)
    backend.revoke(second)


def test_unknown_target_at_revoke_is_an_error(offline: PostgresRoleBackend) -> None:
    one = lease(offline)
    with pytest.raises(CredentialBackendError, match="not configured"):
        offline.revoke(Lease(**{**_fields(one), "scope": {"target": "gone"}}))


def test_concurrent_issues_and_revokes(backend: PostgresRoleBackend, pg_cluster: Cluster) -> None:
    leases = [lease(backend) for _ in range(8)]
    creds: dict[str, dict[str, Any]] = {}
    failures: list[BaseException] = []

    def work(one: Lease) -> None:
        try:
            creds[one.id] = backend.issue(one)
            login(creds[one.id]).close()
            backend.revoke(one)
        except BaseException as e:
            failures.append(e)

    threads = [threading.Thread(target=work, args=(one,)) for one in leases]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures
    assert len(creds) == 8
    assert not any(role_exists(pg_cluster, one.handle) for one in leases)


def test_issuing_twice_for_one_lease_fails_closed(backend: PostgresRoleBackend) -> None:
    one = lease(backend)
    cred = backend.issue(one)
    with pytest.raises(CredentialBackendError, match="failed to create role") as caught:
        backend.issue(one)
    assert "DuplicateObject" in caught.value.detail
    login(cred).close()  # the first credential is untouched
    backend.revoke(one)


def test_a_least_privileged_admin_suffices(pg_cluster: Cluster) -> None:
    admin_pw = "least-admin-pw"
    admin_query(
        pg_cluster,
        "DROP ROLE IF EXISTS lease_admin;"
        f"CREATE ROLE lease_admin LOGIN CREATEROLE PASSWORD '{admin_pw}';"
        "GRANT pg_signal_backend TO lease_admin;"
        "GRANT CONNECT ON DATABASE app TO lease_admin WITH GRANT OPTION;"
        "GRANT USAGE ON SCHEMA public TO lease_admin WITH GRANT OPTION;"
        "GRANT SELECT ON public.invoices TO lease_admin WITH GRANT OPTION",
    )
    b = PostgresRoleBackend(
        {"app": PostgresTarget("app", pg_cluster.url("lease_admin", admin_pw), TEMPLATES)}
    )
    one = lease(b)
    cred = b.issue(one)
    session = login(cred)
    assert session.execute("SELECT count(*) FROM public.invoices").fetchone() == (3,)
    b.revoke(one)
    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT 1")
    assert not role_exists(pg_cluster, one.handle)
    b.close()
