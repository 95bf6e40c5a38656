"""Approval tickets: bound to the exact action, quorum of distinct eligible people, separation
of duties, expiry, single use, re-validation at the moment of use, and every step in the audit
log. Each attack in the issue is a test here (the HTTP and CLI channels have their own)."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

import pytest

from tribune.core.model import (
    ApprovalRequirement,
    Effect,
    TicketState,
    Verdict,
)
from tribune.errors import Conflict, Forbidden, InvalidInput, NotFound
from tribune.services.approvals import Asked

from .conftest import World

DROP = {"table": "sessions_2019"}


@pytest.fixture
def people(world: World) -> World:
    reg = world.tr.registry
    reg.add_user("carol", email="carol@acme.com", groups=("approvers",))
    reg.add_user("dave", email="dave@acme.com", groups=("approvers",))
    reg.add_user("erin", email="erin@acme.com", groups=("support", "approvers"))
    return world


def drop(world: World, task_id: str, args: dict[str, Any] | None = None, **kw: Any) -> Verdict:
    return world.tr.governor.decide(task_id, "db.drop", args or DROP, **kw)


def ops_task(world: World, ttl: int = 7200) -> str:
    return world.task("ops", tool_groups=["database"], ttl=ttl).id


def events(world: World, name: str) -> list[dict[str, Any]]:
    return [r["data"] for r in world.records() if r["data"].get("event") == name]


# --------------------------------------------------------------------------- the happy path


def test_dual_control_runs_once_after_two_distinct_approvers(people: World) -> None:
    tr = people.tr
    task = ops_task(people)
    asked = drop(people, task)
    assert asked.decision.effect is Effect.APPROVAL_REQUIRED
    ticket = tr.approvals.get(asked.ticket_id or "")
    assert ticket.state is TicketState.PENDING and ticket.action_id == asked.action_id
    assert ticket.requirement == ApprovalRequirement(2, ("approvers",), False)
    assert ticket.shown["arguments"] == DROP
    # A retry before quorum waits on the same ticket.
    again = drop(people, task)
    assert again.ticket_id == ticket.id and again.decision.effect is Effect.APPROVAL_REQUIRED
    assert tr.approvals.vote(ticket.id, "bob", True).state is TicketState.PENDING
    assert tr.approvals.vote(ticket.id, "carol", True).state is TicketState.APPROVED
    allowed = drop(people, task)
    assert allowed.allowed and allowed.approvals == 2
    used = tr.approvals.get(ticket.id)
    assert (used.state, used.consumed_by) == (TicketState.CONSUMED, allowed.action_id)
    # Single use: the same call again needs a new approval.
    after = drop(people, task)
    assert after.decision.effect is Effect.APPROVAL_REQUIRED and after.ticket_id != ticket.id
    names = [r["data"].get("event") for r in people.records() if r["kind"] == "event"]
    flow = [n for n in names if n and n.startswith("approval_")]
    assert flow == [
        "approval_requested",
        "approval_vote",
        "approval_vote",
        "approval_granted",
        "approval_consumed",
        "approval_requested",
    ]
    (granted,) = events(people, "approval_granted")
    assert granted["approvers"] == ["bob", "carol"] and granted["ticket"] == ticket.id


def test_every_approval_record_is_linked_to_the_asking_call(people: World) -> None:
    task = ops_task(people)
    asked = drop(people, task)
    people.tr.approvals.vote(asked.ticket_id or "", "bob", True, reason="checked the backup")
    linked = [
        r
        for r in people.tr.store.records()
        if r.action_id == asked.action_id and r.kind.value == "event"
    ]
    assert [r.task_id for r in linked] == [task, task]
    vote = events(people, "approval_vote")[0]
    assert (vote["user"], vote["approve"], vote["reason"]) == ("bob", True, "checked the backup")


# --------------------------------------------------------------------------- separation of duties


def test_an_agent_cannot_vote(people: World) -> None:
    task = ops_task(people)
    ticket = drop(people, task).ticket_id or ""
    agent_id = people.tr.registry.resolve_agent("ops").id
    for who in (agent_id, "ops"):
        with pytest.raises(Forbidden) as err:
            people.tr.approvals.vote(ticket, who, True)
        assert err.value.code == "not_eligible"
    assert people.tr.approvals.get(ticket).votes == ()


def test_an_approver_outside_the_group_does_not_count(people: World) -> None:
    ticket = drop(people, ops_task(people)).ticket_id or ""
    with pytest.raises(Forbidden) as err:
        people.tr.approvals.vote(ticket, "alice", True)  # support, not approvers
    assert err.value.code == "not_eligible"
    assert people.tr.approvals.get(ticket).votes == ()


def test_the_same_approver_twice_counts_once(people: World) -> None:
    ticket = drop(people, ops_task(people)).ticket_id or ""
    people.tr.approvals.vote(ticket, "bob", True)
    with pytest.raises(Conflict) as err:
        people.tr.approvals.vote(ticket, "bob", True)
    assert err.value.code == "already_voted"
    got = people.tr.approvals.get(ticket)
    assert got.state is TicketState.PENDING and len(got.votes) == 1


def test_the_owner_may_not_approve_where_the_policy_forbids(people: World) -> None:
    tr = people.tr
    task = people.task(tools=["email.send"])
    asked = tr.governor.decide(task.id, "email.send", {"to": ["x@elsewhere.example"], "body": ""})
    assert asked.decision.effect is Effect.APPROVAL_REQUIRED
    ticket = asked.ticket_id or ""
    with pytest.raises(Forbidden) as err:
        tr.approvals.vote(ticket, "alice", True)  # helper's owner
    assert err.value.code == "owner_may_not_approve"
    # The owner may still say no.
    assert tr.approvals.vote(ticket, "alice", False).state is TicketState.DENIED


def _ask(world: World, requirement: ApprovalRequirement, owner: str = "user:bob") -> str:
    task = world.task()
    asked = Asked(
        action_id="act-x",
        action_digest=f"sha256:{task.id}",
        task=task,
        agent_id=task.agent_id,
        owner=owner,
        tool="email.send",
        requirement=requirement,
        reasons=("test",),
        shown={},
    )
    return world.tr.approvals.request(asked).id


def test_the_owner_is_never_the_only_approver(people: World) -> None:
    tr = people.tr
    alone = _ask(people, ApprovalRequirement(1, (), owner_may_approve=True))
    assert tr.approvals.vote(alone, "bob", True).state is TicketState.PENDING  # owner: not alone
    assert tr.approvals.vote(alone, "carol", True).state is TicketState.APPROVED
    pair = _ask(people, ApprovalRequirement(2, ("approvers",), owner_may_approve=True))
    tr.approvals.vote(pair, "bob", True)  # the owner may be one of two here
    assert tr.approvals.vote(pair, "dave", True).state is TicketState.APPROVED


# --------------------------------------------------------------------------- the exact action


def test_an_approval_never_covers_altered_arguments(people: World) -> None:
    tr = people.tr
    task = ops_task(people)
    ticket = drop(people, task).ticket_id or ""
    tr.approvals.vote(ticket, "bob", True)
    tr.approvals.vote(ticket, "carol", True)
    other = drop(people, task, {"table": "users"})  # one argument changed
    assert other.decision.effect is Effect.APPROVAL_REQUIRED and other.ticket_id != ticket
    forced = drop(people, task, {"table": "users"}, ticket=ticket)  # naming the ticket
    assert forced.decision.effect is Effect.DENY
    assert forced.decision.errors[0].code == "ticket_mismatch"
    envs = drop(people, task, environment="staging", ticket=ticket)  # another environment
    assert envs.decision.errors[0].code == "ticket_mismatch"
    assert tr.approvals.get(ticket).state is TicketState.APPROVED  # still unused
    assert drop(people, task, ticket=ticket).allowed


def test_a_consumed_or_unknown_ticket_authorises_nothing(people: World) -> None:
    tr = people.tr
    task = ops_task(people)
    ticket = drop(people, task).ticket_id or ""
    tr.approvals.vote(ticket, "bob", True)
    tr.approvals.vote(ticket, "carol", True)
    assert drop(people, task, ticket=ticket).allowed
    reused = drop(people, task, ticket=ticket)
    assert reused.decision.errors[0].code == "ticket_not_approved"
    unknown = drop(people, task, ticket="no-such-ticket")
    assert unknown.decision.errors[0].code == "unknown_ticket"


def test_a_check_neither_asks_nor_consumes(people: World) -> None:
    tr = people.tr
    task = ops_task(people)
    checked = drop(people, task, expects_result=False)
    assert checked.decision.effect is Effect.APPROVAL_REQUIRED and checked.ticket_id is None
    ticket = drop(people, task).ticket_id or ""
    tr.approvals.vote(ticket, "bob", True)
    tr.approvals.vote(ticket, "carol", True)
    assert drop(people, task, expects_result=False).allowed  # sees the approvals...
    assert tr.approvals.get(ticket).state is TicketState.APPROVED  # ...without using them
    assert drop(people, task).allowed


# --------------------------------------------------------------------------- time and change


def test_approval_after_expiry_is_refused(people: World) -> None:
    tr = people.tr
    ticket = drop(people, ops_task(people)).ticket_id or ""
    people.clock.advance(3600)
    with pytest.raises(Conflict) as err:
        tr.approvals.vote(ticket, "bob", True)
    assert err.value.code == "ticket_expired"
    assert tr.approvals.get(ticket).state is TicketState.EXPIRED
    assert [e["ticket"] for e in events(people, "approval_expired")] == [ticket]


def test_an_approved_ticket_left_unused_expires(people: World) -> None:
    tr = people.tr
    task = ops_task(people)
    ticket = drop(people, task).ticket_id or ""
    tr.approvals.vote(ticket, "bob", True)
    tr.approvals.vote(ticket, "carol", True)
    people.clock.advance(3600)
    late = drop(people, task)
    assert late.decision.effect is Effect.APPROVAL_REQUIRED and late.ticket_id != ticket
    assert tr.approvals.get(ticket).state is TicketState.EXPIRED


def test_the_ticket_never_outlives_its_task(people: World) -> None:
    task = people.task("ops", tool_groups=["database"], ttl=60)
    ticket = people.tr.approvals.get(drop(people, task.id).ticket_id or "")
    assert ticket.expires_at == task.expires_at


def test_policy_is_evaluated_again_at_the_moment_of_use(people: World) -> None:
    tr = people.tr
    task = ops_task(people)
    ticket = drop(people, task).ticket_id or ""
    tr.approvals.vote(ticket, "bob", True)
    tr.approvals.vote(ticket, "carol", True)
    tr.tasks.end(task)  # the task ended in between
    ended = drop(people, task)
    assert ended.decision.effect is Effect.DENY
    assert ended.decision.errors[0].code == "task_inactive"
    assert tr.approvals.get(ticket).state is TicketState.EXPIRED  # closed with its task, unused


def test_a_policy_change_in_between_stops_the_call(people: World) -> None:
    tr = people.tr
    task = ops_task(people)
    ticket = drop(people, task).ticket_id or ""
    tr.approvals.vote(ticket, "bob", True)
    tr.approvals.vote(ticket, "carol", True)
    active = tr.store.active_policy_version()
    assert active is not None
    files = dict(active.files)
    ops = tr.registry.resolve_agent("ops").id
    files["policies/stop.cedar"] = (
        '@id("stop-drops")\n@reason("drops are stopped")\n'
        f'forbid (principal == Agent::"{ops}", action == Action::"call", '
        'resource == Tool::"db.drop");\n'
    )
    tr.policies.activate_files(files, note="stop drops", allow_untested=True)
    stopped = drop(people, task)
    assert stopped.decision.effect is Effect.DENY
    assert "stop-drops" in stopped.decision.policy_ids
    assert tr.approvals.get(ticket).state is TicketState.APPROVED


# --------------------------------------------------------------------------- races


def test_racing_votes_reach_quorum_once_and_the_call_runs_once(people: World) -> None:
    tr = people.tr
    task = ops_task(people)
    ticket = drop(people, task).ticket_id or ""
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def vote(user: str) -> None:
        barrier.wait()
        try:
            tr.approvals.vote(ticket, user, True)
        except BaseException as exc:  # collected: a closed ticket refuses the late voter
            errors.append(exc)

    threads = [threading.Thread(target=vote, args=(u,)) for u in ("bob", "carol", "dave")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(isinstance(e, Conflict) for e in errors)
    assert tr.approvals.get(ticket).state is TicketState.APPROVED
    assert len(events(people, "approval_granted")) == 1

    runs: list[Verdict] = []
    start = threading.Barrier(4)

    def run() -> None:
        start.wait()
        runs.append(drop(people, task))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(1 for v in runs if v.allowed) == 1
    assert len(events(people, "approval_consumed")) == 1


# --------------------------------------------------------------------------- bad input, waiting


def test_bad_votes_are_refused(people: World) -> None:
    ticket = drop(people, ops_task(people)).ticket_id or ""
    with pytest.raises(NotFound):
        people.tr.approvals.vote("nope", "bob", True)
    with pytest.raises(InvalidInput):
        people.tr.approvals.vote(ticket, "bob", True, reason="x" * 1001)
    with pytest.raises(Forbidden):
        people.tr.approvals.vote(ticket, "nobody", True)
    people.tr.approvals.vote(ticket, "bob", False)
    with pytest.raises(Conflict) as err:
        people.tr.approvals.vote(ticket, "carol", True)
    assert err.value.code == "ticket_closed"


def test_waiting_returns_when_decided_or_at_the_timeout(people: World) -> None:
    tr = people.tr
    ticket = drop(people, ops_task(people)).ticket_id or ""
    assert tr.approvals.wait(ticket, 0.05, every=0.01).state is TicketState.PENDING

    def approve() -> None:
        tr.approvals.vote(ticket, "bob", True)
        tr.approvals.vote(ticket, "carol", True)

    timer = threading.Timer(0.1, approve)
    timer.start()
    assert tr.approvals.wait(ticket, 5, every=0.02).state is TicketState.APPROVED
    timer.join()


def test_list_shows_tickets_newest_first(people: World) -> None:
    tr = people.tr
    first = drop(people, ops_task(people)).ticket_id
    people.clock.advance(1)
    second = drop(people, ops_task(people)).ticket_id
    assert [t.id for t in tr.approvals.list()] == [second, first]
    tr.approvals.vote(second or "", "bob", False)
    pending = tr.approvals.list(state=TicketState.PENDING)
    assert [t.id for t in pending] == [first]
    assert replace(pending[0], votes=()) == pending[0]


def test_ending_the_task_closes_its_tickets(people: World) -> None:
    tr = people.tr
    task = ops_task(people)
    open_ticket = drop(people, task).ticket_id or ""
    approved = drop(people, task, {"table": "old"}).ticket_id or ""
    tr.approvals.vote(approved, "bob", True)
    tr.approvals.vote(approved, "carol", True)
    tr.tasks.end(task)
    for ticket in (open_ticket, approved):
        assert tr.approvals.get(ticket).state is TicketState.EXPIRED
    reasons = [e.get("reason") for e in events(people, "approval_expired")]
    assert reasons == ["task_ended", "task_ended"]
    with pytest.raises(Conflict):
        tr.approvals.vote(open_ticket, "dave", True)


def test_refused_votes_are_recorded(people: World) -> None:
    tr = people.tr
    ticket = drop(people, ops_task(people)).ticket_id or ""
    for user in ("alice", "ops"):
        with pytest.raises(Forbidden):
            tr.approvals.vote(ticket, user, True)
    tr.approvals.vote(ticket, "bob", True)
    with pytest.raises(Conflict):
        tr.approvals.vote(ticket, "bob", True)
    refused = [(e["user"], e["code"]) for e in events(people, "approval_vote_refused")]
    assert refused == [("alice", "not_eligible"), ("ops", "not_eligible"), ("bob", "already_voted")]


def test_the_kill_switch_closes_tickets_too(people: World) -> None:
    tr = people.tr
    ticket = drop(people, ops_task(people)).ticket_id or ""
    tr.killswitch.revoke(agent="ops")
    assert tr.approvals.get(ticket).state is TicketState.EXPIRED
    assert events(people, "approval_expired")[0]["reason"] == "kill_switch"


def test_the_environment_shown_is_the_one_policy_judged(people: World) -> None:
    ticket = people.tr.approvals.get(drop(people, ops_task(people)).ticket_id or "")
    assert ticket.shown["environment"] == "production"  # the task's, the call named none


def test_the_asking_side_may_withdraw_a_pending_ticket_only(people: World) -> None:
    tr = people.tr
    task = ops_task(people)
    asked = drop(people, task)
    ticket = asked.ticket_id or ""
    withdrawn = tr.approvals.withdraw(ticket, by=asked.agent_id, via="elicitation")
    assert withdrawn.state is TicketState.DENIED
    (event,) = events(people, "approval_withdrawn")
    assert (event["by"], event["via"], event["ticket"]) == (asked.agent_id, "elicitation", ticket)
    with pytest.raises(Conflict):  # approvers can no longer let it run
        tr.approvals.vote(ticket, "bob", True)
    # An approved, unused ticket is withdrawn too (the call does not run); a used one stays.
    other = drop(people, task, {"table": "old"}).ticket_id or ""
    tr.approvals.vote(other, "bob", True)
    tr.approvals.vote(other, "carol", True)
    assert tr.approvals.withdraw(other, by="x", via="elicitation").state is TicketState.DENIED
    assert not drop(people, task, {"table": "old"}, ticket=other).allowed
    used = drop(people, task, {"table": "new"}).ticket_id or ""
    tr.approvals.vote(used, "bob", True)
    tr.approvals.vote(used, "carol", True)
    assert drop(people, task, {"table": "new"}).allowed
    assert tr.approvals.withdraw(used, by="x", via="elicitation").state is TicketState.CONSUMED
    assert len(events(people, "approval_withdrawn")) == 2
