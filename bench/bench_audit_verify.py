"""Benchmark: verify the audit chain end to end from a SQLite store.

Builds N records (default 200,000) through ``AuditService.record`` (checkpoint every 1,000) in
a temporary SQLite store, then times ``AuditService.verify`` (streaming from the store, every
checkpoint signature checked) and, for reference, a bare read of the records and the strict
mode. Prints records/s. Target: >= 50,000 records/s for the default (fast) verify.

    python bench/bench_audit_verify.py [-n 200000] [--strict] [--export]
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tribune.core.model import RecordKind
from tribune.crypto import Ed25519Signer, Ed25519Verifier, KeyPair
from tribune.services.audit import AuditService, verify_jsonl
from tribune.store import open_store

KINDS = [RecordKind.INTENT, RecordKind.DECISION, RecordKind.RESULT]


class StepClock:
    """Moves 1 ms per reading, so every record has its own time."""

    def __init__(self) -> None:
        self._now = datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        self._now += timedelta(milliseconds=1)
        return self._now


def payload(i: int) -> dict[str, object]:
    # About the size of a real decision record (~500 bytes of body).
    return {
        "tool": "payments.transfer",
        "effect": "allow",
        "policy_ids": ["payments-within-intent", "baseline"],
        "policy_version": "pv-2026-01-01",
        "args_digest": f"sha256:{i:064x}",
        "targets": [{"value": f"DE89370400440532013{i % 1000:03d}", "class": "named"}],
        "note": "Überweisung ✓",
    }


def rate(n: int, seconds: float) -> str:
    return f"{n:>9,} records in {seconds:6.2f} s = {n / seconds:>9,.0f} records/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=200_000)
    parser.add_argument("--strict", action="store_true", help="also time strict verification")
    parser.add_argument("--export", action="store_true", help="also time export + verify_jsonl")
    args = parser.parse_args()

    signer = Ed25519Signer(KeyPair.generate())
    verifier = Ed25519Verifier([signer.public_key])
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(str(Path(tmp) / "tribune.db"))
        try:
            audit = AuditService(store, StepClock(), signer, verifier, checkpoint_every=1000)
            t0 = time.perf_counter()
            for i in range(args.n):
                audit.record(
                    KINDS[i % 3],
                    payload(i),
                    action_id=f"act-{i // 3:08d}",
                    task_id=f"task-{i // 300:06d}",
                    agent_id="spiffe://example.org/agent/payments-bot",
                )
            audit.checkpoint()
            print(f"build    {rate(args.n, time.perf_counter() - t0)}")

            t0 = time.perf_counter()
            read = sum(1 for _ in store.records())
            print(f"read     {rate(read, time.perf_counter() - t0)}  (store only)")

            t0 = time.perf_counter()
            report = audit.verify()
            elapsed = time.perf_counter() - t0
            assert report.ok, report
            print(
                f"verify   {rate(report.checked, elapsed)}  "
                f"({report.checkpoints_verified} checkpoints)"
            )

            if args.strict:
                t0 = time.perf_counter()
                report = audit.verify(strict=True)
                assert report.ok, report
                print(f"strict   {rate(report.checked, time.perf_counter() - t0)}")

            if args.export:
                out = io.StringIO()
                t0 = time.perf_counter()
                written = audit.export_jsonl(out)
                print(f"export   {rate(written, time.perf_counter() - t0)}")
                out.seek(0)
                t0 = time.perf_counter()
                report = verify_jsonl(out, verifier)
                assert report.ok, report
                print(f"jsonl    {rate(report.checked, time.perf_counter() - t0)}")
        finally:
            store.close()


if __name__ == "__main__":
    main()
