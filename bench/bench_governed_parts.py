#!/usr/bin/env python3
"""Where a governed decision's time goes: each step of ``Governor.decide`` timed on its own,
interleaved with the whole call and a bare Cedar call, medians over many repeats.

    .venv/bin/python bench/bench_governed_parts.py [--calls 3000]

The steps mirror ``Governor.decide`` (read task, agent and tool; extract; digests; INTENT
append; evaluate; DECISION append). Their sum is a little under "whole": the rest is the
glue between them. Compare parts with "bare cedarpy" from the same run, not across runs.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cedarpy

sys.path.insert(0, str(Path(__file__).parent))
from bench_governed import setup

from tribune.core.canonical import digest
from tribune.core.extract import extract
from tribune.core.model import AuditEntry, RecordKind
from tribune.policy.entities import entities_json
from tribune.policy.request import PolicyRequest
from tribune.services.governor import _risk, _summary


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=3000)
    args = ap.parse_args()
    tr, task = setup(Path(tempfile.mkdtemp(prefix="tribune-parts-")) / "home", "normal")
    gov = tr.governor
    arguments = {"to": ["customer@client.example"], "subject": "hi", "body": "hello there"}
    for _ in range(300):
        gov.decide(task.id, "email.send", arguments)
    t, agent, tool = gov._load(task.id, "email.send")
    facts = extract(tool, arguments, t.scope.literal_digests, literal_key=gov.digest_key)
    _, context, _ = gov._evaluate(t, agent, tool, facts, 0, None)
    req = PolicyRequest(
        agent=agent,
        owner_groups=("support",),
        owner_email="alice@example.com",
        tool=tool,
        context=context,
        cache_key=t.id,
    )
    compiled = tr.policies.active()
    assert compiled is not None
    policies = compiled._policy_set("call", tool.name, tool.groups)
    entities = cedarpy.Entities.from_json_str(entities_json(req))
    bare_req = {
        "principal": {"type": "Agent", "id": agent.id},
        "action": {"type": "Action", "id": "call"},
        "resource": {"type": "Tool", "id": tool.name},
        "context": context,
    }
    names = [
        "load",
        "extract",
        "digests",
        "intent append",
        "evaluate",
        "decision append",
        "whole decide",
        "bare cedarpy",
    ]
    times: dict[str, list[int]] = {n: [] for n in names}
    pc = time.perf_counter_ns
    gc.disable()
    for _ in range(args.calls):
        marks = [pc()]
        t, agent, tool = gov._load(task.id, "email.send")
        marks.append(pc())
        facts = extract(tool, arguments, t.scope.literal_digests, literal_key=gov.digest_key)
        marks.append(pc())
        ad = gov._digest(dict(arguments))
        act = digest({"task": t.id, "tool": tool.name, "arguments": ad})
        marks.append(pc())
        body = {
            "tool": tool.name,
            "arguments": gov._recordable(tool, arguments, facts),
            "arguments_digest": ad,
            "action_digest": act,
            "purpose": t.scope.purpose,
            "owner": str(agent.owner),
            "environment": None,
        }
        tr.audit.record_many(
            (AuditEntry(RecordKind.INTENT, tr.clock.now(), body, "a", t.id, agent.id),)
        )
        marks.append(pc())
        decision, ctx, targets = gov._evaluate(t, agent, tool, facts, 0, None)
        marks.append(pc())
        dbody = {
            **decision.to_dict(),
            "action_digest": act,
            "expects_result": True,
            "risk": _risk(tool),
            "targets": targets,
            "context": _summary(ctx),
        }
        tr.audit.record_many(
            (AuditEntry(RecordKind.DECISION, tr.clock.now(), dbody, "a", t.id, agent.id),)
        )
        marks.append(pc())
        gov.decide(task.id, "email.send", arguments)
        marks.append(pc())
        cedarpy.is_authorized(bare_req, policies, entities)
        marks.append(pc())
        for i, name in enumerate(names):
            times[name].append(marks[i + 1] - marks[i])
    gc.enable()
    print(f"{'part':18} {'p50 us':>8}")
    for name in names:
        print(f"{name:18} {statistics.median(times[name]) / 1000:8.1f}")
    parts = sum(statistics.median(times[n]) for n in names[:6]) / 1000
    print(f"{'sum of parts':18} {parts:8.1f}")
    tr.close()


if __name__ == "__main__":
    main()
