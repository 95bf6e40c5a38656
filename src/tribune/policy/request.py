"""What one decision is asked about: the agent, its owner, the tool and the call's context.

``context`` is the schema's ``Context`` record (see ``pack/schema.cedarschema``);
``default_context()`` returns one with every field filled, the shape the service layer builds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tribune.core.model import Agent, Tool


@dataclass(frozen=True, slots=True)
class PolicyRequest:
    """One governed call as Cedar sees it.

    ``tool`` carries the EFFECTIVE risk facts (configured overrides already applied).
    ``cache_key`` (e.g. a task id) partitions the cache of entity handles; a handle is reused
    only while every fact that went into it is unchanged.
    """

    agent: Agent
    owner_groups: tuple[str, ...]  # groups of the owner when the owner is a user, else ()
    owner_email: str  # "" when unknown
    tool: Tool
    context: dict[str, Any]
    action: str = "call"
    cache_key: str = ""


def default_context() -> dict[str, Any]:
    """A complete ``Context`` describing a clean call inside its declared intent.

    Nothing risky is observed: no approvals, no targets, no secrets or links, public data, a
    fresh untainted root task in ``development``, and every intent check passing. Policy test
    cases override parts of it; the service layer fills every field from the real call. A new
    dict is returned each time, so callers may change it.
    """
    return {
        "environment": "development",
        "approvals": 0,
        "task": {
            "id": "task",
            "open_scope": False,
            "tainted": False,
            "data_read": [],
            "depth": 0,
            "calls": 0,
        },
        "intent": {
            "tool_in_scope": True,
            "env_in_scope": True,
            "within_limits": True,
            "literals_ok": True,
        },
        "targets": {
            "count": 0,
            "all_trusted": True,
            "all_internal": True,
            "any_unknown": False,
            "classes": [],
        },
        "args": {
            "amount": 0,
            "count": 0,
            "secrets": 0,
            "cards": 0,
            "links": 0,
            "links_unknown": False,
        },
        "data": {
            "classes": [],
            "level": 0,
        },
    }
