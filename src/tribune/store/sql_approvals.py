"""The ``Approvals`` part of the SQL store: tickets and votes.

A mixin of ``SqlStore``. A ticket's state moves by one conditional UPDATE (compare and set); a
vote is one INSERT whose primary key (ticket, person) refuses a second vote by the same person,
so racing approvers and replicas cannot count anyone twice nor reach a quorum twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from tribune.core.model import ApprovalTicket, TicketState, Vote
from tribune.errors import Conflict, InvalidInput, NotFound
from tribune.store import codec
from tribune.store.engine import bytewise, read_tx, write_tx
from tribune.store.tables import approval_tickets, approval_votes

MAX_TICKETS = 1000


class SqlApprovals:
    engine: Engine
    _dialect: str

    def add_ticket(self, ticket: ApprovalTicket) -> None:
        body = codec.dumps(replace(ticket, votes=(), state=TicketState.PENDING))
        values = {
            "id": ticket.id,
            "action_digest": ticket.action_digest,
            "task_id": ticket.task_id,
            "state": ticket.state.value,
            "created_at": codec.to_micros(ticket.created_at),
            "resolved_at": _micros(ticket.resolved_at),
            "consumed_by": ticket.consumed_by,
            "body": body,
        }
        with write_tx(self.engine) as conn:
            try:
                conn.execute(insert(approval_tickets).values(values))
            except IntegrityError:
                raise Conflict(f"ticket `{ticket.id}` already exists") from None

    def get_ticket(self, ticket_id: str) -> ApprovalTicket | None:
        found = self._tickets(select(approval_tickets).where(approval_tickets.c.id == ticket_id))
        return found[0] if found else None

    def find_ticket(
        self, action_digest: str, states: Sequence[TicketState]
    ) -> ApprovalTicket | None:
        if not states:
            return None
        t = approval_tickets.c
        stmt = (
            select(approval_tickets)
            .where(t.action_digest == action_digest, t.state.in_([s.value for s in states]))
            .order_by(t.created_at.desc(), bytewise(t.id, self._dialect).desc())
            .limit(1)
        )
        found = self._tickets(stmt)
        return found[0] if found else None

    def list_tickets(
        self, *, state: TicketState | None = None, task_id: str | None = None, limit: int = 100
    ) -> list[ApprovalTicket]:
        if not 1 <= limit <= MAX_TICKETS:
            raise InvalidInput(f"limit must be 1..{MAX_TICKETS}")
        t = approval_tickets.c
        stmt = select(approval_tickets)
        if state is not None:
            stmt = stmt.where(t.state == state.value)
        if task_id is not None:
            stmt = stmt.where(t.task_id == task_id)
        stmt = stmt.order_by(t.created_at.desc(), bytewise(t.id, self._dialect).desc())
        return self._tickets(stmt.limit(limit))

    def add_vote(self, ticket_id: str, vote: Vote) -> bool:
        dialect_insert = postgresql.insert if self._dialect == "postgresql" else sqlite.insert
        values = {
            "ticket_id": ticket_id,
            "user_name": vote.user,
            "approve": vote.approve,
            "at": codec.to_micros(vote.at),
            "body": codec.dumps(vote),
        }
        stmt = (
            dialect_insert(approval_votes)
            .values(values)
            .on_conflict_do_nothing(index_elements=["ticket_id", "user_name"])
            .returning(approval_votes.c.user_name)
        )
        with write_tx(self.engine) as conn:
            exists = conn.execute(
                select(approval_tickets.c.id).where(approval_tickets.c.id == ticket_id)
            ).first()
            if exists is None:
                raise NotFound(f"unknown ticket `{ticket_id}`", code="unknown_ticket")
            return conn.execute(stmt).first() is not None

    def move_ticket(
        self,
        ticket_id: str,
        expected: TicketState,
        new: TicketState,
        at: datetime,
        *,
        consumed_by: str | None = None,
    ) -> bool:
        values: dict[str, Any] = {"state": new.value, "resolved_at": codec.to_micros(at)}
        if consumed_by is not None:
            values["consumed_by"] = consumed_by
        stmt = (
            update(approval_tickets)
            .where(approval_tickets.c.id == ticket_id, approval_tickets.c.state == expected.value)
            .values(values)
        )
        with write_tx(self.engine) as conn:
            return bool(conn.execute(stmt).rowcount == 1)

    def _tickets(self, stmt: Any) -> list[ApprovalTicket]:
        with read_tx(self.engine) as conn:
            rows = conn.execute(stmt).all()
            ids = [r.id for r in rows]
            votes: dict[str, list[Vote]] = {i: [] for i in ids}
            if ids:
                v = approval_votes.c
                found = conn.execute(
                    select(v.ticket_id, v.body)
                    .where(v.ticket_id.in_(ids))
                    .order_by(v.at, bytewise(v.user_name, self._dialect))
                ).all()
                for ticket_id, body in found:
                    votes[ticket_id].append(codec.loads(Vote, body))
        return [
            replace(
                codec.loads(ApprovalTicket, r.body),
                state=TicketState(r.state),
                resolved_at=_time(r.resolved_at),
                consumed_by=r.consumed_by,
                votes=tuple(votes[r.id]),
            )
            for r in rows
        ]


def _micros(ts: datetime | None) -> int | None:
    return codec.to_micros(ts) if ts is not None else None


def _time(us: int | None) -> datetime | None:
    return codec.from_micros(us) if us is not None else None
