"""Index policies by action and resource scope, so a decision evaluates only those that can apply.

For a call of action ``A`` on tool ``T`` with groups ``G``, a policy can apply when its action
scope admits ``A`` and its resource scope is unconstrained, ``== Tool::"T"``, ``in Tool::"T"``,
``in ToolGroup::"g"`` with ``g`` in ``G``, or ``is Tool`` (optionally ``in`` one of those).

The index is only a pre-filter: Cedar still evaluates every scope it is given. So a scope the
index does not fully understand is filed as "may always apply" — keeping a policy costs a
little time, dropping one that applies would change decisions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

TOOL = "Tool"
TOOL_GROUP = "ToolGroup"


@dataclass(frozen=True, slots=True)
class _Entry:
    position: int
    actions: frozenset[str] | None  # None: any action


class ScopeIndex:
    """Policy ids filed by the tool, tool group or neither that their resource scope names."""

    def __init__(self, policies: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
        """Index ``(policy id, Cedar JSON policy)`` pairs; their order is kept in results."""
        self._ids = [pid for pid, _ in policies]
        self._always: list[_Entry] = []
        self._by_tool: dict[str, list[_Entry]] = {}
        self._by_group: dict[str, list[_Entry]] = {}
        for position, (_, est) in enumerate(policies):
            entry = _Entry(position, _action_ids(est.get("action", {})))
            kind, name = _resource_key(est.get("resource", {}))
            if kind == TOOL:
                self._by_tool.setdefault(name, []).append(entry)
            elif kind == TOOL_GROUP:
                self._by_group.setdefault(name, []).append(entry)
            elif kind == "always":
                self._always.append(entry)
            # kind == "never": the scope cannot match a Tool resource; not filed at all

    def applicable(self, action: str, tool: str, groups: Iterable[str]) -> tuple[str, ...]:
        """Ids of the policies that can apply to ``action`` on ``tool`` in ``groups``, in order."""
        entries = list(self._always)
        entries.extend(self._by_tool.get(tool, ()))
        for group in set(groups):
            entries.extend(self._by_group.get(group, ()))
        positions = sorted(
            {e.position for e in entries if e.actions is None or action in e.actions}
        )
        return tuple(self._ids[p] for p in positions)


def _action_ids(scope: Mapping[str, Any]) -> frozenset[str] | None:
    """The actions an action scope admits, or None when it may admit any.

    ``action in ...`` may name an action group, which the index does not resolve, so only
    ``action == Action::"a"`` narrows.
    """
    if scope.get("op") == "==" and isinstance(scope.get("entity"), Mapping):
        return frozenset([str(scope["entity"].get("id"))])
    return None


def _resource_key(scope: Mapping[str, Any]) -> tuple[str, str]:
    """Classify a resource scope as (``Tool``, name), (``ToolGroup``, name), always or never."""
    op = scope.get("op")
    if op == "All":
        return "always", ""
    if op == "is":
        inner = scope.get("in")
        if scope.get("entity_type") != TOOL or not isinstance(inner, Mapping):
            return "always", ""
        op, scope = "in", inner
    entity = scope.get("entity")
    if op not in ("==", "in") or not isinstance(entity, Mapping):
        return "always", ""  # slots, lists or future shapes: keep the policy
    kind, name = entity.get("type"), str(entity.get("id"))
    if kind == TOOL:
        return TOOL, name
    if kind == TOOL_GROUP and op == "in":
        # INVARIANT: entities.py gives ToolGroup entities no parents, so a tool is `in` a group
        # exactly when the group is one of the tool's own groups
        return TOOL_GROUP, name
    if op == "==":
        # INVARIANT: the request's resource is always a `Tool`, so `==` anything else never holds
        return "never", ""
    return "always", ""
