#!/usr/bin/env python3
"""Governed decisions per second in one process, with 1, 2 and 4 threads.

Each thread decides calls in its own task against one embedded SQLite home (durable intent and
decision records, the default pack). Rounds alternate the thread counts so machine swings hit
them alike; medians are reported. The GIL bounds Python threads; SQLite releases it while it
writes, which is what more threads can overlap.

    .venv/bin/python bench/bench_throughput.py [--rounds 5] [--calls 1500]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_governed import setup


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=1500, help="calls per round, split over threads")
    ap.add_argument("--group-commit", action="store_true")
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="tribune-tput-")) / "home"
    tr, _ = setup(home, "normal", args.group_commit)
    arguments = {"to": ["customer@client.example"], "subject": "hi", "body": "hello there"}
    counts = (1, 2, 4)
    tasks = {
        n: [
            tr.start_task(
                "bench-bot",
                purpose="throughput",
                tools=["email.send"],
                targets=["customer@client.example"],
                ttl=86400,
            ).id
            for _ in range(n)
        ]
        for n in counts
    }
    rates: dict[int, list[float]] = {n: [] for n in counts}
    for _ in range(args.rounds):
        for n in counts:
            per = args.calls // n

            def work(task_id: str, per: int = per) -> None:
                for _ in range(per):
                    tr.governor.decide(task_id, "email.send", arguments)

            threads = [threading.Thread(target=work, args=(t,)) for t in tasks[n]]
            started = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            rates[n].append(per * n / (time.perf_counter() - started))
    mode = "group commit" if args.group_commit else "intent then decision"
    print(f"rounds={args.rounds} calls/round={args.calls} ({mode})")
    base = statistics.median(rates[1])
    for n in counts:
        rate = statistics.median(rates[n])
        print(f"threads={n}  {rate:8.0f} decisions/s  ({rate / base:.2f}x one thread)")
    tr.close()


if __name__ == "__main__":
    main()
