"""Approvals: people read tickets and vote; agents read and wait on their own tickets.

Only a user's key votes (admin or approver role); the identity recorded is the key's user,
never a name in the request. Whether that person counts (group, owner rule, once per person)
is the approval service's to decide.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query

from tribune.core.model import ApprovalTicket, Role, TicketState
from tribune.errors import Forbidden, NotFound, UnknownTask
from tribune.http import models as m
from tribune.http.convert import ticket_out
from tribune.http.security import allow, own_task, tribune
from tribune.http.waiting import wait_for
from tribune.services.access import Caller

router = APIRouter(prefix="/v1/approvals", tags=["approvals"], responses=m.ERROR_RESPONSES)
readers = Depends(allow(Role.ADMIN, Role.APPROVER, Role.AUDITOR, Role.AGENT))
voters = Depends(allow(Role.ADMIN, Role.APPROVER))
States = Literal["pending", "approved", "denied", "expired", "consumed"]


def _visible(tr: Any, caller: Caller, ticket_id: str) -> ApprovalTicket:
    """The ticket, if the caller may see it: people any, an agent those of its own tasks."""
    ticket: ApprovalTicket = tr.approvals.get(ticket_id)
    if caller.role is Role.AGENT:
        try:
            own_task(tr, caller, ticket.task_id)
        except UnknownTask:  # answered exactly as an unknown ticket
            raise NotFound(f"unknown ticket `{ticket_id}`", code="unknown_ticket") from None
    return ticket


@router.get("", response_model=list[m.TicketOut])
def list_tickets(
    state: States | None = None,
    task: str | None = Query(None, max_length=128),
    limit: int = Query(100, ge=1, le=1000),
    tr: Any = Depends(tribune),
    caller: Caller = readers,
) -> list[dict[str, Any]]:
    """Tickets, newest first (`state=pending` is the approvers' queue)."""
    if caller.role is Role.AGENT:
        if task is None:
            raise Forbidden("an agent lists the tickets of one of its tasks", hint="set `task`")
        own_task(tr, caller, task)
    wanted = TicketState(state) if state is not None else None
    return [ticket_out(t) for t in tr.approvals.list(state=wanted, task_id=task, limit=limit)]


@router.get("/{ticket_id}", response_model=m.TicketOut)
def get_ticket(
    ticket_id: str, tr: Any = Depends(tribune), caller: Caller = readers
) -> dict[str, Any]:
    """One ticket: the exact action (recorded arguments), the rule, the votes so far."""
    _visible(tr, caller, ticket_id)
    return ticket_out(tr.approvals.settle(ticket_id))


@router.get("/{ticket_id}/wait", response_model=m.TicketOut)
async def wait_ticket(
    ticket_id: str,
    timeout: int = Query(30, ge=0, le=3600),
    tr: Any = Depends(tribune),
    caller: Caller = readers,
) -> dict[str, Any]:
    """The ticket once it is decided (or expired), or as it is after `timeout` seconds
    (capped by the server's `approvals.max_wait`)."""
    _visible(tr, caller, ticket_id)
    ticket = await wait_for(tr, ticket_id, min(timeout, tr.settings.approvals.max_wait))
    return ticket_out(ticket)


@router.post("/{ticket_id}/approve", response_model=m.TicketOut)
def approve(
    ticket_id: str, body: m.VoteIn, tr: Any = Depends(tribune), caller: Caller = voters
) -> dict[str, Any]:
    """Approve as the key's user. Counts only if that person is eligible (see docs)."""
    return _vote(tr, caller, ticket_id, True, body.reason)


@router.post("/{ticket_id}/deny", response_model=m.TicketOut)
def deny(
    ticket_id: str, body: m.VoteIn, tr: Any = Depends(tribune), caller: Caller = voters
) -> dict[str, Any]:
    """Deny as the key's user: one denial closes the ticket."""
    return _vote(tr, caller, ticket_id, False, body.reason)


def _vote(tr: Any, caller: Caller, ticket_id: str, approve: bool, reason: str) -> dict[str, Any]:
    if caller.user is None:  # roles admin and approver are held by users only
        raise Forbidden("only a person may vote")
    ticket = tr.approvals.vote(
        ticket_id, caller.user, approve, reason=reason, via="api", key_id=caller.key_id
    )
    return ticket_out(ticket)
