#!/usr/bin/env python3
"""Identity and credential costs, in process, interleaved round by round, medians:

- task-token verification: the signature alone (header checks, EdDSA), and the whole check
  (claims, then one read of task, agent and revocation list) on SQLite; each on a token seen
  for the first time and on one seen before (its verified signature is remembered; the claims
  and the read are done every time);
- an agent's signed assertion through ``IdentityService.authenticate`` (one write: its jti);
- a token lease issued through ``LeaseService`` (SQLite);
- with ``--pg-admin URL``: a PostgreSQL role lease issued through the service, and revoking a
  task that holds 100 of them (the issue's targets: p50 <= 30 ms, <= 1 s).

    .venv/bin/python bench/bench_identity.py [--rounds 10] [--per-round 300]
        [--pg-admin postgresql://postgres@127.0.0.1:5432/test]

The PostgreSQL admin URL must name a role that may CREATE ROLE (the local test cluster's
`postgres` does); every role made is dropped again.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tribune.bootstrap import Tribune, init_home, open_tribune
from tribune.core.model import Entitlements, RiskFacts, Task, Tool
from tribune.crypto.assertions import sign_assertion

CONFIG = """
[credentials.crm-api]
backend = "token"
audience = "https://crm.example.com"
tools = ["crm.read"]
"""
PG_SOURCE = """
[credentials.reports-db]
backend = "postgres"
url = "{url}"
grants = [{{ privileges = ["SELECT"], tables = ["public.bench_invoices"] }}]
tools = ["crm.read"]
"""


def setup(pg_admin: str | None) -> tuple[Tribune, Task]:
    home = Path(tempfile.mkdtemp(prefix="tribune-bench-id-")) / "home"
    init_home(home)
    extra = CONFIG + (PG_SOURCE.format(url=pg_admin) if pg_admin else "")
    with (home / "tribune.toml").open("a", encoding="utf-8") as handle:
        handle.write(extra)
    tr = open_tribune(home)
    tr.registry.add_user("alice", email="alice@example.com")
    tr.registry.register_tool(
        Tool("crm.read", risk=RiskFacts(read_only=True, destructive=False, open_world=False))
    )
    tr.registry.register_agent(
        "bench",
        owner="user:alice",
        purpose="benchmarks",
        environment="development",
        entitlements=Entitlements(
            tools=frozenset({"crm.read"}), environments=frozenset({"development"})
        ),
    )
    task = tr.start_task("bench", purpose="bench", tools=["crm.read"], ttl=3600)
    return tr, task


def timed(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e6)
    return out


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--per-round", type=int, default=300)
    ap.add_argument("--pg-admin", default=None)
    args = ap.parse_args()
    tr, task = setup(args.pg_admin)
    agent = tr.registry.resolve_agent("bench")
    token = tr.tokens.issue(task, agent, str(agent.owner))
    key, private_pem = tr.identity.create_key("bench")

    def assertion() -> None:
        signed = sign_assertion(private_pem, agent.id, tr.tokens.audience, kid=key.kid)
        tr.identity.authenticate(signed)

    def sign_only() -> None:
        sign_assertion(private_pem, agent.id, tr.tokens.audience, kid=key.kid)

    remembered = tr.token_keys._verified

    def cold(check: Callable[[str], object]) -> Callable[[], object]:
        """The check on a token never seen before (the verified-signature memory emptied)."""

        def run() -> object:
            remembered.clear()
            return check(token)

        return run

    cases: dict[str, Callable[[], object]] = {
        "task token: signature, first sight": cold(tr.token_keys.verified_claims),
        "task token: full verify, first sight": cold(tr.tokens.verify),
        "task token: signature, seen before": lambda: tr.token_keys.verified_claims(token),
        "task token: full verify, seen before": lambda: tr.tokens.verify(token),
        "authenticate(task token)": lambda: tr.identity.authenticate(token),
        "assertion: agent signs (client side)": sign_only,
        "assertion: sign + authenticate": assertion,
        "token lease issue": lambda: tr.leases.issue(task.id, "crm-api"),
    }
    for fn in cases.values():  # warm up
        for _ in range(50):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    gc.disable()
    for _ in range(args.rounds):
        for name, fn in cases.items():
            samples[name].extend(timed(fn, args.per_round))
    gc.enable()
    print(f"rounds {args.rounds} x {args.per_round}, SQLite, microseconds")
    print(f"{'case':40} {'p50':>9} {'p99':>9}")
    for name, values in samples.items():
        print(f"{name:40} {statistics.median(values):9.1f} {quantile(values, 0.99):9.1f}")

    revoke_task(tr, "crm-api", 100, "token")
    if args.pg_admin:
        import psycopg

        with psycopg.connect(args.pg_admin, autocommit=True) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS public.bench_invoices (id int)")
        pg = tr.start_task("bench", purpose="pg", tools=["crm.read"], ttl=3600)
        issue = timed(lambda: tr.leases.issue(pg.id, "reports-db"), 200)
        print(
            f"{'postgres role lease issue':40} {statistics.median(issue) / 1000:8.2f}ms"
            f" {quantile(issue, 0.99) / 1000:8.2f}ms   (n=200)"
        )
        tr.tasks.end(pg.id)
        revoke_task(tr, "reports-db", 100, "postgres")
    tr.close()


def revoke_task(tr: Tribune, source: str, count: int, label: str) -> None:
    """Time ending a task that holds ``count`` leases (the end revokes them all)."""
    for _ in range(3):
        held = tr.start_task("bench", purpose="revoke", tools=["crm.read"], ttl=3600)
        for _ in range(count):
            tr.leases.issue(held.id, source)
        t0 = time.perf_counter()
        tr.tasks.end(held.id)
        took = time.perf_counter() - t0
        left = tr.leases.list(held.id, active_only=True)
        print(f"end a task with {count} {label} leases: {took * 1000:8.1f} ms (left {len(left)})")


if __name__ == "__main__":
    main()
