"""Deciding a call over HTTP, holding the answer (bounded) while humans decide its approval.

Used by the decisions route and its lean twin (``fast.py``) alike. Waiting polls the store,
so a vote cast through any replica, the CLI or the console is seen; it sleeps on the event
loop (``asyncio.sleep``), never blocking other requests while it waits.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tribune.core.model import ApprovalTicket, Effect, TicketState, Verdict

POLL = 0.25  # seconds between looks at a pending ticket


async def decide(tr: Any, body: Any) -> tuple[Verdict, ApprovalTicket | None]:
    """The verdict for ``body`` (a ``DecisionIn``) and, when it waits on approval, its ticket.
    With ``body.wait``, a pending approval is waited for; once approved, the call is decided
    again (the policy of that moment, the ticket used up if it is allowed)."""

    def decide_with(ticket: str | None) -> Verdict:
        verdict: Verdict = tr.governor.decide(
            body.task,
            body.tool,
            body.arguments,
            environment=body.environment,
            expects_result=body.expects_result,
            ticket=ticket,
        )
        return verdict

    verdict = decide_with(body.ticket)
    if verdict.decision.effect is not Effect.APPROVAL_REQUIRED or verdict.ticket_id is None:
        return verdict, None
    ticket = await wait_for(tr, verdict.ticket_id, min(body.wait, tr.settings.approvals.max_wait))
    if ticket.state is TicketState.APPROVED:
        again = decide_with(ticket.id)
        return again, None if again.allowed else tr.approvals.get(ticket.id)
    return verdict, ticket


async def wait_for(tr: Any, ticket_id: str, seconds: float) -> ApprovalTicket:
    """The ticket once it leaves ``pending``, or as it is after ``seconds``."""
    deadline = time.monotonic() + max(0.0, seconds)
    while True:
        ticket: ApprovalTicket = tr.approvals.settle(ticket_id)
        left = deadline - time.monotonic()
        if ticket.state is not TicketState.PENDING or left <= 0:
            return ticket
        await asyncio.sleep(min(POLL, left))
