"""Evaluate a compiled policy version: one Cedar call per decision, approval tiers, fail closed.

``CompiledPolicy.decide`` is the hot path. Everything that can be prepared is prepared once:
policies are parsed at compile time, the policy set for each (action, tool, tool groups) is built
lazily from the scope index and cached, and entity handles are cached by the fingerprint of the
facts they hold. A decision then costs one ``cedarpy.is_authorized`` call (two on the approval
path, to confirm that the approval would actually lead to an allow).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

import cedarpy
import orjson

from tribune.core.model import ApprovalRequirement, Decision, DecisionError, Effect
from tribune.errors import PolicyEvaluationError
from tribune.policy.entities import entities_json, fingerprint
from tribune.policy.index import ScopeIndex
from tribune.policy.request import PolicyRequest

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
SetKey = tuple[str, str, tuple[str, ...]]  # (action, tool, sorted tool groups)

ERROR_CODE = PolicyEvaluationError.code
MAX_ERROR_TEXT = 500


@dataclass(frozen=True, slots=True)
class ApprovalTier:
    """What a ``forbid`` carrying ``@approval`` asks for, read once at compile time."""

    quorum: int
    approvers: tuple[str, ...]  # group names; empty means any approver
    owner_may_approve: bool = False


@dataclass(frozen=True, slots=True)
class PolicyInfo:
    """One compiled policy: its id, where it was written, its annotations and Cedar JSON form."""

    id: str
    file: str
    line: int
    effect: str  # "permit" | "forbid"
    annotations: Mapping[str, str]
    est: Mapping[str, Any]
    tier: ApprovalTier | None = None

    @property
    def reason(self) -> str:
        """The ``@reason`` annotation, or ``""``."""
        return self.annotations.get("reason", "")


class LruCache(Generic[K, V]):
    """A small thread-safe least-recently-used map holding at most ``size`` entries."""

    def __init__(self, size: int) -> None:
        self._size = max(1, size)
        self._data: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        """The value for ``key`` (now most recently used), or None."""
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        """Store ``value``, evicting the least recently used entries beyond the bound."""
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self._size:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


def policy_set(policies: Iterable[PolicyInfo]) -> cedarpy.PolicySet:
    """A Cedar policy set whose policy ids are Tribune's ids (so reasons name them)."""
    doc = {
        "staticPolicies": {p.id: p.est for p in policies},
        "templates": {},
        "templateLinks": [],
    }
    return cedarpy.PolicySet.from_json_str(json.dumps(doc))


