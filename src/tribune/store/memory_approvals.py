"""The ``Approvals`` part of ``MemoryStore``, kept as codec JSON like the rest of it."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from tribune.core.model import ApprovalTicket, TicketState, Vote
from tribune.errors import Conflict, InvalidInput, NotFound
from tribune.store import codec
from tribune.store.sql_approvals import MAX_TICKETS


class MemoryApprovals:
    @property
    def _lock(self) -> threading.RLock:
        raise NotImplementedError  # MemoryStore's lock, which refuses use after close

    def _init_approvals(self) -> None:
        self._tickets: dict[str, str] = {}
        self._votes: dict[str, dict[str, str]] = {}  # ticket id -> user -> vote

    def add_ticket(self, ticket: ApprovalTicket) -> None:
        text = codec.dumps(replace(ticket, votes=()))
        with self._lock:
            if ticket.id in self._tickets:
                raise Conflict(f"ticket `{ticket.id}` already exists")
            self._tickets[ticket.id] = text
            self._votes[ticket.id] = {}

    def get_ticket(self, ticket_id: str) -> ApprovalTicket | None:
        with self._lock:
            return self._read(ticket_id) if ticket_id in self._tickets else None

    def find_ticket(
        self, action_digest: str, states: Sequence[TicketState]
    ) -> ApprovalTicket | None:
        with self._lock:
            found = [
                t
                for t in map(self._read, list(self._tickets))
                if t.action_digest == action_digest and t.state in states
            ]
        return max(found, key=lambda t: (t.created_at, t.id), default=None)

    def list_tickets(
        self, *, state: TicketState | None = None, task_id: str | None = None, limit: int = 100
    ) -> list[ApprovalTicket]:
        if not 1 <= limit <= MAX_TICKETS:
            raise InvalidInput(f"limit must be 1..{MAX_TICKETS}")
        with self._lock:
            found = [
                t
                for t in map(self._read, list(self._tickets))
                if (state is None or t.state is state) and (task_id is None or t.task_id == task_id)
            ]
        found.sort(key=lambda t: (t.created_at, t.id), reverse=True)
        return found[:limit]

    def add_vote(self, ticket_id: str, vote: Vote) -> bool:
        text = codec.dumps(vote)
        with self._lock:
            if ticket_id not in self._tickets:
                raise NotFound(f"unknown ticket `{ticket_id}`", code="unknown_ticket")
            votes = self._votes[ticket_id]
            if vote.user in votes:
                return False
            votes[vote.user] = text
            return True

    def move_ticket(
        self,
        ticket_id: str,
        expected: TicketState,
        new: TicketState,
        at: datetime,
        *,
        consumed_by: str | None = None,
    ) -> bool:
        codec.check_aware(at)
        with self._lock:
            if ticket_id not in self._tickets:
                return False
            ticket = self._read(ticket_id)
            if ticket.state is not expected:
                return False
            moved = replace(
                ticket,
                state=new,
                resolved_at=at,
                consumed_by=consumed_by if consumed_by is not None else ticket.consumed_by,
                votes=(),
            )
            self._tickets[ticket_id] = codec.dumps(moved)
            return True

    def _read(self, ticket_id: str) -> ApprovalTicket:
        ticket = codec.loads(ApprovalTicket, self._tickets[ticket_id])
        votes = sorted(
            (codec.loads(Vote, v) for v in self._votes[ticket_id].values()),
            key=lambda v: (v.at, v.user),
        )
        return replace(ticket, votes=tuple(votes))
