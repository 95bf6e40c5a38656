"""Benchmark: ``CompiledPolicy.decide`` against a bare ``cedarpy.is_authorized`` call.

Both evaluate the same request with cached handles (the default pack, one entity slice), and
are measured interleaved, call by call, so drift on the machine hits both alike. Also measured:
the approval path (two Cedar calls) and decide() with 1,000 extra policies scoped to other tool
groups, with the scope index (they are not evaluated) and without it.

Run: ``.venv/bin/python bench/bench_decision.py [--rounds N] [--calls N]``
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import cedarpy

from tribune.core.model import Agent, AgentStatus, Entitlements, OwnerRef, RiskFacts, Tool
from tribune.policy import CompiledPolicy, PolicyRequest, compile_bundle, default_context
from tribune.policy import default_pack as pack
from tribune.policy.engine import policy_set
from tribune.policy.entities import entities_json


def request(context: dict[str, Any] | None = None) -> PolicyRequest:
    ctx = default_context()
    ctx["targets"].update(count=1, classes=["named"])
    ctx.update(context or {})
    return PolicyRequest(
        agent=Agent(
            id="spiffe://example.org/agent/mailer",
            name="mailer",
            owner=OwnerRef("user", "alice"),
            purpose="send invoices",
            environment="development",
            entitlements=Entitlements(),
            status=AgentStatus.ACTIVE,
            created_at=datetime(2025, 1, 1, tzinfo=UTC),
        ),
        owner_groups=("eng", "billing"),
        owner_email="alice@example.org",
        tool=Tool(
            name="email.send",
            risk=RiskFacts(read_only=False, destructive=False, open_world=True),
            groups=("email",),
        ),
        context=ctx,
        cache_key="task-1",
    )


def bare_call(compiled: CompiledPolicy, req: PolicyRequest) -> Callable[[], object]:
    """A bare cedarpy call on the same request, with its own parsed handles."""
    policies = policy_set(compiled.policies)
    entities = cedarpy.Entities.from_json_str(entities_json(req))
    cedar_request = {
        "principal": {"type": "Agent", "id": req.agent.id},
        "action": {"type": "Action", "id": "call"},
        "resource": {"type": "Tool", "id": req.tool.name},
        "context": req.context,
    }
    return lambda: cedarpy.is_authorized(cedar_request, policies, entities)


def measure(fns: dict[str, Callable[[], object]], rounds: int, calls: int) -> dict[str, list[int]]:
    """Per-call nanoseconds for each function, interleaved call by call."""
    samples: dict[str, list[int]] = {name: [] for name in fns}
    items = list(fns.items())
    for fn in fns.values():  # warm caches and code paths
        for _ in range(200):
            fn()
    gc.collect()
    gc.disable()
    try:
        for r in range(rounds):
            order = items if r % 2 == 0 else items[::-1]
            for _ in range(calls):
                for name, fn in order:
                    t0 = time.perf_counter_ns()
                    fn()
                    samples[name].append(time.perf_counter_ns() - t0)
    finally:
        gc.enable()
    return samples


def pct(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()

    compiled = compile_bundle(pack(), version_id="bench")
    crowd = "\n".join(
        f'@id("other-{i}") forbid (principal, action == Action::"call", '
        f'resource in ToolGroup::"group-{i}");'
        for i in range(1000)
    )
    crowd_files = {**pack().files, "crowd.cedar": crowd}
    crowded = compile_bundle(crowd_files, version_id="crowd")
    unindexed = compile_bundle(crowd_files, version_id="crowd", indexed=False)
    allow = request()
    approval = request({"approvals": 0, "environment": "development"})
    approval.context["targets"].update(all_trusted=False, any_unknown=True, classes=["unknown"])
    assert compiled.decide(allow).allowed
    assert compiled.decide(approval).effect.value == "approval_required"
    assert crowded.decide(allow).allowed
    assert len(crowded.applicable("call", "email.send", ["email"])) == len(compiled.policies)

    samples = measure(
        {
            "bare cedarpy.is_authorized": bare_call(compiled, allow),
            "decide (allow)": lambda: compiled.decide(allow),
            "decide (approval path, 2 calls)": lambda: compiled.decide(approval),
            "decide (+1,000 policies, other groups)": lambda: crowded.decide(allow),
            "decide (+1,000 policies, index off)": lambda: unindexed.decide(allow),
        },
        args.rounds,
        args.calls,
    )
    print(
        f"python {platform.python_version()}, cedarpy, {platform.machine()}, "
        f"{args.rounds} rounds x {args.calls} calls, interleaved"
    )
    print(f"default pack: {len(compiled.policies)} policies; crowded: {len(crowded.policies)}")
    print("| measurement | p50 (us) | p99 (us) |")
    print("| --- | ---: | ---: |")
    for name, values in samples.items():
        print(f"| {name} | {pct(values, 0.5):.1f} | {pct(values, 0.99):.1f} |")
    bare = samples["bare cedarpy.is_authorized"]
    ours = samples["decide (allow)"]
    # Ratio of medians over rounds: each round's median of decide over the same round's bare.
    per_round = [
        statistics.median(ours[i : i + args.calls]) / statistics.median(bare[i : i + args.calls])
        for i in range(0, len(bare), args.calls)
    ]
    print(
        f"\ndecide / bare, p50: {pct(ours, 0.5) / pct(bare, 0.5):.2f}x "
        f"(per-round medians: min {min(per_round):.2f}x, "
        f"median {statistics.median(per_round):.2f}x, max {max(per_round):.2f}x)"
    )


if __name__ == "__main__":
    main()