class CompiledPolicy:
    """A validated policy version, ready to decide. Build it with ``compile_bundle``."""

    def __init__(
        self,
        policies: Sequence[PolicyInfo],
        schema: cedarpy.Schema,
        *,
        version_id: str | None = None,
        indexed: bool = True,
        cache_size: int = 4096,
    ) -> None:
        self.policies: tuple[PolicyInfo, ...] = tuple(policies)
        self.by_id: dict[str, PolicyInfo] = {p.id: p for p in self.policies}
        self.schema = schema
        self.version_id = version_id
        self.policy_ids: tuple[str, ...] = tuple(p.id for p in self.policies)
        self.indexed = indexed
        self._tiers = {p.id: p.tier for p in self.policies if p.tier is not None}
        self._index = ScopeIndex([(p.id, p.est) for p in self.policies])
        self._full = policy_set(self.policies)
        self._sets: LruCache[SetKey, cedarpy.PolicySet] = LruCache(cache_size)
        self._entities: LruCache[tuple[Hashable, ...], cedarpy.Entities] = LruCache(cache_size)

    def applicable(self, action: str, tool: str, groups: Iterable[str]) -> tuple[str, ...]:
        """Ids of the policies a call of ``action`` on ``tool`` in ``groups`` evaluates."""
        if not self.indexed:
            return self.policy_ids
        return self._index.applicable(action, tool, groups)

    def decide(self, req: PolicyRequest) -> Decision:
        """Decide ``req``: ALLOW, DENY or APPROVAL_REQUIRED, with the determining policy ids
        (sorted), their ``@reason`` texts and this version's id. Never raises: any failure is a
        DENY carrying the error.
        """
        decision = self._decide(req)
        reasons = tuple(
            text for text in (self.by_id[p].reason for p in decision.policy_ids) if text
        )
        return replace(decision, reasons=reasons) if reasons else decision

    def _decide(self, req: PolicyRequest) -> Decision:
        try:
            tool = req.tool
            policies = self._policy_set(req.action, tool.name, tool.groups)
            entities = self._entities_for(req)
            request = {
                "principal": {"type": "Agent", "id": req.agent.id},
                "action": {"type": "Action", "id": req.action},
                "resource": {"type": "Tool", "id": tool.name},
                # encoded here (orjson) rather than by cedarpy's json.dumps: ~10x cheaper
                "context": orjson.dumps(req.context).decode(),
            }
            result = cedarpy.is_authorized(request, policies, entities)
            diagnostics = result.diagnostics
            reasons = tuple(sorted(diagnostics.reasons))
            if diagnostics.errors:
                denied = () if result.allowed else reasons
                return self._errored(tool.name, denied, diagnostics.errors)
            if result.allowed:
                return Decision(Effect.ALLOW, tool.name, reasons, self.version_id)
            tiers = [self._tiers.get(r) for r in reasons]
            if not reasons or None in tiers:
                return Decision(Effect.DENY, tool.name, reasons, self.version_id)
            need = _requirement([t for t in tiers if t is not None])
            # Approval is offered only if it would lead to an allow: re-check with the quorum met.
            request["context"] = orjson.dumps({**req.context, "approvals": need.quorum}).decode()
            second = cedarpy.is_authorized(request, policies, entities)
            if second.diagnostics.errors:
                return self._errored(tool.name, reasons, second.diagnostics.errors)
            if not second.allowed:
                return Decision(Effect.DENY, tool.name, reasons, self.version_id)
            return Decision(
                Effect.APPROVAL_REQUIRED, tool.name, reasons, self.version_id, approval=need
            )
        except Exception as exc:  # fail closed: nothing escapes decide()
            name = getattr(getattr(req, "tool", None), "name", "")
            message = f"policy evaluation failed: {type(exc).__name__}: {exc}"
            return self._errored(str(name), (), [message])

    def _policy_set(self, action: str, tool: str, groups: Sequence[str]) -> cedarpy.PolicySet:
        if not self.indexed:
            return self._full
        key = (action, tool, tuple(sorted(groups)))
        found = self._sets.get(key)
        if found is None:
            ids = self._index.applicable(action, tool, key[2])
            found = policy_set(self.by_id[i] for i in ids)
            self._sets.put(key, found)
        return found

    def _entities_for(self, req: PolicyRequest) -> cedarpy.Entities:
        key = fingerprint(req)
        found = self._entities.get(key)
        if found is None:
            found = cedarpy.Entities.from_json_str(entities_json(req), self.schema)
            self._entities.put(key, found)
        return found

    def _errored(self, tool: str, reasons: tuple[str, ...], errors: Iterable[str]) -> Decision:
        errs = tuple(DecisionError(ERROR_CODE, str(e)[:MAX_ERROR_TEXT]) for e in errors)
        return Decision(Effect.DENY, tool, reasons, self.version_id, errs)


def _requirement(tiers: Sequence[ApprovalTier]) -> ApprovalRequirement:
    """The strictest quorum, the union of approver groups, owner approval only if all allow it."""
    approvers = sorted({g for t in tiers for g in t.approvers})
    return ApprovalRequirement(
        quorum=max(t.quorum for t in tiers),
        approvers=tuple(approvers),
        owner_may_approve=all(t.owner_may_approve for t in tiers),
    )
