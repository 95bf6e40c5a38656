"""The entity slice of one request: agent, owner, the owner's groups, tool and tool groups.

Never one global entity set: each request gets only the entities it can touch. A slice is
identified by its fingerprint, the tuple of every value that goes into it, so a cached
``cedarpy.Entities`` handle can never outlive the facts it was built from.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from typing import Any

from tribune.policy.request import PolicyRequest

Uid = dict[str, str]


def fingerprint(req: PolicyRequest) -> tuple[Hashable, ...]:
    """Every value that :func:`entities_json` reads from ``req``, plus its ``cache_key``."""
    # INVARIANT: this tuple lists every field entities_json() uses; a new attribute there must
    # be added here too, or a cached handle could serve a stale fact.
    agent, tool = req.agent, req.tool
    return (
        req.cache_key,
        agent.id,
        agent.name,
        agent.environment,
        agent.purpose,
        agent.status,
        agent.owner.kind,
        agent.owner.name,
        req.owner_groups,
        req.owner_email,
        tool.name,
        tool.risk,
        tool.groups,
    )


def uid(kind: str, name: str) -> Uid:
    """A Cedar entity uid in JSON form."""
    return {"type": kind, "id": name}


def entities_json(req: PolicyRequest) -> str:
    """The Cedar JSON entities document for ``req`` (agent, owner, groups, tool, tool groups)."""
    agent, tool, risk = req.agent, req.tool, req.tool.risk
    owner_kind = "User" if agent.owner.kind == "user" else "Group"
    owner = uid(owner_kind, agent.owner.name)
    groups: set[str] = set()
    out: list[dict[str, Any]] = [
        {
            "uid": uid("Agent", agent.id),
            "attrs": {
                "name": agent.name,
                "environment": agent.environment,
                "purpose": agent.purpose,
                "status": str(agent.status),
            },
            "parents": [owner],
        }
    ]
    if owner_kind == "User":
        groups.update(req.owner_groups)
        out.append(
            {
                "uid": owner,
                "attrs": {"email": req.owner_email},
                "parents": [uid("Group", g) for g in sorted(groups)],
            }
        )
    else:
        groups.add(agent.owner.name)
    out.extend({"uid": uid("Group", g), "attrs": {}, "parents": []} for g in sorted(groups))
    tool_groups = sorted(set(tool.groups))
    out.append(
        {
            "uid": uid("Tool", tool.name),
            "attrs": {
                "read_only": risk.read_only,
                "destructive": risk.destructive,
                "idempotent": risk.idempotent,
                "open_world": risk.open_world,
                "untrusted_output": risk.untrusted_output,
            },
            "parents": [uid("ToolGroup", g) for g in tool_groups],
        }
    )
    out.extend({"uid": uid("ToolGroup", g), "attrs": {}, "parents": []} for g in tool_groups)
    return json.dumps(out)
