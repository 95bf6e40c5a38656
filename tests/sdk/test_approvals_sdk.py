"""Approvals from the SDK: the ticket on the exception, a retry that runs once approved,
waiting in the decorator (sync and async), denial and timeout."""

from __future__ import annotations

import asyncio
import threading

import pytest

import tribune
from tribune.core.model import TicketState

from .conftest import World, world

__all__ = ["world"]


@pytest.fixture
def people(world: World) -> World:
    world.tr.registry.add_user("carol", email="carol@acme.com", groups=("approvers",))
    world.tr.registry.add_user("dave", email="dave@acme.com", groups=("approvers",))
    return world


def test_raise_then_retry_once_approved(people: World) -> None:
    tr = people.tr
    ran: list[str] = []

    @tr.govern("db.drop")
    def drop(table: str) -> str:
        ran.append(table)
        return "dropped"

    with tr.task("ops", purpose="clean up", tool_groups=["database"], ttl=7200):
        with pytest.raises(tribune.ApprovalRequired) as held:
            drop("sessions")
        ticket = held.value.ticket_id
        assert ticket and ticket in str(held.value)
        with pytest.raises(tribune.ApprovalRequired) as again:
            drop("sessions")
        assert again.value.ticket_id == ticket  # one ticket for one action
        tr.approvals.vote(ticket, "bob", True)
        tr.approvals.vote(ticket, "carol", True)
        assert tr.wait_for_approval(ticket, 0) == "approved"
        assert drop("sessions") == "dropped"
        with pytest.raises(tribune.ApprovalRequired):
            drop("sessions")  # used up
    assert ran == ["sessions"]


def test_the_decorator_waits_and_runs_once(people: World) -> None:
    tr = people.tr
    ran: list[str] = []

    @tr.govern("db.drop", approval_wait=10)
    def drop(table: str) -> str:
        ran.append(table)
        return "dropped"

    with tr.task("ops", purpose="clean up", tool_groups=["database"], ttl=7200) as task:
        # The ticket exists once the call asks; find it and have two people approve.
        def approve_when_asked() -> None:
            for _ in range(100):
                found = tr.approvals.list(state=TicketState.PENDING, task_id=task.id)
                if found:
                    tr.approvals.vote(found[0].id, "bob", True)
                    tr.approvals.vote(found[0].id, "dave", True)
                    return
                threading.Event().wait(0.05)

        voter = threading.Thread(target=approve_when_asked)
        voter.start()
        assert drop("sessions") == "dropped"
        voter.join()
    assert ran == ["sessions"]


def test_a_denied_wait_raises_approval_denied(people: World) -> None:
    tr = people.tr

    @tr.govern("db.drop", approval_wait=10)
    async def drop(table: str) -> None:
        raise AssertionError("must not run")

    async def main() -> None:
        async with tr.atask("ops", purpose="clean up", tool_groups=["database"], ttl=7200) as t:

            def deny_when_asked() -> None:
                for _ in range(100):
                    found = tr.approvals.list(state=TicketState.PENDING, task_id=t.id)
                    if found:
                        tr.approvals.vote(found[0].id, "bob", False, reason="no")
                        return
                    threading.Event().wait(0.05)

            voter = threading.Thread(target=deny_when_asked)
            voter.start()
            with pytest.raises(tribune.ApprovalDenied) as err:
                await drop("sessions")
            voter.join()
            assert err.value.code == "approval_denied" and "denied" in str(err.value)

    asyncio.run(main())


def test_a_wait_that_runs_out_is_still_approval_required(people: World) -> None:
    tr = people.tr

    @tr.govern("db.drop", approval_wait=0.2)
    def drop(table: str) -> None:
        raise AssertionError("must not run")

    with tr.task("ops", purpose="clean up", tool_groups=["database"], ttl=7200):
        with pytest.raises(tribune.ApprovalRequired) as err:
            drop("sessions")
        assert tr.approvals.get(err.value.ticket_id or "").state is TicketState.PENDING
    # The task is over, and so is its ticket.
    assert tr.approvals.get(err.value.ticket_id or "").state is TicketState.EXPIRED
