"""The embedded backend: decisions in this process, against a Tribune home.

    tr = tribune.open("~/.tribune")
    with tr.task("billing-bot", purpose="pay invoice 42", tools=["pay"]) as task:
        pay_invoice(...)            # a function decorated with @tr.govern("pay")

The async forms run the same work inline: a decision is a few hundred microseconds of
CPU and local I/O, cheaper than a hop to a thread.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from tribune.core.model import ResultStatus, Task, TicketState, Verdict
from tribune.services.tasks import ScopeRequest


class EmbeddedBackend:
    """``Backend`` over a wired app (see ``tribune.bootstrap``)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def start_task(self, agent: str, scope: Mapping[str, Any], ttl: int | None) -> Task:
        task: Task = self.app.tasks.start(agent, ScopeRequest(**scope), ttl=ttl)
        return task

    def end_task(self, task_id: str) -> None:
        self.app.tasks.end(task_id)

    def decide(
        self,
        task_id: str,
        tool: str,
        arguments: Mapping[str, Any],
        *,
        environment: str | None,
        expects_result: bool,
        ticket: str | None = None,
    ) -> Verdict:
        verdict: Verdict = self.app.governor.decide(
            task_id,
            tool,
            arguments,
            environment=environment,
            expects_result=expects_result,
            ticket=ticket,
        )
        return verdict

    def finish(
        self,
        verdict: Verdict,
        status: ResultStatus,
        *,
        output: Any = None,
        duration_ms: float = 0.0,
        error: str | None = None,
    ) -> None:
        self.app.governor.finish(
            verdict, status, output=output, duration_ms=duration_ms, error=error
        )

    async def astart_task(self, agent: str, scope: Mapping[str, Any], ttl: int | None) -> Task:
        return self.start_task(agent, scope, ttl)

    async def aend_task(self, task_id: str) -> None:
        self.end_task(task_id)

    async def adecide(
        self,
        task_id: str,
        tool: str,
        arguments: Mapping[str, Any],
        *,
        environment: str | None,
        expects_result: bool,
        ticket: str | None = None,
    ) -> Verdict:
        return self.decide(
            task_id,
            tool,
            arguments,
            environment=environment,
            expects_result=expects_result,
            ticket=ticket,
        )

    async def afinish(
        self,
        verdict: Verdict,
        status: ResultStatus,
        *,
        output: Any = None,
        duration_ms: float = 0.0,
        error: str | None = None,
    ) -> None:
        self.finish(verdict, status, output=output, duration_ms=duration_ms, error=error)

    def borrow(self, verdict: Verdict, source: str) -> tuple[str, dict[str, Any]]:
        issued = self.app.leases.issue(verdict.task_id, source, verdict=verdict)
        return issued.lease.id, issued.credential

    def give_back(self, lease_id: str) -> None:
        self.app.leases.revoke(lease_id, "call_ended")

    async def aborrow(self, verdict: Verdict, source: str) -> tuple[str, dict[str, Any]]:
        return self.borrow(verdict, source)

    async def agive_back(self, lease_id: str) -> None:
        self.give_back(lease_id)

    def wait_ticket(self, ticket_id: str, timeout: float) -> str:
        return str(self.app.approvals.wait(ticket_id, timeout).state.value)

    async def await_ticket(self, ticket_id: str, timeout: float) -> str:
        # Polls the store without holding the event loop.
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            state = self.app.approvals.settle(ticket_id).state
            left = deadline - time.monotonic()
            if state is not TicketState.PENDING or left <= 0:
                return str(state.value)
            await asyncio.sleep(min(0.2, left))
