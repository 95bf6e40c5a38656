"""Audit append cost on the store: p50/p99 per append, and how fast records stream back.

    python bench/store_append.py                 # SQLite in a temp dir, 5,000 appends
    python bench/store_append.py -n 20000
    python bench/store_append.py --url postgresql://postgres@127.0.0.1:5432/test  # an EMPTY db

Prints, per backend: ``link`` alone (the pure-Python RFC 8785 canonicalisation and SHA-256 the
core does for every record), a full ``append`` (head read + link + insert + commit), and the
store's own share (append - link, at p50). Each append is a durable commit.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from tribune.core.audit import GENESIS, link
from tribune.core.model import RecordKind
from tribune.store import open_store

BODY: dict[str, object] = {
    "tool": "mail.send",
    "args_digest": "sha256:" + "a" * 64,
    "effect": "allow",
    "policy_ids": ["permit-mail", "guard-external"],
    "policy_version": "v17",
}
IDS = {
    "action_id": "01J0000000000000000000ACT",
    "task_id": "01J00000000000000000TASK",
    "agent_id": "spiffe://example.org/agent/mailer",
}


def timed(n: int, op: Callable[[int], object]) -> list[float]:
    """Microseconds per call of ``op(i)`` for i in range(n)."""
    out = []
    for i in range(n):
        t = time.perf_counter_ns()
        op(i)
        out.append((time.perf_counter_ns() - t) / 1000)
    return out


def pct(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[int(q) - 1]


def report(label: str, samples: list[float]) -> float:
    p50 = statistics.median(samples)
    print(f"{label:<34} p50 {p50:8.1f} us   p99 {pct(samples, 99):8.1f} us   (n={len(samples)})")
    return p50


def bench(url: str, durability: str, n: int) -> None:
    store = open_store(url, durability=durability)
    ts = datetime.now(UTC)
    timed(200, lambda i: store.append(RecordKind.DECISION, ts, BODY, **IDS))  # warm up
    link_p50 = report(
        "link alone", timed(n, lambda i: link(i + 1, GENESIS, RecordKind.DECISION, ts, BODY, **IDS))
    )
    append_p50 = report(
        f"append ({durability})",
        timed(n, lambda i: store.append(RecordKind.DECISION, ts, BODY, **IDS)),
    )
    print(f"{'store share (append - link, p50)':<34}     {append_p50 - link_p50:8.1f} us")
    total = store.count()
    t = time.perf_counter()
    read = sum(1 for _ in store.records())
    rate = read / (time.perf_counter() - t)
    print(f"{'records() stream':<34} {rate:12,.0f} records/s ({read} of {total})")
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5000, help="appends to time")
    parser.add_argument("--url", help="store url (default: SQLite and memory in a temp dir)")
    args = parser.parse_args()
    if args.url:
        print(f"== {args.url.split('@')[-1]}")
        bench(args.url, "normal", args.n)
        return
    with tempfile.TemporaryDirectory() as tmp:
        for durability in ("normal", "full"):
            print(f"== sqlite, durability={durability}")
            bench(str(Path(tmp) / f"{durability}.db"), durability, args.n)
    print("== memory")
    bench("memory://", "normal", args.n)


if __name__ == "__main__":
    main()
