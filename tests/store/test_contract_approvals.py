"""The approvals part of the store contract (tickets and votes), on every backend."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from tribune.core.model import ApprovalRequirement, ApprovalTicket, TicketState, Vote
from tribune.errors import Conflict, InvalidInput, NotFound
from tribune.ports import Store

from .contract_helpers import IST, T0, agent


def ticket(ticket_id: str = "tk1", digest: str = "sha256:aa", **changes: object) -> ApprovalTicket:
    values: dict[str, object] = {
        "id": ticket_id,
        "action_id": "act-1",
        "action_digest": digest,
        "task_id": "t1",
        "agent_id": agent().id,
        "owner": "user:alice",
        "tool": "db.drop",
        "requirement": ApprovalRequirement(2, ("sre-leads",), owner_may_approve=True),
        "reasons": ("a destructive action in production needs two approvers ✓",),
        "created_at": T0.astimezone(IST),
        "expires_at": T0 + timedelta(hours=1),
        "shown": {"arguments": {"table": "sessions"}, "environment": "production"},
    }
    values.update(changes)
    return ApprovalTicket(**values)  # type: ignore[arg-type]


def vote(user: str, approve: bool = True, seconds: int = 1) -> Vote:
    return Vote(user, approve, T0 + timedelta(seconds=seconds), "looks right", "cli", "key1")


def test_a_ticket_round_trips_with_its_votes(store: Store) -> None:
    assert store.get_ticket("tk1") is None
    store.add_ticket(ticket())
    got = store.get_ticket("tk1")
    assert got == ticket()
    assert got is not None and got.created_at.utcoffset() == timedelta(0)
    with pytest.raises(Conflict):
        store.add_ticket(ticket(tool="other"))
    assert store.add_vote("tk1", vote("bob", seconds=2)) is True
    assert store.add_vote("tk1", vote("carol", False, seconds=1)) is True
    got = store.get_ticket("tk1")
    assert got is not None
    assert got.votes == (vote("carol", False, seconds=1), vote("bob", seconds=2))
    with pytest.raises(NotFound):
        store.add_vote("nope", vote("bob"))


def test_one_vote_per_person_even_racing(store: Store) -> None:
    store.add_ticket(ticket())
    assert store.add_vote("tk1", vote("bob")) is True
    assert store.add_vote("tk1", vote("bob", approve=False)) is False  # the first one stands
    results: list[bool] = []
    barrier = threading.Barrier(6)

    def cast() -> None:
        barrier.wait()
        results.append(store.add_vote("tk1", vote("dave")))

    threads = [threading.Thread(target=cast) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 5 + [True]
    got = store.get_ticket("tk1")
    assert got is not None and [v.user for v in got.votes] == ["bob", "dave"]
    assert got.votes[0].approve is True


def test_moving_a_ticket_is_compare_and_set(store: Store) -> None:
    store.add_ticket(ticket())
    at = T0 + timedelta(minutes=1)
    assert store.move_ticket("tk1", TicketState.PENDING, TicketState.APPROVED, at) is True
    assert store.move_ticket("tk1", TicketState.PENDING, TicketState.DENIED, at) is False
    later = T0 + timedelta(minutes=2)
    assert store.move_ticket(
        "tk1", TicketState.APPROVED, TicketState.CONSUMED, later, consumed_by="act-2"
    )
    got = store.get_ticket("tk1")
    assert got is not None
    assert (got.state, got.resolved_at, got.consumed_by) == (TicketState.CONSUMED, later, "act-2")
    assert store.move_ticket("nope", TicketState.PENDING, TicketState.DENIED, at) is False


def test_racing_consumers_use_a_ticket_once(store: Store) -> None:
    store.add_ticket(ticket(state=TicketState.APPROVED))
    results: list[bool] = []
    barrier = threading.Barrier(6)

    def consume(i: int) -> None:
        barrier.wait()
        results.append(
            store.move_ticket(
                "tk1", TicketState.APPROVED, TicketState.CONSUMED, T0, consumed_by=f"a{i}"
            )
        )

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 5 + [True]


def test_find_and_list(store: Store) -> None:
    old = ticket("tk1", created_at=T0)
    new = ticket("tk2", created_at=T0 + timedelta(seconds=5))
    other = ticket("tk3", digest="sha256:bb", task_id="t2", created_at=T0 + timedelta(seconds=9))
    for one in (old, new, other):
        store.add_ticket(one)
    pending = [TicketState.PENDING, TicketState.APPROVED]
    assert store.find_ticket("sha256:aa", pending) == new
    store.move_ticket("tk2", TicketState.PENDING, TicketState.DENIED, T0)
    assert store.find_ticket("sha256:aa", pending) == old
    assert store.find_ticket("sha256:aa", []) is None
    assert store.find_ticket("sha256:zz", pending) is None
    assert [t.id for t in store.list_tickets()] == ["tk3", "tk2", "tk1"]
    assert [t.id for t in store.list_tickets(state=TicketState.PENDING)] == ["tk3", "tk1"]
    assert [t.id for t in store.list_tickets(task_id="t1", limit=1)] == ["tk2"]
    for bad in (0, 1001):
        with pytest.raises(InvalidInput):
            store.list_tickets(limit=bad)
