#!/usr/bin/env python3
"""Governed decision in process: ``Governor.decide`` with durable intent and decision records.

Interleaves, call by call, four measurements over the same request so machine speed swings hit
them alike: the governed decision on SQLite with the intent committed before deciding and
the decision after (the default), the same with both committed together (``group_commit``),
the decision alone
(``CompiledPolicy.decide`` on the request the governor builds), and a bare
``cedarpy.is_authorized`` with pre-parsed handles. Prints p50/p99 per round and the medians.

    .venv/bin/python bench/bench_governed.py [--rounds 15] [--calls 400] [--durability normal]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from pathlib import Path

import cedarpy

import tribune
from tribune.bootstrap import init_home
from tribune.core.model import Entitlements, ExtractorSpec, RiskFacts, Tool


def pg_schema_url(dsn: str) -> str:
    """A fresh, empty schema on the PostgreSQL server at ``dsn``, as a store URL."""
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    schema = f"tribune_bench_{uuid.uuid4().hex[:12]}"
    engine = create_engine(dsn.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    url = make_url(dsn).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


def drop_schemas(dsn: str, urls: tuple[str, ...]) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    engine = create_engine(dsn.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        for url in urls:
            schema = make_url(url).query["options"].removeprefix("-csearch_path=")
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


def setup(  # type: ignore[no-untyped-def]
    home: Path, durability: str, group_commit: bool = False, store_url: str = ""
):
    home.mkdir(parents=True)
    url = f'url = "{store_url}"\n' if store_url else ""
    (home / "tribune.toml").write_text(
        f'[store]\n{url}durability = "{durability}"\n'
        f"[audit]\ngroup_commit = {str(group_commit).lower()}\n"
    )
    init_home(home)  # keeps this tribune.toml; adds the pack, keys and the active policy
    tr = tribune.open(home)
    tr.registry.add_group("support")
    tr.registry.add_user("alice", email="alice@example.com", groups=("support",))
    tr.registry.register_tool(
        Tool(
            "email.send",
            risk=RiskFacts(read_only=False, destructive=False, open_world=True),
            groups=("email",),
            extractors=(ExtractorSpec("email", "/to/*", role="recipient", target=True),),
        )
    )
    tr.registry.register_agent(
        "bench-bot",
        owner="user:alice",
        purpose="benchmark",
        environment="development",
        entitlements=Entitlements(
            tools=frozenset({"email.send"}), environments=frozenset({"development"})
        ),
    )
    task = tr.start_task(
        "bench-bot",
        purpose="send one mail",
        tools=["email.send"],
        targets=["customer@client.example"],
        ttl=86400,
    )
    return tr, task


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--calls", type=int, default=400)
    ap.add_argument("--durability", choices=("normal", "full"), default="normal")
    ap.add_argument("--pg", metavar="DSN", help="run both homes on PostgreSQL (fresh schemas)")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="tribune-bench-"))
    url_a = pg_schema_url(args.pg) if args.pg else ""
    url_b = pg_schema_url(args.pg) if args.pg else ""
    tr, task = setup(root / "strict", args.durability, store_url=url_a)
    tr_group, task_group = setup(root / "group", args.durability, True, store_url=url_b)
    gov = tr.governor
    arguments = {"to": ["customer@client.example"], "subject": "hi", "body": "hello there"}

    # The request the governor builds, captured once for the engine-only measurements.
    captured = {}
    compiled = tr.policies.active()
    original = compiled.decide

    def spy(req):  # type: ignore[no-untyped-def]
        captured["req"] = req
        return original(req)

    compiled.decide = spy  # type: ignore[method-assign]
    verdict = gov.decide(task.id, "email.send", arguments)
    compiled.decide = original  # type: ignore[method-assign]
    assert verdict.allowed, verdict.decision
    req = captured["req"]
    from tribune.policy.entities import entities_json

    policies_text = "\n".join(
        text
        for name, text in sorted(tr.store.active_policy_version().files.items())
        if name.endswith(".cedar")
    )
    ps = cedarpy.PolicySet.from_str(policies_text)
    ents = cedarpy.Entities.from_json_str(entities_json(req))
    cedar_req = {
        "principal": {"type": "Agent", "id": req.agent.id},
        "action": {"type": "Action", "id": "call"},
        "resource": {"type": "Tool", "id": req.tool.name},
        "context": req.context,
    }
    assert cedarpy.is_authorized(cedar_req, ps, ents).allowed

    strict, group = "governed, intent then decision", "governed, group commit"
    rows: dict[str, list[tuple[float, float]]] = {
        strict: [],
        group: [],
        "decide alone": [],
        "bare cedarpy": [],
    }
    gov_group = tr_group.governor
    for _ in range(200):
        gov.decide(task.id, "email.send", arguments)
        gov_group.decide(task_group.id, "email.send", arguments)
    gc.disable()
    pc = time.perf_counter_ns
    for _ in range(args.rounds):
        samples: dict[str, list[float]] = {k: [] for k in rows}
        for _ in range(args.calls):
            t0 = pc()
            gov.decide(task.id, "email.send", arguments)
            t1 = pc()
            compiled.decide(req)
            t2 = pc()
            cedarpy.is_authorized(cedar_req, ps, ents)
            t3 = pc()
            gov_group.decide(task_group.id, "email.send", arguments)
            t4 = pc()
            samples[strict].append((t1 - t0) / 1000)
            samples["decide alone"].append((t2 - t1) / 1000)
            samples["bare cedarpy"].append((t3 - t2) / 1000)
            samples[group].append((t4 - t3) / 1000)
        for k, v in samples.items():
            rows[k].append((pct(v, 0.5), pct(v, 0.99)))
        gc.collect()
    gc.enable()
    print(f"rounds={args.rounds} calls/round={args.calls} durability={args.durability}")
    print(f"{'measurement':40} {'p50 us':>9} {'p99 us':>9}   (medians over rounds)")
    med = {}
    for k, v in rows.items():
        p50 = statistics.median(x[0] for x in v)
        p99 = statistics.median(x[1] for x in v)
        med[k] = p50
        print(f"{k:40} {p50:9.1f} {p99:9.1f}")
    print(f"decide alone / bare cedarpy at p50: {med['decide alone'] / med['bare cedarpy']:.2f}x")
    print(f"group commit / strict at p50: {med[group] / med[strict]:.2f}x")
    print(f"audit records written: {tr.store.count() + tr_group.store.count():,}")
    tr.close()
    tr_group.close()
    if args.pg:
        drop_schemas(args.pg, (url_a, url_b))


if __name__ == "__main__":
    main()
