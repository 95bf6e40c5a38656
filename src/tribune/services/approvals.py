"""Approvals: humans decide high-impact calls, and only the exact call they saw.

When policy answers "approval required", the governor asks for a ticket bound to the call's
action digest (task, so agent; tool; canonical arguments; environment) with the policy's quorum,
approver groups and owner rule. People vote; when the quorum of distinct eligible people is
reached the ticket is approved, once. The call is then decided again with the approvals in
context (the policy of that moment, the task and agent as they are then) and, if allowed, the
ticket is consumed by that one call. A changed argument is another digest: another ticket.

Separation of duties: only users vote (an agent has no user identity); votes count only from
members of the named groups (anyone may approve when the policy names none); the agent's owner
(a user owner) may never approve alone, and counts at all only where the policy says
``owner_may_approve``; one person counts once. A single denial closes the ticket.

Every step is an audit event linked to the asking call's action id: ``approval_requested``,
``approval_vote``, ``approval_granted`` (quorum reached), ``approval_denied``,
``approval_expired``, ``approval_consumed``, ``approval_withdrawn`` (closed by the asking side).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from tribune.core.audit import ts_text
from tribune.core.model import (
    ApprovalRequirement,
    ApprovalTicket,
    RecordKind,
    Task,
    TicketState,
    Vote,
)
from tribune.errors import Conflict, Forbidden, InvalidInput, NotFound
from tribune.ports import Clock, Ids, Store
from tribune.services.registry import Events

log = logging.getLogger(__name__)
MAX_REASON = 1000
Notify = Callable[[ApprovalTicket, str], None]
OPEN = (TicketState.PENDING,)


@dataclass(frozen=True, slots=True)
class Asked:
    """What the governor knows of a call that needs approval."""

    action_id: str
    action_digest: str
    task: Task
    agent_id: str
    owner: str
    tool: str
    requirement: ApprovalRequirement
    reasons: tuple[str, ...]
    shown: dict[str, Any]


def approving(ticket: ApprovalTicket) -> int:
    """How many distinct people approved (every stored vote was eligible when cast)."""
    return sum(1 for v in ticket.votes if v.approve)


class ApprovalService:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        ids: Ids,
        events: Events,
        *,
        ttl: int = 3600,
        notify: Notify | None = None,
    ) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self.store = store
        self.clock = clock
        self.ids = ids
        self.events = events
        self.ttl = ttl
        self.notify = notify

    # ------------------------------------------------------------------ the governor's side

    def open_ticket(self, action_digest: str) -> ApprovalTicket | None:
        """The open ticket already asking for this exact action (retries share one)."""
        found = self.store.find_ticket(action_digest, OPEN)
        return found if found is not None and found.open(self.clock.now()) else None

    def request(self, asked: Asked, ticket_id: str | None = None) -> ApprovalTicket:
        """The open ticket for this exact action, made now (with ``ticket_id`` when given) if
        there is none."""
        now = self.clock.now()
        found = self.open_ticket(asked.action_digest)
        if found is not None:
            return found
        ticket = ApprovalTicket(
            id=ticket_id or self.ids.new(),
            action_id=asked.action_id,
            action_digest=asked.action_digest,
            task_id=asked.task.id,
            agent_id=asked.agent_id,
            owner=asked.owner,
            tool=asked.tool,
            requirement=asked.requirement,
            reasons=asked.reasons,
            created_at=now,
            expires_at=min(now + timedelta(seconds=self.ttl), asked.task.expires_at),
            shown=asked.shown,
        )
        self.store.add_ticket(ticket)
        self._event(
            "approval_requested",
            ticket,
            quorum=ticket.requirement.quorum,
            approvers=list(ticket.requirement.approvers),
            owner_may_approve=ticket.requirement.owner_may_approve,
            expires_at=ts_text(ticket.expires_at),
        )
        self._notify(ticket, "requested")
        return ticket

    def approved(self, action_digest: str, ticket_id: str | None = None) -> ApprovalTicket | None:
        """The approved, unexpired, unused ticket for this action, if any. With ``ticket_id``,
        that ticket only, and only if it was issued for this very action digest."""
        if ticket_id is not None:
            ticket = self.store.get_ticket(ticket_id)
            if ticket is None or ticket.action_digest != action_digest:
                return None
        else:
            ticket = self.store.find_ticket(action_digest, (TicketState.APPROVED,))
        if ticket is None or ticket.state is not TicketState.APPROVED:
            return None
        if self.clock.now() >= ticket.expires_at:
            self._expire(ticket, TicketState.APPROVED)
            return None
        return ticket

    def consume(self, ticket: ApprovalTicket, action_id: str) -> bool:
        """Use the ticket for this call; False if another call used it first."""
        moved = self.store.move_ticket(
            ticket.id,
            TicketState.APPROVED,
            TicketState.CONSUMED,
            self.clock.now(),
            consumed_by=action_id,
        )
        if moved:
            self._event("approval_consumed", ticket, by=action_id)
        return moved

    # ------------------------------------------------------------------ the humans' side

    def vote(
        self,
        ticket_id: str,
        user: str,
        approve: bool,
        *,
        reason: str = "",
        via: str = "api",
        key_id: str = "",
    ) -> ApprovalTicket:
        """Record ``user``'s answer (``user`` is the authenticated identity, never a claimed
        name). Approval counts only where the rules allow; a denial closes the ticket."""
        if not isinstance(reason, str) or len(reason) > MAX_REASON:
            raise InvalidInput(f"a reason is text of at most {MAX_REASON} characters")
        ticket = self.get(ticket_id)
        now = self.clock.now()
        if ticket.state is TicketState.PENDING and now >= ticket.expires_at:
            self._expire(ticket, TicketState.PENDING)
            raise Conflict(f"ticket `{ticket_id}` has expired", code="ticket_expired")
        if ticket.state is not TicketState.PENDING:
            raise Conflict(f"ticket `{ticket_id}` is {ticket.state.value}", code="ticket_closed")
        cast = Vote(user, approve, now, reason, via, key_id)
        try:
            self._check_voter(ticket, user, approve)
            if not self.store.add_vote(ticket.id, cast):
                raise Conflict(
                    f"`{user}` has already voted on ticket `{ticket_id}`", code="already_voted"
                )
        except (Forbidden, Conflict) as refused:
            # A refused vote is evidence too (self-approval attempts, outsiders).
            self._event(
                "approval_vote_refused",
                ticket,
                user=user,
                approve=approve,
                via=via,
                code=refused.code,
            )
            raise
        self._event(
            "approval_vote",
            ticket,
            user=user,
            approve=approve,
            via=via,
            **({"reason": reason} if reason else {}),
        )
        ticket = self.get(ticket_id)
        if not approve:
            if self.store.move_ticket(ticket.id, TicketState.PENDING, TicketState.DENIED, now):
                self._event("approval_denied", ticket, by=user)
                self._notify(self.get(ticket_id), "denied")
        elif self._quorum(ticket) and self.store.move_ticket(
            ticket.id, TicketState.PENDING, TicketState.APPROVED, now
        ):
            # INVARIANT: only the vote whose compare-and-set wins records the quorum.
            self._event(
                "approval_granted",
                ticket,
                approvals=approving(ticket),
                approvers=[v.user for v in ticket.votes if v.approve],
            )
            self._notify(self.get(ticket_id), "approved")
        return self.get(ticket_id)

    def withdraw(self, ticket_id: str, *, by: str, via: str) -> ApprovalTicket:
        """Close an open or approved, unused ticket from the asking side (the agent's user
        declined it when shown the request): its call does not run. Not a vote: it can only
        stop a call, never let one run, so the asking side may do it."""
        ticket = self.get(ticket_id)
        now = self.clock.now()
        for state in (TicketState.PENDING, TicketState.APPROVED):
            if ticket.state is state and self.store.move_ticket(
                ticket.id, state, TicketState.DENIED, now
            ):
                self._event("approval_withdrawn", ticket, by=by, via=via)
                self._notify(self.get(ticket_id), "denied")
        return self.get(ticket_id)

    def _check_voter(self, ticket: ApprovalTicket, user: str, approve: bool) -> None:
        person = self.store.get_user(user)
        if person is None:
            raise Forbidden("only a registered user may vote", code="not_eligible")
        groups = ticket.requirement.approvers
        if groups and not set(groups) & set(person.groups):
            raise Forbidden(
                f"`{user}` is in none of the approver groups {', '.join(groups)}",
                code="not_eligible",
            )
        owner = ticket.owner == f"user:{user}"
        if owner and approve and not ticket.requirement.owner_may_approve:
            raise Forbidden(
                "the agent's owner may not approve its calls under this policy",
                code="owner_may_not_approve",
            )

    def _quorum(self, ticket: ApprovalTicket) -> bool:
        """Enough distinct approvers, and never the owner alone."""
        approvers = [v.user for v in ticket.votes if v.approve]
        others = [u for u in approvers if ticket.owner != f"user:{u}"]
        return len(approvers) >= ticket.requirement.quorum and bool(others)

    # ------------------------------------------------------------------ read, wait, expire

    def get(self, ticket_id: str, *, task_ids: frozenset[str] | None = None) -> ApprovalTicket:
        ticket = self.store.get_ticket(ticket_id) if isinstance(ticket_id, str) else None
        if ticket is None or (task_ids is not None and ticket.task_id not in task_ids):
            raise NotFound(f"unknown ticket `{ticket_id}`", code="unknown_ticket")
        return ticket

    def list(
        self, *, state: TicketState | None = None, task_id: str | None = None, limit: int = 100
    ) -> list[ApprovalTicket]:
        self.expire_due()
        return self.store.list_tickets(state=state, task_id=task_id, limit=limit)

    def wait(self, ticket_id: str, timeout: float, *, every: float = 0.2) -> ApprovalTicket:
        """The ticket once it leaves ``pending`` (or expires), or as it is after ``timeout``
        seconds. Polls the store, so a vote cast in another process or replica is seen."""
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            ticket = self.settle(ticket_id)
            if ticket.state is not TicketState.PENDING or time.monotonic() >= deadline:
                return ticket
            time.sleep(min(every, max(0.0, deadline - time.monotonic())))

    def settle(self, ticket_id: str) -> ApprovalTicket:
        """The ticket, marked expired first if its time is up."""
        ticket = self.get(ticket_id)
        due = self.clock.now() >= ticket.expires_at
        if due and ticket.state in (TicketState.PENDING, TicketState.APPROVED):
            self._expire(ticket, ticket.state)
            ticket = self.get(ticket_id)
        return ticket

    def expire_due(self) -> int:
        """Mark open and unused tickets past their expiry as expired; how many."""
        now = self.clock.now()
        count = 0
        for state in (TicketState.PENDING, TicketState.APPROVED):
            for ticket in self.store.list_tickets(state=state, limit=1000):
                if now >= ticket.expires_at and self._expire(ticket, state):
                    count += 1
        return count

    def close_task(self, task_id: str, reason: str = "task_ended") -> int:
        """Expire the task's open and unused tickets (its calls can no longer run); how many."""
        count = 0
        for state in (TicketState.PENDING, TicketState.APPROVED):
            for ticket in self.store.list_tickets(state=state, task_id=task_id, limit=1000):
                count += self._expire(ticket, state, reason)
        return count

    def _expire(self, ticket: ApprovalTicket, state: TicketState, reason: str = "") -> bool:
        if not self.store.move_ticket(ticket.id, state, TicketState.EXPIRED, self.clock.now()):
            return False
        self._event("approval_expired", ticket, **({"reason": reason} if reason else {}))
        self._notify(ticket, "expired")
        return True

    # ------------------------------------------------------------------ records

    def _event(self, event: str, ticket: ApprovalTicket, **extra: Any) -> None:
        self.events.record(
            RecordKind.EVENT,
            {"event": event, "ticket": ticket.id, "action_digest": ticket.action_digest, **extra},
            action_id=ticket.action_id,
            task_id=ticket.task_id,
            agent_id=ticket.agent_id,
        )

    def _notify(self, ticket: ApprovalTicket, event: str) -> None:
        if self.notify is None:
            return
        try:
            self.notify(ticket, event)
        except Exception:  # a notification never changes an approval
            log.exception("approval notification failed")
