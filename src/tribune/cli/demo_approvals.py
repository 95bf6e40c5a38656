"""`tribune demo --scenario approvals`: a production deletion held for dual control, the
separation-of-duties rules at work, and an approval that covers one exact call, once."""

from __future__ import annotations

import json
from contextlib import suppress
from pathlib import Path
from typing import Any

from tribune.cli.common import console
from tribune.cli.demo import begin, say, step
from tribune.core.model import (
    ApprovalTicket,
    Entitlements,
    ExtractorSpec,
    RecordKind,
    RiskFacts,
    Role,
    Tool,
)
from tribune.errors import ActionDenied, ApprovalRequired, Conflict, Forbidden
from tribune.services.approvals import approving

DROP = Tool(
    "db.drop_table",
    "Drop a database table",
    risk=RiskFacts(read_only=False, destructive=True, open_world=False),
    groups=("database",),
    extractors=(ExtractorSpec("object_id", "/table", role="table"),),
)
# name, groups, who they are in the story
PEOPLE = (
    ("dana", ("ops", "approvers"), "owns ops-bot (and is an approver)"),
    ("erin", ("ops",), "an engineer, not an approver"),
    ("bob", ("approvers",), "an approver"),
    ("carol", ("approvers",), "an approver"),
)


def _tally(ticket: ApprovalTicket) -> str:
    return f"{ticket.state.value} ({approving(ticket)}/{ticket.requirement.quorum})"


def _describe(data: dict[str, Any]) -> str:
    """One approval event in a few words."""
    event = data["event"]
    if event == "approval_requested":
        return f"{data['quorum']} from {', '.join(data['approvers']) or 'any approver'}"
    if event == "approval_vote":
        return f"{data['user']} {'approves' if data['approve'] else 'denies'}"
    if event == "approval_vote_refused":
        return f"{data['user']}: {data['code']}"
    if event == "approval_granted":
        return f"by {', '.join(data['approvers'])}"
    if event == "approval_consumed":
        return f"by action {data['by']}"
    if event == "approval_expired":
        return str(data.get("reason", ""))
    return f"by {data['by']}" if "by" in data else ""


