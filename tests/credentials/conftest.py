"""A PostgreSQL cluster of our own that enforces passwords (SCRAM over TCP and the socket).

``pg_cluster`` (session) runs ``initdb`` as the ``postgres`` OS user in a temp dir, starts the
server on a free port on 127.0.0.1 with every statement logged (``log_path``), creates database
``app`` with ``public.invoices`` (3 rows), ``public.salaries`` and a table whose name holds a
quote and a semicolon, and stops and deletes it all at the end. Without root, ``runuser`` or
``initdb`` its tests are skipped, or fail when the ``CI`` environment variable is set.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import psycopg
import pytest
from psycopg import sql

WEIRD_TABLE = 'odd"; DROP TABLE public.salaries; --'


@dataclass(frozen=True)
class Cluster:
    host: str
    port: int
    superuser_password: str
    log_path: Path

    def url(self, user: str = "postgres", password: str | None = None, db: str = "app") -> str:
        pw = self.superuser_password if password is None else password
        return f"postgresql://{user}:{pw}@{self.host}:{self.port}/{db}"


def _unavailable(why: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"a private postgresql cluster is required in CI: {why}")
    pytest.skip(why)


def _bin_dir() -> Path | None:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _as_postgres(*cmd: str | Path) -> None:
    subprocess.run(
        ["runuser", "-u", "postgres", "--", *map(str, cmd)],
        check=True,
        capture_output=True,
        timeout=60,
    )


def _seed(cluster: Cluster) -> None:
    with psycopg.connect(cluster.url(db="postgres"), autocommit=True) as conn:
        conn.execute("CREATE DATABASE app")
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE public.invoices (id int PRIMARY KEY, amount numeric NOT NULL);"
            "INSERT INTO public.invoices VALUES (1, 10.5), (2, 20), (3, 30);"
            "CREATE TABLE public.salaries (id int PRIMARY KEY, amount numeric NOT NULL);"
            "INSERT INTO public.salaries VALUES (1, 100000)"
        )
        conn.execute(
            sql.SQL("CREATE TABLE {} (id int); INSERT INTO {} VALUES (7)").format(
                sql.Identifier("public", WEIRD_TABLE), sql.Identifier("public", WEIRD_TABLE)
            )
        )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests on the private cluster carry the ``postgres`` marker."""
    for item in items:
        if "pg_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """A running private cluster (see the module docstring)."""
    bin_dir = _bin_dir()
    if os.geteuid() != 0:
        _unavailable("the private cluster needs root (to run initdb as `postgres`)")
    if bin_dir is None or shutil.which("runuser") is None:
        _unavailable("initdb (/usr/lib/postgresql/*/bin) or runuser is missing")
    try:
        owner = pwd.getpwnam("postgres")
    except KeyError:
        _unavailable("there is no `postgres` OS user")
    assert bin_dir is not None
    tmp = Path(tempfile.mkdtemp(prefix="tribune-pg-"))
    data, log = tmp / "data", tmp / "server.log"
    password = secrets.token_urlsafe(24)
    (tmp / "pwfile").write_text(password + "\n")
    for path in (tmp, tmp / "pwfile"):
        os.chown(path, owner.pw_uid, owner.pw_gid)
    port = _free_port()
    started = False
    try:
        _as_postgres(
            bin_dir / "initdb", "-D", data, "-U", "postgres", f"--pwfile={tmp / 'pwfile'}",
            "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "-E", "UTF8",
            "--locale=C", "--no-sync",
        )  # fmt: skip
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -k {tmp} -c fsync=off -c log_statement=all"
        )
        _as_postgres(bin_dir / "pg_ctl", "-D", data, "-l", log, "-w", "-o", options, "start")
        started = True
        cluster = Cluster("127.0.0.1", port, password, log)
        _seed(cluster)
        yield cluster
    except subprocess.CalledProcessError as e:
        _unavailable(f"the private cluster did not start: {e.stderr.decode()[-300:]}")
    finally:
        if started:
            _as_postgres(bin_dir / "pg_ctl", "-D", data, "-m", "immediate", "stop")
        shutil.rmtree(tmp, ignore_errors=True)
