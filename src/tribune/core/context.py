"""Build the Cedar ``context`` record for one call, pure.

The shape is the schema's ``Context`` type (policy/pack/schema.cedarschema); every field is
always present so policies never fail on a missing attribute.
"""

from __future__ import annotations

from typing import Any

from tribune.core.extract import ArgFacts
from tribune.core.model import DATA_LEVELS, Entitlements, Scope, Task, Tool


def tool_in_scope(scope: Scope, tool: Tool, entitlements: Entitlements) -> bool:
    """The tool is declared in the task's scope; for an open-scope task, it is within the
    agent's entitlements (open scope never reaches past what the agent may ever be granted)."""
    if scope.open_scope:
        return tool.name in entitlements.tools or any(
            g in entitlements.tool_groups for g in tool.groups
        )
    return tool.name in scope.tools or any(g in scope.tool_groups for g in tool.groups)


def within_limits(scope: Scope, facts: ArgFacts, calls_so_far: int) -> bool:
    limits = scope.limits
    if limits.max_amount is not None and facts.amount > limits.max_amount:
        return False
    if limits.max_count is not None and facts.count > limits.max_count:
        return False
    return limits.max_calls is None or calls_so_far < limits.max_calls


def data_facts(task: Task, tool: Tool) -> dict[str, Any]:
    """Data this call touches: the tool's own classes, plus, when the call can send data out of
    the organisation (open-world and not read-only), every class the task has already read."""
    classes = set(tool.data_classes)
    if tool.risk.open_world and not tool.risk.read_only:
        classes |= task.session.data_read
    level = max((DATA_LEVELS.get(c, 0) for c in classes), default=0)
    return {"classes": sorted(classes), "level": level}


def build_context(
    task: Task,
    entitlements: Entitlements,
    tool: Tool,
    facts: ArgFacts,
    targets: dict[str, Any],
    *,
    links_unknown: bool,
    approvals: int = 0,
    environment: str | None = None,
) -> dict[str, Any]:
    """The complete context for ``tool`` called inside ``task`` (of an agent with
    ``entitlements``) with extracted ``facts``.

    ``targets`` is ``core.targets.target_facts(...)`` for the classified targets. ``environment``
    is where the call acts when it names one (a deploy to production); by default the task's.
    """
    scope = task.scope
    open_scope = scope.open_scope
    task_env = scope.environment or ""
    env = environment or task_env
    return {
        "environment": env,
        "approvals": approvals,
        "task": {
            "id": task.id,
            "open_scope": open_scope,
            "tainted": task.session.tainted,
            "data_read": sorted(task.session.data_read),
            "depth": task.depth,
            "calls": task.session.calls,
        },
        "intent": {
            "tool_in_scope": tool_in_scope(scope, tool, entitlements),
            "env_in_scope": env == task_env or (open_scope and env in entitlements.environments),
            "within_limits": within_limits(scope, facts, task.session.calls),
            "literals_ok": facts.literals_ok,
        },
        "targets": targets,
        "args": {
            "amount": facts.amount,
            "count": facts.count,
            "secrets": len(facts.secrets),
            "cards": facts.cards,
            "links": len(facts.links),
            "links_unknown": links_unknown,
        },
        "data": data_facts(task, tool),
    }
