"""Replay recorded decisions against a candidate policy version: what would change?

Every DECISION record keeps the tool's risk facts and groups and the full context the call was
decided in, so a candidate version can be asked the same questions before it is activated.
The agent is taken as it is now (status, owner); fields a newer schema added are filled with
the neutral defaults of ``default_context``. Decisions that never reached Cedar (unknown tool,
ended task, extraction failure...) carry no context and are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from tribune.core.model import Agent, AuditRecord, Decision, RecordKind, RiskFacts, Tool
from tribune.policy.engine import CompiledPolicy
from tribune.policy.request import PolicyRequest, default_context
from tribune.ports import Store


@dataclass(frozen=True, slots=True)
class Replayed:
    """One recorded decision and what the candidate decides for it."""

    seq: int
    action_id: str | None
    tool: str
    was: str  # the recorded effect
    was_policies: tuple[str, ...]
    now: Decision

    @property
    def changed(self) -> bool:
        return self.was != self.now.effect.value


def _merged(base: dict[str, Any], recorded: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in recorded.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def replay(
    candidate: CompiledPolicy, records: Iterable[AuditRecord], store: Store
) -> Iterator[Replayed]:
    """Decide every replayable DECISION record in ``records`` with ``candidate``."""
    agents: dict[str, Agent | None] = {}
    owners: dict[str, tuple[tuple[str, ...], str]] = {}
    for record in records:
        if record.kind is not RecordKind.DECISION or not record.agent_id:
            continue
        data = json.loads(record.body)["data"]
        context, risk = data.get("context"), data.get("risk")
        if not context or not risk:
            continue
        if record.agent_id not in agents:
            agents[record.agent_id] = store.get_agent(record.agent_id)
        agent = agents[record.agent_id]
        if agent is None:
            continue
        if agent.id not in owners:
            user = store.get_user(agent.owner.name) if agent.owner.kind == "user" else None
            owners[agent.id] = (user.groups, user.email) if user else ((), "")
        groups, email = owners[agent.id]
        tool = Tool(
            data["tool"],
            risk=RiskFacts(**{k: bool(risk[k]) for k in RiskFacts.__dataclass_fields__}),
            groups=tuple(risk.get("groups", ())),
        )
        full = _merged(default_context(), context)
        full["task"]["id"] = record.task_id or ""
        request = PolicyRequest(agent, groups, email, tool, full, cache_key=record.task_id or "")
        yield Replayed(
            seq=record.seq,
            action_id=record.action_id,
            tool=tool.name,
            was=data["effect"],
            was_policies=tuple(data.get("policy_ids", ())),
            now=candidate.decide(request),
        )
