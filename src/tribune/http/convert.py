"""Domain values to wire dictionaries (shaped as ``tribune.http.models``) and back."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from tribune.core.audit import ts_text
from tribune.core.model import (
    Agent,
    ApprovalTicket,
    AuditRecord,
    Entitlements,
    ExtractorSpec,
    Limits,
    RiskFacts,
    Task,
    Tool,
    Verdict,
)
from tribune.http import models as m
from tribune.services.approvals import approving


def ts(value: datetime | None) -> str | None:
    """Times on the wire have the audit log's one text form (UTC, microseconds, ``Z``)."""
    return ts_text(value) if value is not None else None


def limits_out(limits: Limits) -> dict[str, Any]:
    return {
        "max_amount": limits.max_amount,
        "max_count": limits.max_count,
        "max_calls": limits.max_calls,
    }


def limits_in(data: m.LimitsIn) -> Limits:
    return Limits(data.max_amount, data.max_count, data.max_calls)


def entitlements_in(data: m.EntitlementsIn) -> Entitlements:
    return Entitlements(
        tools=frozenset(data.tools),
        tool_groups=frozenset(data.tool_groups),
        environments=frozenset(data.environments),
        limits=limits_in(data.limits),
        open_scope=data.open_scope,
    )


def agent_out(agent: Agent) -> dict[str, Any]:
    e = agent.entitlements
    return {
        "id": agent.id,
        "name": agent.name,
        "owner": str(agent.owner),
        "purpose": agent.purpose,
        "environment": agent.environment,
        "entitlements": {
            "tools": sorted(e.tools),
            "tool_groups": sorted(e.tool_groups),
            "environments": sorted(e.environments),
            "limits": limits_out(e.limits),
            "open_scope": e.open_scope,
        },
        "status": agent.status.value,
        "created_at": ts(agent.created_at),
    }


def tool_in(name: str, data: m.ToolIn) -> Tool:
    r = data.risk
    return Tool(
        name=name,
        description=data.description,
        input_schema=dict(data.input_schema),
        risk=RiskFacts(r.read_only, r.destructive, r.idempotent, r.open_world, r.untrusted_output),
        groups=tuple(data.groups),
        extractors=tuple(
            ExtractorSpec(
                kind=x.kind,
                pointer=x.pointer,
                role=x.role,
                target=x.target,
                aggregate=x.aggregate,
                required=x.required,
                literal=x.literal,
            )
            for x in data.extractors
        ),
        sensitive_args=tuple(data.sensitive_args),
        data_classes=tuple(data.data_classes),
    )


def tool_out(tool: Tool) -> dict[str, Any]:
    return {
        "name": tool.name,
        "description": tool.description,
        "input_schema": tool.input_schema,
        "risk": tool.risk.to_dict(),
        "groups": list(tool.groups),
        "extractors": [
            {
                "kind": x.kind,
                "pointer": x.pointer,
                "role": x.role,
                "target": x.target,
                "aggregate": x.aggregate,
                "required": x.required,
                "literal": x.literal,
            }
            for x in tool.extractors
        ],
        "sensitive_args": list(tool.sensitive_args),
        "data_classes": list(tool.data_classes),
    }


def task_out(task: Task, now: datetime) -> dict[str, Any]:
    s = task.scope
    return {
        "id": task.id,
        "agent": task.agent_id,
        "state": task.state.value,
        "active": task.is_active(now),
        "scope": {
            "purpose": s.purpose,
            "tools": sorted(s.tools),
            "tool_groups": sorted(s.tool_groups),
            "targets": sorted(s.targets),
            "literals": sorted(s.literal_digests),
            "environment": s.environment,
            "limits": limits_out(s.limits),
            "open_scope": s.open_scope,
        },
        "session": {
            "tainted": task.session.tainted,
            "data_read": sorted(task.session.data_read),
            "calls": task.session.calls,
        },
        "created_at": ts(task.created_at),
        "expires_at": ts(task.expires_at),
        "ended_at": ts(task.ended_at),
    }


def verdict_out(verdict: Verdict, ticket: ApprovalTicket | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "action_id": verdict.action_id,
        "action_digest": verdict.action_digest,
        "allowed": verdict.allowed,
        "decision": verdict.decision.to_dict(),
        "task": verdict.task_id,
        "agent": verdict.agent_id,
        "tool": verdict.tool,
    }
    if ticket is not None:
        out["ticket"] = {
            "id": ticket.id,
            "state": ticket.state.value,
            "quorum": ticket.requirement.quorum,
            "approvals": approving(ticket),
            "expires_at": ts(ticket.expires_at),
        }
    return out


def ticket_out(ticket: ApprovalTicket) -> dict[str, Any]:
    req = ticket.requirement
    return {
        "id": ticket.id,
        "state": ticket.state.value,
        "action_id": ticket.action_id,
        "action_digest": ticket.action_digest,
        "task": ticket.task_id,
        "agent": ticket.agent_id,
        "owner": ticket.owner,
        "tool": ticket.tool,
        "quorum": req.quorum,
        "approvers": list(req.approvers),
        "owner_may_approve": req.owner_may_approve,
        "approvals": approving(ticket),
        "reasons": list(ticket.reasons),
        "shown": ticket.shown,
        "created_at": ts(ticket.created_at),
        "expires_at": ts(ticket.expires_at),
        "resolved_at": ts(ticket.resolved_at),
        "consumed_by": ticket.consumed_by,
        "votes": [
            {"user": v.user, "approve": v.approve, "at": ts(v.at), "reason": v.reason, "via": v.via}
            for v in ticket.votes
        ],
    }


def record_out(record: AuditRecord) -> dict[str, Any]:
    return {
        "seq": record.seq,
        "kind": record.kind.value,
        "ts": ts(record.ts),
        "action_id": record.action_id,
        "task_id": record.task_id,
        "agent_id": record.agent_id,
        "body": orjson.loads(record.body),
        "hash": record.hash,
        "prev_hash": record.prev_hash,
    }
