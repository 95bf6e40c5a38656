"""The governed decision path for one tool call.

    decide(): load task, agent, tool → extract facts → INTENT record (durable) → Cedar →
              DECISION record (durable) → a ``Verdict``
    finish(): RESULT record → session state (taint, data read, calls) → learned targets

Every error on this path becomes a recorded denial (fail closed). Only malformed input raises,
before anything is stored.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from tribune.config import Settings
from tribune.core.canonical import digest, keyed_digest
from tribune.core.context import build_context
from tribune.core.extract import ArgFacts, extract, redact
from tribune.core.model import (
    Agent,
    AgentStatus,
    ApprovalTicket,
    AuditEntry,
    AuditRecord,
    Decision,
    Effect,
    RecordKind,
    ResultStatus,
    Task,
    Tool,
    Verdict,
    decision_from_dict,
    deny,
)
from tribune.core.taint import ResultClassifier, taints
from tribune.core.targets import classify, links_unknown, target_facts
from tribune.errors import Conflict, InvalidInput, NotFound, TribuneError
from tribune.policy.request import PolicyRequest
from tribune.ports import Clock, Ids, Store
from tribune.services.approvals import ApprovalService, Asked, approving
from tribune.services.audit import AuditService
from tribune.services.policies import PolicyService

MAX_ARGUMENT_BYTES = 1 << 20


class _Denied(Exception):
    """Internal: stop building the request and deny with this decision."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(slots=True)
class _Cached:
    value: Any
    at: float


