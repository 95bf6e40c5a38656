"""PostgreSQL role leases: issue p50/p99 and the time to revoke 100 roles.

    python bench/bench_pg_leases.py                 # a private cluster (root: initdb as postgres)
    python bench/bench_pg_leases.py -n 500 --revoke 200
    python bench/bench_pg_leases.py --dsn postgresql://postgres:pw@127.0.0.1:5432/test

The private cluster is started as the tests start theirs (``tests/credentials/conftest.py``):
SCRAM passwords, 127.0.0.1, fsync off. With ``--dsn`` (an admin that may create roles) the bench
creates, and drops at the end, tables ``public.bench_lease_{a,b,c}`` there.

Measured, over one warm admin connection: the SCRAM verifier alone (hashed client-side, part of
every issue), ``issue`` with a one-table template and with a two-grant, three-table template
(interleaved call by call), ``renew``, and ``revoke`` of roles without and with an open session
(the session is terminated; the total for ``--revoke`` roles is the headline).
"""

from __future__ import annotations

import argparse
import glob
import os
import platform
import pwd
import secrets
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from tribune.core.model import Lease
from tribune.credentials.postgres import Grant, PostgresRoleBackend, PostgresTarget

TABLES = ("public.bench_lease_a", "public.bench_lease_b", "public.bench_lease_c")
TEMPLATES = {
    "one": (Grant(("SELECT",), TABLES[:1]),),
    "three": (Grant(("SELECT",), TABLES[:2]), Grant(("SELECT", "INSERT"), TABLES[2:])),
}


@contextmanager
def private_cluster() -> Iterator[str]:
    """An admin URL for a fresh cluster enforcing SCRAM passwords; deleted afterwards."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[4]))
    if os.geteuid() != 0 or not bins or shutil.which("runuser") is None:
        raise SystemExit("the private cluster needs root, runuser and initdb; or pass --dsn")
    bin_dir, owner = Path(bins[-1]), pwd.getpwnam("postgres")
    tmp = Path(tempfile.mkdtemp(prefix="tribune-pg-bench-"))
    password = secrets.token_urlsafe(24)
    (tmp / "pwfile").write_text(password + "\n")
    for path in (tmp, tmp / "pwfile"):
        os.chown(path, owner.pw_uid, owner.pw_gid)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def as_postgres(*cmd: str | Path) -> None:
        run = ["runuser", "-u", "postgres", "--", *map(str, cmd)]
        subprocess.run(run, check=True, capture_output=True, timeout=60)

    data = tmp / "data"
    started = False
    try:
        as_postgres(
            bin_dir / "initdb", "-D", data, "-U", "postgres", f"--pwfile={tmp / 'pwfile'}",
            "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "-E", "UTF8",
            "--locale=C", "--no-sync",
        )  # fmt: skip
        opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {tmp} -c fsync=off"
        as_postgres(bin_dir / "pg_ctl", "-D", data, "-l", tmp / "log", "-w", "-o", opts, "start")
        started = True
        url = f"postgresql://postgres:{password}@127.0.0.1:{port}/"
        with psycopg.connect(url + "postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE app")
        yield url + "app"
    finally:
        if started:
            as_postgres(bin_dir / "pg_ctl", "-D", data, "-m", "immediate", "stop")
        shutil.rmtree(tmp, ignore_errors=True)


def lease(template: str, ttl: timedelta = timedelta(minutes=10)) -> Lease:
    now = datetime.now(UTC)
    lease_id = str(uuid.uuid4())
    return Lease(
        id=lease_id,
        task_id="bench-task",
        agent_id="spiffe://example.org/agent/bench",
        backend="postgres",
        scope={"target": "bench", "template": template},
        issued_at=now,
        expires_at=now + ttl,
        max_expires_at=now + timedelta(hours=1),
        handle="tribune_" + lease_id.replace("-", ""),
    )


def timed_ms(op: Callable[[], object]) -> float:
    t = time.perf_counter_ns()
    op()
    return (time.perf_counter_ns() - t) / 1e6


def row(label: str, samples: list[float]) -> None:
    p99 = statistics.quantiles(samples, n=100, method="inclusive")[98]
    print(
        f"| {label:<32} | {len(samples):>5} | {statistics.median(samples):7.2f} | {p99:7.2f} "
        f"| {sum(samples) / 1000:8.3f} |"
    )


def bench(url: str, n: int, n_revoke: int, n_sessions: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for table in TABLES:
            conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (id int)")
        version = conn.execute("SHOW server_version").fetchone()
    backend = PostgresRoleBackend({"bench": PostgresTarget("bench", url, TEMPLATES)})
    link_conn = None
    issued: list[Lease] = []
    try:
        for _ in range(20):  # warm up: connection, catalog caches
            warm = lease("one")
            backend.issue(warm)
            backend.revoke(warm)
        link_conn = psycopg.connect(url)
        scram = [
            timed_ms(lambda: link_conn.pgconn.encrypt_password(b"x" * 43, b"r", b"scram-sha-256"))
            for _ in range(n)
        ]
        one: list[float] = []
        three: list[float] = []
        creds = {}
        for _ in range(n):  # interleaved call by call
            for template, out in (("one", one), ("three", three)):
                lz = lease(template)
                out.append(timed_ms(lambda lz=lz: creds.__setitem__(lz.id, backend.issue(lz))))
                issued.append(lz)
        renew = [timed_ms(lambda lz=lz: backend.renew(lz)) for lz in issued[:n]]
        sessions = []
        for lz in issued[n_revoke : n_revoke + n_sessions]:
            sessions.append(psycopg.connect(creds[lz.id]["dsn"]))
        revoke = [timed_ms(lambda lz=lz: backend.revoke(lz)) for lz in issued[:n_revoke]]
        with_session = [
            timed_ms(lambda lz=lz: backend.revoke(lz))
            for lz in issued[n_revoke : n_revoke + n_sessions]
        ]
        for s in sessions:
            s.close()
        print(f"PostgreSQL {version[0] if version else '?'}, {platform.python_version()}, "
              f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}")  # fmt: skip
        print("| operation                        |     n | p50 ms  | p99 ms  |  total s |")
        print("| -------------------------------- | ----: | ------: | ------: | -------: |")
        row("scram verifier alone", scram)
        row("issue, 1 table", one)
        row("issue, 2 grants / 3 tables", three)
        row("renew (ALTER VALID UNTIL)", renew)
        row(f"revoke {n_revoke} roles", revoke)
        if with_session:
            row(f"revoke {n_sessions}, open session each", with_session)
    finally:
        for lz in issued:
            backend.revoke(lz)  # idempotent: cleans what the timed part left
        backend.close()
        if link_conn is not None:
            link_conn.close()
        with psycopg.connect(url, autocommit=True) as conn:
            for table in TABLES:
                conn.execute(f"DROP TABLE IF EXISTS {table}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="issues per template (>= 200)")
    parser.add_argument("--revoke", type=int, default=100, help="roles revoked, timed")
    parser.add_argument("--sessions", type=int, default=20, help="roles revoked with a session")
    parser.add_argument("--dsn", help="admin url of an existing server (default: private)")
    args = parser.parse_args()
    if args.revoke + args.sessions > 2 * args.n:
        parser.error("--revoke + --sessions must not exceed 2 * -n")
    if args.dsn:
        bench(args.dsn, args.n, args.revoke, args.sessions)
        return
    with private_cluster() as url:
        bench(url, args.n, args.revoke, args.sessions)


if __name__ == "__main__":
    main()
