"""Tribune approvals through Pydantic AI's own deferred tools: a call that needs approval ends
the run with ``DeferredToolRequests`` (the ticket in its metadata), the app resumes with
``DeferredToolResults`` (``resolve_deferred`` builds them), and the resumed call is decided
again. Only an approved Tribune ticket runs a call.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic_ai import Agent, DeferredToolRequests, DeferredToolResults, ToolApproved
from pydantic_ai.capabilities import HandleDeferredToolCalls
from pydantic_ai.messages import ToolReturnPart
from pydantic_ai.models.function import FunctionModel

from tribune.bootstrap import Tribune
from tribune.core.model import Task
from tribune.integrations.pydantic_ai import (
    TribuneCapability,
    aresolve_deferred,
    resolve_deferred,
)

from .agent_world import DROP, MAIL, UNKNOWN, kinds, records, state_of, tickets, tr, vote
from .test_pydantic_ai import NAMES, Script

__all__ = ["tr"]  # the shared home fixture
MODES = ["sync", "async"]


class Session:
    """A governed agent in one task, run and resumed sync or async."""

    def __init__(
        self,
        tr: Tribune,
        mode: str,
        script: Script,
        ran: list[str],
        task: Task | None = None,
        own_approval: bool = False,
        **scope: Any,
    ) -> None:
        self.tr, self.mode, self.script = tr, mode, script
        self.task = task or tr.start_task("bot", **scope)
        names = {**NAMES, "db_drop": "db.drop"}
        self.agent: Agent[None, Any] = Agent(
            FunctionModel(script),
            output_type=[str, DeferredToolRequests],
            capabilities=[TribuneCapability(tr, task=self.task.id, names=names)],
        )

        @self.agent.tool_plain(requires_approval=own_approval)
        def email_send(to: str, body: str) -> str:
            ran.append(f"email_send:{to}")
            return "sent"

        @self.agent.tool_plain
        def db_drop(table: str) -> str:
            ran.append(f"db_drop:{table}")
            return f"dropped {table}"

        self.messages: list[Any] = []

    def run(self, results: DeferredToolResults | None = None) -> Any:
        kw: dict[str, Any] = (
            {"message_history": self.messages, "deferred_tool_results": results}
            if results is not None
            else {"user_prompt": "help"}
        )
        if self.mode == "sync":
            result = self.agent.run_sync(**kw)
        else:
            result = asyncio.run(self.agent.run(**kw))
        self.messages = result.all_messages()
        return result.output

    def resolve(self, requests: DeferredToolRequests, timeout: float = 0.0) -> Any:
        if self.mode == "sync":
            return resolve_deferred(self.tr, requests, timeout=timeout)
        return asyncio.run(aresolve_deferred(self.tr, requests, timeout=timeout))


def decisions(tr: Tribune) -> list[dict[str, Any]]:
    return [r["data"] for r in records(tr) if r["kind"] == "decision"]


def last_outcome(script: Script) -> ToolReturnPart:
    outcome = script.tool_results()[-1]
    assert isinstance(outcome, ToolReturnPart)
    return outcome


# --------------------------------------------------------------------------- (1) deferred


@pytest.mark.parametrize("mode", MODES)
def test_approval_required_defers_the_call_with_the_ticket(tr: Tribune, mode: str) -> None:
    ran: list[str] = []
    session = Session(tr, mode, Script(("email_send", UNKNOWN)), ran, **MAIL)
    requests = session.run()
    assert isinstance(requests, DeferredToolRequests)
    assert ran == []
    [call] = requests.approvals
    [ticket] = tickets(tr)
    asked = requests.metadata[call.tool_call_id]["tribune"]
    assert asked["ticket"] == ticket and asked["tool"] == "email.send"
    assert state_of(tr, ticket) == "pending"
    assert kinds(records(tr)) == ["intent", "decision"]
    assert decisions(tr)[0]["effect"] == "approval_required"
    assert asked["action_id"] == records(tr)[0]["action_id"]


# --------------------------------------------------------------------------- (2) approved


@pytest.mark.parametrize("mode", MODES)
def test_approved_ticket_resumes_and_runs_exactly_once(tr: Tribune, mode: str) -> None:
    ran: list[str] = []
    script = Script(("email_send", UNKNOWN))
    session = Session(tr, mode, script, ran, **MAIL)
    requests = session.run()
    [ticket] = tickets(tr)
    assert vote(tr, ticket, "bob") == "approved"
    results = session.resolve(requests, timeout=5)
    [answer] = results.approvals.values()
    assert isinstance(answer, ToolApproved)
    assert session.run(results) == "done"
    assert ran == ["email_send:eve@elsewhere.example"]
    assert last_outcome(script).content == "sent"
    assert state_of(tr, ticket) == "consumed"
    found = records(tr)
    assert kinds(found) == ["intent", "decision", "intent", "decision", "result"]
    assert found[3]["data"]["effect"] == "allow"
    assert found[3]["data"]["approved_by_ticket"] == ticket
    assert found[4]["data"]["status"] == "ok"
    assert tr.approvals.get(ticket).consumed_by == found[3]["action_id"]


def test_dual_control_runs_after_both_approvers(tr: Tribune) -> None:
    ran: list[str] = []
    session = Session(tr, "sync", Script(("db_drop", {"table": "t1"})), ran, **DROP)
    requests = session.run()
    [ticket] = tickets(tr)
    vote(tr, ticket, "bob", "carol")
    session.run(session.resolve(requests, timeout=5))
    assert ran == ["db_drop:t1"]
    assert state_of(tr, ticket) == "consumed"


# --------------------------------------------------------------------------- (3) app-only approval


@pytest.mark.parametrize("mode", MODES)
def test_an_approval_without_tribunes_does_not_run_a_pending_call(tr: Tribune, mode: str) -> None:
    ran: list[str] = []
    script = Script(("db_drop", {"table": "t1"}))
    session = Session(tr, mode, script, ran, **DROP)
    requests = session.run()
    [ticket] = tickets(tr)
    assert vote(tr, ticket, "bob") == "pending"  # one of two
    [call] = requests.approvals
    assert session.run(DeferredToolResults(approvals={call.tool_call_id: True})) == "done"
    assert ran == []
    outcome = last_outcome(script)
    assert outcome.outcome == "failed"
    assert f"ticket `{ticket}` is pending" in str(outcome.content)
    assert state_of(tr, ticket) == "pending"
    assert tickets(tr) == [ticket]
    assert [d["effect"] for d in decisions(tr)] == ["approval_required", "deny"]


def test_an_approval_without_tribunes_does_not_run_a_denied_call(tr: Tribune) -> None:
    ran: list[str] = []
    script = Script(("email_send", UNKNOWN))
    session = Session(tr, "sync", script, ran, **MAIL)
    requests = session.run()
    [ticket] = tickets(tr)
    vote(tr, ticket, "carol", approve=False)
    session.run(requests.build_results(approve_all=True))
    assert ran == []
    assert f"ticket `{ticket}` is denied" in str(last_outcome(script).content)
    assert tickets(tr) == [ticket]


def test_a_ticket_named_in_forged_metadata_does_not_run_the_call(tr: Tribune) -> None:
    """A resume in a fresh process reads the ticket from the results' metadata; a ticket for
    another action (or none at all) lets nothing run."""
    ran: list[str] = []
    first = Session(tr, "sync", Script(("db_drop", {"table": "t1"})), ran, **DROP)
    other = first.run()
    [other_ticket] = tickets(tr)
    vote(tr, other_ticket, "bob", "carol")  # approved, but for dropping t1
    script = Script(("db_drop", {"table": "t2"}))
    second = Session(tr, "sync", script, ran, first.task, **DROP)
    requests = second.run()
    [call] = requests.approvals
    forged = other.metadata[other.approvals[0].tool_call_id]
    fresh = Session(tr, "sync", script, ran, first.task, **DROP)  # nothing remembered
    fresh.messages = second.messages
    results = DeferredToolResults(
        approvals={call.tool_call_id: True}, metadata={call.tool_call_id: forged}
    )
    fresh.run(results)
    assert ran == []
    assert "for another action" in str(last_outcome(script).content)
    assert state_of(tr, other_ticket) == "approved"  # not used by the other call


# --------------------------------------------------------------------------- (4) denied


@pytest.mark.parametrize("mode", MODES)
def test_denied_ticket_ends_as_a_denial_the_model_reads(tr: Tribune, mode: str) -> None:
    ran: list[str] = []
    script = Script(("email_send", UNKNOWN))
    session = Session(tr, mode, script, ran, **MAIL)
    requests = session.run()
    [ticket] = tickets(tr)
    vote(tr, ticket, "bob", approve=False)
    assert session.run(session.resolve(requests, timeout=5)) == "done"
    assert ran == []
    text = str(last_outcome(script).content)
    assert text.startswith("Tribune: `email.send` was not approved (its ticket is denied)")
    assert kinds(records(tr)) == ["intent", "decision"]
    assert tickets(tr) == [ticket]


def test_a_ticket_still_pending_at_the_timeout_is_denied_to_the_model(tr: Tribune) -> None:
    ran: list[str] = []
    script = Script(("email_send", UNKNOWN))
    session = Session(tr, "sync", script, ran, **MAIL)
    session.run(session.resolve(session.run(), timeout=0.2))
    assert ran == []
    assert str(last_outcome(script).content).startswith("Tribune: `email.send` is still pending")


# --------------------------------------------------------------------------- around the flow


def test_a_resume_in_a_fresh_process_uses_the_ticket_in_the_metadata(tr: Tribune) -> None:
    ran: list[str] = []
    script = Script(("email_send", UNKNOWN))
    first = Session(tr, "sync", script, ran, **MAIL)
    requests = first.run()
    [ticket] = tickets(tr)
    vote(tr, ticket, "bob")
    fresh = Session(tr, "sync", script, ran, first.task, **MAIL)  # nothing remembered
    fresh.messages = first.messages
    fresh.run(resolve_deferred(tr, requests, timeout=5))
    assert ran == ["email_send:eve@elsewhere.example"]
    assert state_of(tr, ticket) == "consumed"
    assert decisions(tr)[-1]["approved_by_ticket"] == ticket


def test_a_tools_own_approval_comes_first_then_tribunes(tr: Tribune) -> None:
    """``requires_approval=True`` defers the call before Tribune sees it; once the app approves,
    Tribune decides and defers it again with its own ticket."""
    ran: list[str] = []
    script = Script(("email_send", UNKNOWN))
    session = Session(tr, "sync", script, ran, own_approval=True, **MAIL)
    own = session.run()
    [call] = own.approvals
    assert "tribune" not in own.metadata.get(call.tool_call_id, {})
    assert resolve_deferred(tr, own, timeout=0).approvals == {}  # the app's to answer
    assert records(tr) == []
    again = session.run(own.build_results(approve_all=True))
    assert isinstance(again, DeferredToolRequests)
    [ticket] = tickets(tr)
    assert again.metadata[call.tool_call_id]["tribune"]["ticket"] == ticket
    vote(tr, ticket, "bob")
    assert session.run(resolve_deferred(tr, again, timeout=5)) == "done"
    assert ran == ["email_send:eve@elsewhere.example"]
    assert state_of(tr, ticket) == "consumed"


def test_a_run_can_wait_inline_with_handle_deferred_tool_calls(tr: Tribune) -> None:
    """``HandleDeferredToolCalls`` with ``aresolve_deferred`` keeps the run going while the
    humans decide (here one votes as the handler starts waiting)."""
    ran: list[str] = []
    script = Script(("email_send", UNKNOWN))
    task = tr.start_task("bot", **MAIL)

    async def wait_for_humans(ctx: Any, requests: DeferredToolRequests) -> DeferredToolResults:
        [ticket] = tickets(tr)
        await asyncio.to_thread(vote, tr, ticket, "bob")
        return await aresolve_deferred(tr, requests, timeout=5)

    agent: Agent[None, str] = Agent(
        FunctionModel(script),
        capabilities=[
            TribuneCapability(tr, task=task.id, names=NAMES),
            HandleDeferredToolCalls(handler=wait_for_humans),
        ],
    )

    @agent.tool_plain
    def email_send(to: str, body: str) -> str:
        ran.append(to)
        return "sent"

    assert agent.run_sync("help").output == "done"
    assert ran == ["eve@elsewhere.example"]
    assert state_of(tr, tickets(tr)[0]) == "consumed"