class Governor:
    """Decides and records governed calls. Thread-safe."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        ids: Ids,
        audit: AuditService,
        policies: PolicyService,
        settings: Settings,
        *,
        classifier: ResultClassifier | None = None,
        cache_seconds: float = 1.0,
        digest_key: bytes | None = None,
        approvals: ApprovalService | None = None,
    ) -> None:
        self.store = store
        self.approvals = approvals  # tickets for approval-required calls; None: none issued
        # Digests of argument values and outputs in audit records are keyed (HMAC-SHA256) when
        # a key is given, so small or guessable values cannot be recovered by hashing guesses.
        self.digest_key = digest_key
        self.clock = clock
        self.ids = ids
        self.audit = audit
        self.policies = policies
        self.settings = settings
        self.classifier = classifier
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], _Cached] = {}
        self._learned = _Cached(frozenset(), -1e9)

    # ----------------------------------------------------------------- lookups

    def _cached(self, kind: str, key: str, load: Any) -> Any:
        """Agents, owners and tools change rarely; re-read them at most every cache_seconds.

        INVARIANT: tasks are never cached: a task ended elsewhere is denied at once.
        """
        now = time.monotonic()
        hit = self._cache.get((kind, key))
        if hit is not None and now - hit.at < self.cache_seconds:
            return hit.value
        value = load(key)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[(kind, key)] = _Cached(value, now)
        return value

    def invalidate(self) -> None:
        with self._lock:
            self._cache.clear()
            self._learned = _Cached(frozenset(), -1e9)

    def effective_tool(self, name: str) -> Tool | None:
        """The registered tool with configured overrides on top; None when neither exists."""
        registered = self.store.get_tool(name)
        override = self.settings.tools.get(name)
        if override is not None:
            return override.apply(registered)
        return registered

    def _owner_groups(self, agent: Agent) -> tuple[tuple[str, ...], str]:
        if agent.owner.kind != "user":
            return (), ""
        user = self.store.get_user(agent.owner.name)
        return (user.groups, user.email) if user else ((), "")

    def _learned_targets(self) -> frozenset[str]:
        now = time.monotonic()
        if now - self._learned.at >= self.cache_seconds:
            self._learned = _Cached(self.store.learned_targets(), now)
        value: frozenset[str] = self._learned.value
        return value

    # ----------------------------------------------------------------- decide

    def decide(
        self,
        task_id: str,
        tool_name: str,
        arguments: Mapping[str, Any],
        *,
        approvals: int = 0,
        environment: str | None = None,
        expects_result: bool = True,
        ticket: str | None = None,
    ) -> Verdict:
        """Decide one call and record its intent and decision durably before returning.

        ``expects_result`` is False for a decision-only check: nothing will run, so no result
        record is expected and ``audit reconcile`` leaves it alone.

        With an approval service, an approved ticket for this exact action (``ticket``, or
        found by the action's digest) brings its approvals into context; a call it lets run
        uses it up. A call that still needs approval gets a ticket (one per action digest).
        """
        if not isinstance(task_id, str) or not task_id:
            raise InvalidInput("a call needs a task id")
        if not isinstance(tool_name, str) or not tool_name:
            raise InvalidInput("a call needs a tool name")
        if not isinstance(arguments, Mapping):
            raise InvalidInput("arguments must be a JSON object")
        try:
            arguments_digest = self._digest(dict(arguments))
        except Exception:
            raise InvalidInput(
                "arguments must be JSON values (objects, lists, text, numbers)"
            ) from None
        action_id = self.ids.new()
        # INVARIANT: the digest binds task (so agent), tool, arguments and environment: an
        # approval for it is an approval for exactly this action.
        action_digest = digest(
            {
                "task": task_id,
                "tool": tool_name,
                "arguments": arguments_digest,
                "environment": environment,
            }
        )

        task: Task | None = None
        agent: Agent | None = None
        tool: Tool | None = None
        facts: ArgFacts | None = None
        failure: _Denied | None = None
        try:
            task, agent, tool = self._load(task_id, tool_name)
            facts = extract(
                tool, arguments, task.scope.literal_digests, literal_key=self.digest_key
            )
        except _Denied as exc:
            failure = exc
        except TribuneError as exc:
            failure = _Denied(exc.code, exc.message)
        except Exception as exc:  # fail closed on anything unexpected
            failure = _Denied("internal_error", f"{type(exc).__name__} while preparing the call")

        agent_id = agent.id if agent else None
        intent = AuditEntry(
            RecordKind.INTENT,
            self.clock.now(),
            {
                "tool": tool_name,
                "arguments": self._recordable(tool, arguments, facts),
                "arguments_digest": arguments_digest,
                "action_digest": action_digest,
                "purpose": task.scope.purpose if task else None,
                "owner": str(agent.owner) if agent else None,
                "environment": environment,
            },
            action_id,
            task_id,
            agent_id,
        )
        if not self.settings.group_commit:
            # INVARIANT: the intent is durable before the call is decided.
            self.audit.record_many((intent,))

        targets: list[dict[str, str]] = []
        context: dict[str, Any] | None = None
        reserved = False
        approved: ApprovalTicket | None = None
        asked: Asked | None = None
        ticket_id: str | None = None
        if failure is not None or task is None or agent is None or tool is None or facts is None:
            assert failure is not None
            decision = deny(tool_name, failure.code, failure.message)
        else:
            try:
                decision, context, targets = self._evaluate(
                    task, agent, tool, facts, approvals, environment
                )
                # Tickets are looked up only where they can matter (a named ticket, or a call
                # that needs approval): an ordinary allow or deny costs no extra read.
                wanted = decision.effect is Effect.APPROVAL_REQUIRED or ticket is not None
                if self.approvals is not None and wanted:
                    approved = self.approvals.approved(action_digest, ticket)
                    if approved is not None:
                        approvals = max(approvals, approving(approved))
                        decision, context, targets = self._evaluate(
                            task, agent, tool, facts, approvals, environment
                        )
                    elif ticket is not None:
                        failure = self._ticket_refused(ticket, action_digest)
                if failure is not None:
                    decision = deny(tool_name, failure.code, failure.message)
                else:
                    # INVARIANT: the call's place in max_calls is taken before its ticket is
                    # used, so a call refused for the limit leaves the approval unused.
                    decision, reserved = self._reserve(task, decision, expects_result)
                    decision, approved, asked = self._settle_approval(
                        decision,
                        approved,
                        action_id,
                        action_digest,
                        task,
                        agent,
                        tool,
                        arguments,
                        facts,
                        context.get("environment") or environment,
                        expects_result,
                    )
                if asked is not None:
                    assert self.approvals is not None
                    waiting = self.approvals.open_ticket(action_digest)
                    ticket_id = waiting.id if waiting is not None else self.ids.new()
            except Exception as exc:  # fail closed
                decision = deny(tool_name, "internal_error", f"{type(exc).__name__} in decision")
                asked = None

        decided = AuditEntry(
            RecordKind.DECISION,
            self.clock.now(),
            {
                **decision.to_dict(),
                "action_digest": action_digest,
                "expects_result": expects_result,
                "reserved": reserved,
                "risk": _risk(tool),
                "targets": targets,
                "context": _summary(context),
                **({"ticket": ticket_id} if ticket_id is not None else {}),
                **({"approved_by_ticket": approved.id} if approved is not None else {}),
            },
            action_id,
            task_id,
            agent_id,
        )
        # INVARIANT: intent and decision are durable before decide() returns, so before any
        # call can run; with group commit they are committed together, intent first.
        self.audit.record_many((intent, decided) if self.settings.group_commit else (decided,))
        if asked is not None and self.approvals is not None:
            # After the decision record: the ticket (and its audit event) follows what asked.
            ticket_id = self.approvals.request(asked, ticket_id).id
        return Verdict(
            action_id=action_id,
            action_digest=action_digest,
            decision=decision,
            task_id=task_id,
            agent_id=agent_id,
            tool=tool_name,
            # INVARIANT: only targets nobody vouched for (not internal, named or known) can be
            # learned: a task's own named targets must not become known to every other task.
            targets=tuple(t["value"] for t in targets if t["class"] == "unknown"),
            approvals=approvals,
            reserved=reserved,
            ticket_id=ticket_id,
        )

    def _ticket_refused(self, ticket_id: str, action_digest: str) -> _Denied:
        """Why a named ticket cannot authorise this call (it was for another action, is still
        open, was denied, has expired or was used)."""
        found = self.store.get_ticket(ticket_id) if isinstance(ticket_id, str) else None
        if found is None:
            return _Denied("unknown_ticket", f"unknown ticket `{ticket_id}`")
        if found.action_digest != action_digest:
            return _Denied(
                "ticket_mismatch",
                f"ticket `{ticket_id}` was issued for another action (its tool, arguments or "
                "environment differ)",
            )
        return _Denied("ticket_not_approved", f"ticket `{ticket_id}` is {found.state.value}")

    def _settle_approval(
        self,
        decision: Decision,
        approved: ApprovalTicket | None,
        action_id: str,
        action_digest: str,
        task: Task,
        agent: Agent,
        tool: Tool,
        arguments: Mapping[str, Any],
        facts: ArgFacts,
        environment: str | None,
        expects_result: bool,
    ) -> tuple[Decision, ApprovalTicket | None, Asked | None]:
        """(decision, the ticket it used, what to ask approval for). An allowed call that will
        run uses its approved ticket up, exactly once; a call that still needs approval asks."""
        if self.approvals is None:
            return decision, approved, None
        if decision.allowed:
            if approved is None or not expects_result:
                return decision, None, None
            if self.approvals.consume(approved, action_id):
                return decision, approved, None
            used = deny(
                tool.name,
                "ticket_used",
                f"ticket `{approved.id}` has already authorised a call",
                decision.policy_version,
            )
            return used, None, None
        if decision.effect is Effect.APPROVAL_REQUIRED and expects_result:
            assert decision.approval is not None
            shown = {
                "arguments": self._recordable(tool, arguments, facts),
                "environment": environment,
                "purpose": task.scope.purpose,
            }
            asked = Asked(
                action_id=action_id,
                action_digest=action_digest,
                task=task,
                agent_id=agent.id,
                owner=str(agent.owner),
                tool=tool.name,
                requirement=decision.approval,
                reasons=decision.reasons,
                shown=shown,
            )
            return decision, None, asked
        return decision, None, None

    def _reserve(
        self, task: Task, decision: Decision, expects_result: bool
    ) -> tuple[Decision, bool]:
        """With a ``max_calls`` limit, an allowed call that will run takes its place in the
        count now, atomically, so concurrent calls cannot pass the limit together. Returns the
        decision (a denial once the limit is reached) and whether a place was taken."""
        limit = task.scope.limits.max_calls
        if limit is None or not expects_result or not decision.allowed:
            return decision, False
        if self.store.reserve_call(task.id, limit):
            return decision, True
        denied = deny(
            decision.tool,
            "limit_reached",
            f"task `{task.id}` has made its {limit} call(s)",
            decision.policy_version,
        )
        return denied, False

    def _load(self, task_id: str, tool_name: str) -> tuple[Task, Agent, Tool]:
        task = self.store.get_task(task_id)
        if task is None:
            raise _Denied("unknown_task", f"unknown task `{task_id}`")
        if not task.is_active(self.clock.now()):
            state = "ended" if task.state.value == "ended" else "expired"
            raise _Denied("task_inactive", f"task `{task_id}` has {state}")
        agent: Agent | None = self._cached("agent", task.agent_id, self.store.get_agent)
        if agent is None:
            raise _Denied("unknown_agent", f"unknown agent `{task.agent_id}`")
        if agent.status is not AgentStatus.ACTIVE:
            raise _Denied("agent_inactive", f"agent `{agent.name}` is {agent.status.value}")
        tool: Tool | None = self._cached("tool", tool_name, self.effective_tool)
        if tool is None:
            raise _Denied("unknown_tool", f"unknown tool `{tool_name}`")
        return task, agent, tool

    def _evaluate(
        self,
        task: Task,
        agent: Agent,
        tool: Tool,
        facts: ArgFacts,
        approvals: int,
        environment: str | None,
    ) -> tuple[Decision, dict[str, Any], list[dict[str, str]]]:
        compiled = self.policies.active()
        if compiled is None:
            return deny(tool.name, "no_active_policy", "no policy version is active"), {}, []
        directory = self.settings.directory
        learned = self._learned_targets()
        named = task.scope.targets
        classes = [classify(t, directory, named, learned) for t in facts.targets]
        context = build_context(
            task,
            agent.entitlements,
            tool,
            facts,
            target_facts(facts.targets, classes),
            links_unknown=links_unknown(facts.links, directory, named, learned),
            approvals=approvals,
            environment=environment,
        )
        owner_groups, owner_email = self._cached(
            "owner", agent.id, lambda _: self._owner_groups(agent)
        )
        request = PolicyRequest(
            agent=agent,
            owner_groups=owner_groups,
            owner_email=owner_email,
            tool=tool,
            context=context,
            cache_key=task.id,
        )
        decision = compiled.decide(request)
        targets = [
            {"kind": t.kind, "value": t.value, "role": t.role, "class": c.value}
            for t, c in zip(facts.targets, classes, strict=True)
        ]
        return decision, context, targets

    def _digest(self, value: Any) -> str:
        key = self.digest_key
        return keyed_digest(value, key) if key is not None else digest(value)

    def _recordable(
        self, tool: Tool | None, arguments: Mapping[str, Any], facts: ArgFacts | None
    ) -> Any:
        """Arguments as the audit log may keep them: sensitive ones and those read by `secret`
        extractors as digests; when the tool is unknown or the arguments carry credential-like
        strings or card numbers, only a digest of the whole."""
        if tool is None or facts is None or facts.secrets or facts.cards:
            return {"digest": self._digest(dict(arguments))}
        hidden = [*tool.sensitive_args, *(s.pointer for s in tool.extractors if s.kind == "secret")]
        if hidden:
            try:
                return redact(dict(arguments), hidden, key=self.digest_key)
            except TribuneError:  # a malformed pointer on a registered tool: keep nothing clear
                return {"digest": self._digest(dict(arguments))}
        return dict(arguments)

    # ----------------------------------------------------------------- result

    def finish(
        self,
        verdict: Verdict,
        status: ResultStatus,
        *,
        output: Any = None,
        duration_ms: float = 0.0,
        error: str | None = None,
    ) -> AuditRecord:
        """Record what happened to an allowed call and update the task's session state;
        returns the RESULT record."""
        body: dict[str, Any] = {
            "status": status.value,
            "duration_ms": round(duration_ms, 3),
            "action_digest": verdict.action_digest,
        }
        if output is not None:
            try:
                body["output_digest"] = self._digest(output)
            except Exception:
                body["output_digest"] = self._digest(repr(output))
        if error:
            body["error"] = error[:500]
        record = self.audit.record(
            RecordKind.RESULT,
            body,
            action_id=verdict.action_id,
            task_id=verdict.task_id,
            agent_id=verdict.agent_id,
        )
        if not verdict.allowed or status is not ResultStatus.OK:
            return record
        tool = self._cached("tool", verdict.tool, self.effective_tool)
        if tool is None:
            return record
        # INVARIANT: merged atomically in the store, so concurrent calls in one task (threads,
        # processes, replicas) never lose a taint, a data class or a call.
        self.store.merge_session(
            verdict.task_id,
            tainted=taints(tool, output, self.classifier),
            data_read=frozenset(tool.data_classes),
            calls=0 if verdict.reserved else 1,  # a reserved call was counted when allowed
        )
        # Only a completed, human-approved write makes a counterparty known: reading from a
        # host establishes no trust in it, and a write that policy let through on its own (an
        # internal reversible write) must not launder a target into "known" for later sends.
        if verdict.targets and verdict.approvals > 0 and not tool.risk.read_only:
            self.store.learn_targets(list(verdict.targets), self.clock.now())
            self._learned = _Cached(frozenset(), -1e9)
        return record

    def verdict_of(self, action_id: str) -> Verdict:
        """The verdict of a decided call, rebuilt from its audit records, for a result that
        arrives later (over the API). Only an allowed call that expects a result and has none
        yet qualifies: anything else is refused, so a result cannot be recorded twice or for a
        call that was never allowed to run."""
        records = self.store.find_records(action_id=action_id, limit=1000)
        decided = [r for r in records if r.kind is RecordKind.DECISION]
        if not decided:
            raise NotFound(f"unknown action `{action_id}`", code="unknown_action")
        if any(r.kind is RecordKind.RESULT for r in records):
            raise Conflict(f"action `{action_id}` already has a result", code="result_recorded")
        record = decided[0]
        body = orjson.loads(record.body)["data"]
        decision = decision_from_dict(body)
        if not decision.allowed or not body.get("expects_result", True):
            raise Conflict(
                f"action `{action_id}` was not allowed to run", code="action_not_allowed"
            )
        context = body.get("context") or {}
        return Verdict(
            action_id=action_id,
            action_digest=body["action_digest"],
            decision=decision,
            task_id=record.task_id or "",
            agent_id=record.agent_id,
            tool=decision.tool,
            targets=tuple(t["value"] for t in body.get("targets") or () if t["class"] == "unknown"),
            approvals=int(context.get("approvals") or 0),
            reserved=bool(body.get("reserved", False)),
        )


def _risk(tool: Tool | None) -> dict[str, Any] | None:
    if tool is None:
        return None
    return {**tool.risk.to_dict(), "groups": list(tool.groups)}


def _summary(context: dict[str, Any] | None) -> dict[str, Any] | None:
    """The context as recorded: everything but the task id (already on the record)."""
    if not context:
        return None
    out = dict(context)
    out["task"] = {k: v for k, v in context["task"].items() if k != "id"}
    return out