def run_approvals_demo(home: Path | None = None) -> dict[str, Any]:
    """Run the tour; return what each step observed (used by tests)."""
    from tribune.bootstrap import open_tribune

    home = begin(
        home,
        "Tribune demo: approvals",
        "Humans decide high-impact calls, and only the exact call they saw: a quorum of "
        "distinct, eligible people, never the agent's owner alone, once.",
    )
    seen: dict[str, Any] = {}
    with open_tribune(home) as tr:
        step(1, "Set up", "two groups, four people, a destructive tool and an ops agent.")
        tr.registry.add_group("approvers", "people who approve risky actions")
        tr.registry.add_group("ops", "operations engineers")
        keys: dict[str, str] = {}
        for name, groups, who in PEOPLE:
            tr.registry.add_user(name, email=f"{name}@example.com", groups=groups)
            # Each person votes with their own key: the voter is the key's user.
            keys[name] = tr.access.create_key(f"user:{name}", Role.APPROVER, note="demo")[1]
            say(f"{name}: {who}")
        tr.registry.register_tool(DROP)
        with suppress(Conflict):  # a second run in the same home keeps the agent
            tr.registry.register_agent(
                "ops-bot",
                owner="user:dana",
                purpose="database maintenance",
                environment="production",
                entitlements=Entitlements(
                    tool_groups=frozenset({"database"}), environments=frozenset({"production"})
                ),
            )
        task = tr.start_task(
            "ops-bot", purpose="drop the obsolete sessions_2019 table", tool_groups=["database"]
        )
        runs: list[str] = []

        @tr.govern("db.drop_table", task=task.id, environment="production")
        def drop_table(table: str) -> str:
            runs.append(table)  # the body runs only when allowed
            return f"dropped {table}"

        ticket_id = ""

        def vote(name: str, approve: bool, reason: str = "", on: str = "") -> ApprovalTicket:
            """``name`` votes on the ticket (``on``, else the first one) with their own key."""
            caller = tr.access.authenticate(keys[name])
            return tr.approvals.vote(
                on or ticket_id,
                caller.user or "",  # a key without a user is refused as no registered user
                approve,
                reason=reason,
                via="demo",
                key_id=caller.key_id,
            )

        def refused(name: str) -> str:
            try:
                vote(name, True)
            except (Forbidden, Conflict) as exc:
                say(f"{name} approves: refused [{exc.code}]")
                say(f"  {exc.message}")
                return exc.code
            return "counted"

        def attempt(table: str) -> tuple[str, str | None]:
            """Call the governed function: ("ran", None) or (effect, ticket id)."""
            try:
                result = drop_table(table)
            except ApprovalRequired as exc:
                say(f"drop_table({table!r}) → {exc.decision.effect.value}")
                say(f"  ticket {exc.ticket_id}")
                return exc.decision.effect.value, exc.ticket_id
            except ActionDenied as exc:  # not under the default pack
                say(f"drop_table({table!r}) → {exc.message}")
                return exc.decision.effect.value, None
            say(f"drop_table({table!r}) → allow: {result}")
            return "ran", None

        def which(found: str | None) -> str:
            return "the same ticket" if found == ticket_id else "a new ticket"

        step(
            2,
            "A production deletion is held",
            "ops-bot calls db.drop_table in production: the policy asks for two approvers.",
        )
        seen["held"], asked = attempt("sessions_2019")
        ticket_id = asked or ""
        ticket = tr.approvals.get(ticket_id)
        req = ticket.requirement
        seen["requirement"] = (req.quorum, list(req.approvers), req.owner_may_approve)
        owner = "may" if req.owner_may_approve else "may not"
        say(f"needs {req.quorum} approvals from {', '.join(req.approvers)}; the owner {owner}")
        say(f"approvers see: {ticket.tool} {json.dumps(ticket.shown['arguments'])}")
        say(f"  in {ticket.shown['environment']}, for {ticket.shown['purpose']!r}")
        say(f"open until {ticket.expires_at:%H:%M} UTC (at most the task's end)")

        step(3, "The agent's owner approves", "dana owns ops-bot: she may not approve its calls.")
        seen["owner"] = refused("dana")

        step(4, "Someone outside the approvers group approves", "erin is in ops only.")
        seen["outsider"] = refused("erin")

        step(5, "One approver approves", "one of two: the ticket stays pending.")
        seen["first"] = _tally(vote("bob", True, reason="the table is archived"))
        say(f"bob approves: {seen['first']}")

        step(6, "The same approver again", "one person counts once.")
        seen["again"] = refused("bob")
        say(f"the ticket: {_tally(tr.approvals.get(ticket_id))}")

        step(7, "A second, distinct approver", "the quorum is reached.")
        seen["second"] = _tally(vote("carol", True))
        say(f"carol approves: {seen['second']}")

        step(
            8,
            "One argument changed",
            "the approval covers the exact call only: another table is another action.",
        )
        effect, other = attempt("users")
        seen["changed"] = f"{effect}, {which(other)}"
        forced = tr.decide_call(
            "db.drop_table",
            {"table": "users"},
            task=task.id,
            environment="production",
            ticket=ticket_id,
        )
        errors = forced.decision.errors
        seen["forced"] = errors[0].code if errors else forced.decision.effect.value
        say(
            f"naming the approved ticket anyway → {forced.decision.effect.value} [{seen['forced']}]"
        )
        if other is not None:
            closed = vote("carol", False, reason="not this table", on=other)
            seen["denied"] = closed.state.value
            say(f"carol denies that new ticket: {closed.state.value} (one denial closes it)")

        step(9, "The approved call runs", "exactly once; the ticket is used up.")
        seen["run"], _ = attempt("sessions_2019")
        seen["runs"] = list(runs)
        seen["consumed"] = tr.approvals.get(ticket_id).state.value
        say(f"the body ran {len(runs)} time(s); the ticket is {seen['consumed']}")

        step(10, "The same call again", "a ticket is single use: this needs a new approval.")
        effect, after = attempt("sessions_2019")
        seen["again_run"] = f"{effect}, {which(after)}"
        say(f"{which(after)}; the body ran {len(runs)} time(s)")
        tr.tasks.end(task.id)
        seen["after_end"] = tr.approvals.get(after or "").state.value
        say(f"the task ends, and its open ticket with it: {seen['after_end']}")

        step(11, "The audit trail", "every step is an event linked to the call that asked.")
        events: list[str] = []
        numbers: dict[str, int] = {}
        for rec in tr.store.records():
            data = json.loads(rec.body)["data"]
            name = str(data.get("event", ""))
            if (
                rec.task_id == task.id
                and rec.kind is RecordKind.EVENT
                and name.startswith("approval_")
            ):
                events.append(name)
                number = numbers.setdefault(data["ticket"], len(numbers) + 1)
                say(f"ticket #{number}  {name:<19} {_describe(data)}")
        seen["events"] = events
        tr.audit.checkpoint()
        report = tr.audit.verify()
        seen["verify"] = "ok" if report.ok else "tampered"
        say(f"audit verify: {seen['verify']}, {report.checked} records")
    console.print()
    console.print(f"Explore: tribune approvals list --all --home {home}", highlight=False)
    return seen
