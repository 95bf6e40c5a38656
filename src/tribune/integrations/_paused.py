"""What the adapters share about calls paused for a human: the verdicts they remember by the
framework's call id, and the texts a model reads when a paused call does not run.

A framework's human-in-the-loop pauses a run and later re-enters the tool with an "approved"
flag of its own. Tribune never takes that flag as approval: the adapter remembers the verdict
(and so the ticket) that paused the call, and on resume decides the call again with that
ticket, so only Tribune's approved ticket lets it run, once. Remembering also keeps a resumed
call from being decided as a new action, which would open a second ticket for a denied one.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from tribune.core.model import Effect, Verdict

KEPT = 4096  # remembered calls per adapter instance; the oldest are forgotten first


def asks_approval(verdict: Verdict) -> bool:
    """Whether the call waits on a Tribune ticket."""
    return verdict.decision.effect is Effect.APPROVAL_REQUIRED and bool(verdict.ticket_id)


def unapproved(verdict: Verdict, state: str) -> str:
    """What the model reads when a paused call ends without an approved ticket (``state`` is
    the ticket's state): the call did not run, and why."""
    return unapproved_text(verdict.tool, verdict.action_id, verdict.ticket_id or "", state)


def unapproved_text(tool: str, action_id: str, ticket: str, state: str) -> str:
    """``unapproved`` from the verdict's parts."""
    if state == "pending":
        why = (
            "is still pending human approval; once approved, the same call with the same "
            "arguments runs"
        )
    else:
        why = f"was not approved (its ticket is {state})"
    return f"Tribune: `{tool}` {why}; the call did not run (action {action_id}, ticket {ticket})"


def ticket_fields(verdict: Verdict) -> dict[str, str]:
    """What a framework's pause signal carries, under the key ``tribune``."""
    return {"ticket": verdict.ticket_id or "", "action_id": verdict.action_id, "tool": verdict.tool}


def asked_in(value: Any) -> dict[str, str]:
    """The ``ticket_fields`` under ``value["tribune"]`` (with a ``message`` when it has one),
    or an empty dict when ``value`` carries none: a pause Tribune did not ask for."""
    asked = value.get("tribune") if isinstance(value, dict) else None
    keys = ("ticket", "action_id", "tool")
    if not isinstance(asked, dict) or not all(isinstance(asked.get(k), str) for k in keys):
        return {}
    found = {k: asked[k] for k in keys}
    if isinstance(asked.get("message"), str):
        found["message"] = asked["message"]
    return found


def time_left(deadline: float) -> float:
    """Seconds until ``deadline`` (a ``time.monotonic()`` reading), never negative."""
    return max(0.0, deadline - time.monotonic())


@dataclass(frozen=True, slots=True)
class _Paused:
    task_id: str
    arguments: Any
    verdict: Verdict


class Remembered:
    """Verdicts by call id, kept until the call is invoked (or forgotten when many are kept).
    Safe to share between threads."""

    def __init__(self, kept: int = KEPT) -> None:
        self._kept = kept
        self._items: OrderedDict[str, _Paused] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, call_id: str, arguments: Any, verdict: Verdict) -> None:
        with self._lock:
            self._items[call_id] = _Paused(verdict.task_id, arguments, verdict)
            self._items.move_to_end(call_id)
            while len(self._items) > self._kept:
                self._items.popitem(last=False)

    def peek(self, call_id: str) -> Verdict | None:
        with self._lock:
            found = self._items.get(call_id)
        return found.verdict if found is not None else None

    def find(self, call_id: str, task_id: str | None, arguments: Any) -> Verdict | None:
        """The verdict remembered for exactly this call: same id, task and arguments."""
        with self._lock:
            found = self._items.get(call_id)
        if found is None or found.task_id != task_id or found.arguments != arguments:
            return None
        return found.verdict

    def take(self, call_id: str, task_id: str | None, arguments: Any) -> Verdict | None:
        """``find``, no longer remembered after."""
        with self._lock:
            found = self._items.get(call_id)
            if found is None or found.task_id != task_id or found.arguments != arguments:
                return None
            del self._items[call_id]
        return found.verdict

    def forget(self, call_id: str) -> None:
        with self._lock:
            self._items.pop(call_id, None)
