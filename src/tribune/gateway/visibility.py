"""Which tools a task could ever be allowed to call: Cedar partial evaluation of the active
policy version, with everything that varies from call to call left unknown.

A tool is hidden from ``tools/list`` only when Cedar reaches a definite DENY for it with those
unknowns, that is, when no arguments, approvals, targets, taint, data read or call count could
make the call allowed. Anything less certain (a residual, an error, an engine failure) shows
the tool: the list over-approximates, and every call is still decided in full.

Why this is sound (hidden implies never allowed):

- The known part of the request is exactly what the governor will use for any call of this
  task: the agent entity (status, owner, groups), the tool entity (effective risk facts and
  groups), ``context.task.id``/``open_scope``/``depth``, ``context.environment`` (the task's:
  the gateway never passes another) and ``context.intent.tool_in_scope``/``env_in_scope``
  (functions of scope, entitlements and tool alone, computed with the governor's own code).
- Everything else in ``context`` is ``unknown(...)``: Cedar's partial evaluator only returns
  DENY when a ``forbid`` is satisfied by known values alone, or when no ``permit`` can be
  satisfied whatever the unknowns are. Full evaluation of any real call then denies as well.
- Denials the governor adds outside Cedar (unknown task, inactive task, call limit) only deny
  more.

With the shipped pack this hides exactly the tools outside the task's declared scope
(``intent-tool-not-in-scope``; for an open-scope task, outside the agent's entitlements) and
every tool of an inactive agent (``agent-not-active``); every other policy there depends on
unknowns. What could still make a listing wrong is change after it is made: a new policy
version, a changed tool or agent. Agents re-list (``ttlMs`` is 0) and every call is decided in
full, so a stale list never allows anything by itself. If the gateway ever passes an
``environment`` of its own to ``decide``, ``environment``/``env_in_scope`` must become unknowns
here. Partial evaluation is an experimental Cedar feature; ``tests/gateway/test_visibility.py``
checks it against full evaluation.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Hashable
from typing import Any

import cedarpy

from tribune.core.context import tool_in_scope
from tribune.core.model import Agent, Task, Tool
from tribune.policy.engine import CompiledPolicy, LruCache, policy_set
from tribune.policy.entities import entities_json, fingerprint
from tribune.policy.request import PolicyRequest

log = logging.getLogger(__name__)


def _unknown(name: str) -> dict[str, Any]:
    return {"__extn": {"fn": "unknown", "arg": name}}


def partial_context(task: Task, agent: Agent, tool: Tool) -> dict[str, Any]:
    """The call context with only what is fixed for this task and tool known."""
    scope = task.scope
    return {
        "environment": scope.environment or "",
        "approvals": _unknown("approvals"),
        "task": {
            "id": task.id,
            "open_scope": scope.open_scope,
            "tainted": _unknown("tainted"),
            "data_read": _unknown("data_read"),
            "depth": task.depth,
            "calls": _unknown("calls"),
        },
        "intent": {
            "tool_in_scope": tool_in_scope(scope, tool, agent.entitlements),
            # the governor's env_in_scope when no environment is passed: env == the task's
            "env_in_scope": True,
            "within_limits": _unknown("within_limits"),
            "literals_ok": _unknown("literals_ok"),
        },
        "targets": _unknown("targets"),
        "args": _unknown("args"),
        "data": _unknown("data"),
    }


class Visibility:
    """Decides, per policy version, whether a task could ever be allowed to call a tool."""

    def __init__(self, cache_size: int = 4096) -> None:
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._compiled: CompiledPolicy | None = None
        self._set: cedarpy.PolicySet | None = None
        self._seen: LruCache[tuple[Hashable, ...], bool] = LruCache(cache_size)

    def could_allow(
        self,
        compiled: CompiledPolicy | None,
        task: Task,
        agent: Agent,
        owner: tuple[tuple[str, ...], str],
        tool: Tool,
    ) -> bool:
        """False only when no call of ``tool`` in ``task`` can be allowed by ``compiled``.
        ``owner`` is (the owner's groups, the owner's e-mail) as the governor reads them."""
        if compiled is None:
            return False  # no active policy: every call is denied
        request = PolicyRequest(agent, owner[0], owner[1], tool, {}, cache_key=task.id)
        scope = task.scope
        policies, seen_cache = self._for(compiled)
        key = (
            fingerprint(request),
            scope.open_scope,
            scope.tools,
            scope.tool_groups,
            scope.environment,
            task.depth,
            agent.entitlements,
        )
        seen = seen_cache.get(key)
        if seen is None:
            seen = self._evaluate(policies, request, task)
            seen_cache.put(key, seen)
        return seen

    def _for(
        self, compiled: CompiledPolicy
    ) -> tuple[cedarpy.PolicySet, LruCache[tuple[Hashable, ...], bool]]:
        """The policy set of ``compiled`` and the answers cached for it; a new version starts
        afresh."""
        with self._lock:
            if self._compiled is not compiled or self._set is None:
                # the whole version: the scope index only drops policies that cannot apply
                self._set = policy_set(compiled.policies)
                self._seen = LruCache(self._cache_size)
                self._compiled = compiled
            return self._set, self._seen

    def _evaluate(self, policies: cedarpy.PolicySet, request: PolicyRequest, task: Task) -> bool:
        try:
            result = cedarpy.is_authorized_partial(
                {
                    "principal": _uid("Agent", request.agent.id),
                    "action": _uid("Action", request.action),
                    "resource": _uid("Tool", request.tool.name),
                    "context": partial_context(task, request.agent, request.tool),
                },
                policies,
                entities_json(request),
            )
        except Exception as exc:  # an engine failure hides nothing
            log.warning("partial evaluation failed (%s); tool `%s` shown", exc, request.tool.name)
            return True
        if result.diagnostics.errors:
            return True
        return result.decision is not cedarpy.Decision.Deny


def _uid(kind: str, name: str) -> str:
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'{kind}::"{escaped}"'
