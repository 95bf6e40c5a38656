"""Tribune approvals through LangGraph's own human-in-the-loop: ``TribuneMiddleware``
interrupts the graph with a per-call ``tool_approval`` request carrying the ticket, the app
answers with ``Command(resume=...)`` (``resolve_interrupts`` builds the answers), and the
resumed call is decided again. Only an approved Tribune ticket runs a call.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import HumanInTheLoopMiddleware
from langchain_core.tools import BaseTool, tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from tribune.bootstrap import Tribune
from tribune.core.model import Task
from tribune.integrations.langchain import (
    TribuneMiddleware,
    aresolve_interrupts,
    resolve_interrupts,
)

from .agent_world import DROP, MAIL, UNKNOWN, kinds, records, state_of, tickets, tr, vote
from .test_langchain import NAMES, ScriptedChatModel, scripted, tools

__all__ = ["tr"]  # the shared home fixture
MODES = ["sync", "async"]
APPROVE = {"type": "approve"}


def db_drop(ran: list[str]) -> BaseTool:
    @tool
    def db_drop(table: str) -> str:
        """Drop a table."""
        ran.append(f"db_drop:{table}")
        return f"dropped {table}"

    return db_drop


class Session:
    """A governed agent with a checkpointer in one task and one thread, run sync or async."""

    def __init__(
        self,
        tr: Tribune,
        mode: str,
        model: ScriptedChatModel,
        ran: list[str],
        task: Task | None = None,
        saver: InMemorySaver | None = None,
        middleware: list[Any] | None = None,
        **scope: Any,
    ) -> None:
        self.tr, self.mode, self.model = tr, mode, model
        self.task = task or tr.start_task("bot", **scope)
        self.saver = saver or InMemorySaver()
        governor = TribuneMiddleware(
            tr,
            task=self.task.id,
            environment=scope.get("environment"),
            names={**NAMES, "db_drop": "db.drop"},
        )
        self.agent = create_agent(
            model,
            [*tools(ran, mode), db_drop(ran)],
            middleware=[*(middleware or []), governor],
            checkpointer=self.saver,
        )
        self.config: Any = {"configurable": {"thread_id": "thread-1"}}

    def run(self, start: Any = None) -> dict[str, Any]:
        start = start or {"messages": [{"role": "user", "content": "help"}]}
        if self.mode == "sync":
            return self.agent.invoke(start, self.config)
        return asyncio.run(self.agent.ainvoke(start, self.config))

    def resume(self, answers: dict[str, Any]) -> dict[str, Any]:
        return self.run(Command(resume=answers))

    def resolve(self, out: dict[str, Any], timeout: float = 0.0) -> dict[str, Any]:
        asked = out["__interrupt__"]
        if self.mode == "sync":
            return resolve_interrupts(self.tr, asked, timeout=timeout)
        return asyncio.run(aresolve_interrupts(self.tr, asked, timeout=timeout))


def decisions(tr: Tribune) -> list[dict[str, Any]]:
    return [r["data"] for r in records(tr) if r["kind"] == "decision"]


def last_tool_text(model: ScriptedChatModel) -> str:
    [seen] = model.tool_outputs()
    assert isinstance(seen.content, str)
    return seen.content


# --------------------------------------------------------------------------- (1) pause


@pytest.mark.parametrize("mode", MODES)
def test_approval_required_interrupts_the_graph_with_the_ticket(tr: Tribune, mode: str) -> None:
    ran: list[str] = []
    model = scripted(("email_send", UNKNOWN))
    session = Session(tr, mode, model, ran, **MAIL)
    out = session.run()
    assert ran == []
    [asked] = out["__interrupt__"]
    [ticket] = tickets(tr)
    value = asked.value
    assert value["type"] == "tool_approval" and value["tool_call_id"] == "call1"
    assert value["name"] == "email_send" and value["args"] == UNKNOWN
    assert value["tribune"]["ticket"] == ticket and value["tribune"]["tool"] == "email.send"
    assert ticket in value["description"]
    assert state_of(tr, ticket) == "pending"
    assert len(model.seen) == 1  # the model waits too
    assert kinds(records(tr)) == ["intent", "decision"]
    assert decisions(tr)[0]["effect"] == "approval_required"


# --------------------------------------------------------------------------- (2) approved


@pytest.mark.parametrize("mode", MODES)
def test_approved_ticket_resumes_and_runs_exactly_once(tr: Tribune, mode: str) -> None:
    ran: list[str] = []
    model = scripted(("email_send", UNKNOWN))
    session = Session(tr, mode, model, ran, **MAIL)
    out = session.run()
    [ticket] = tickets(tr)
    assert vote(tr, ticket, "bob") == "approved"
    answers = session.resolve(out, timeout=5)
    assert list(answers.values()) == [APPROVE]
    done = session.resume(answers)
    assert "__interrupt__" not in done and done["messages"][-1].content == "done"
    assert ran == ["email_send:eve@elsewhere.example"]
    assert last_tool_text(model) == "sent"
    assert state_of(tr, ticket) == "consumed"
    found = records(tr)
    assert kinds(found) == ["intent", "decision", "intent", "decision", "result"]
    assert found[3]["data"]["effect"] == "allow"
    assert found[3]["data"]["approved_by_ticket"] == ticket
    assert found[4]["data"]["status"] == "ok"
    assert tr.approvals.get(ticket).consumed_by == found[3]["action_id"]


def test_dual_control_runs_after_both_approvers(tr: Tribune) -> None:
    ran: list[str] = []
    session = Session(tr, "sync", scripted(("db_drop", {"table": "t1"})), ran, **DROP)
    out = session.run()
    [ticket] = tickets(tr)
    vote(tr, ticket, "bob", "carol")
    session.resume(session.resolve(out, timeout=5))
    assert ran == ["db_drop:t1"]
    assert state_of(tr, ticket) == "consumed"


# --------------------------------------------------------------------------- (3) app-only approval


@pytest.mark.parametrize("mode", MODES)
def test_resuming_with_approve_while_the_ticket_is_pending_does_not_run(
    tr: Tribune, mode: str
) -> None:
    ran: list[str] = []
    model = scripted(("db_drop", {"table": "t1"}))
    session = Session(tr, mode, model, ran, **DROP)
    out = session.run()
    [ticket] = tickets(tr)
    assert vote(tr, ticket, "bob") == "pending"  # one of two
    [asked] = out["__interrupt__"]
    done = session.resume({asked.id: APPROVE})  # the graph's own answer, not Tribune's
    assert "__interrupt__" not in done
    assert ran == []
    text = last_tool_text(model)
    assert f"ticket `{ticket}` is pending" in text and "did not run" in text
    assert model.tool_outputs()[0].status == "error"
    assert state_of(tr, ticket) == "pending"
    assert tickets(tr) == [ticket]
    assert [d["effect"] for d in decisions(tr)] == ["approval_required", "deny"]


def test_resuming_with_approve_after_a_denial_does_not_run(tr: Tribune) -> None:
    ran: list[str] = []
    model = scripted(("email_send", UNKNOWN))
    session = Session(tr, "sync", model, ran, **MAIL)
    out = session.run()
    [ticket] = tickets(tr)
    vote(tr, ticket, "carol", approve=False)
    session.resume({out["__interrupt__"][0].id: APPROVE})
    assert ran == []
    assert f"ticket `{ticket}` is denied" in last_tool_text(model)
    assert tickets(tr) == [ticket]  # the resumed call was not asked again as a new action


def test_a_reject_answer_never_runs_even_when_tribune_approved(tr: Tribune) -> None:
    ran: list[str] = []
    model = scripted(("email_send", UNKNOWN))
    session = Session(tr, "sync", model, ran, **MAIL)
    out = session.run()
    [ticket] = tickets(tr)
    vote(tr, ticket, "bob")
    session.resume({out["__interrupt__"][0].id: {"type": "reject", "message": "not today"}})
    assert ran == []
    assert last_tool_text(model) == "not today"
    assert state_of(tr, ticket) == "approved"  # unused: it expires by itself


def test_an_edit_answer_is_refused_by_the_schema(tr: Tribune) -> None:
    """An edited call would be another action; the interrupt accepts approve or reject only."""
    ran: list[str] = []
    session = Session(tr, "sync", scripted(("email_send", UNKNOWN)), ran, **MAIL)
    out = session.run()
    [asked] = out["__interrupt__"]
    edit = {"type": "edit", "edited_action": {"name": "email_send", "args": {"to": "x"}}}
    with pytest.raises(Exception, match="edit"):
        session.resume({asked.id: edit})
    assert ran == []


# --------------------------------------------------------------------------- (4) denied


@pytest.mark.parametrize("mode", MODES)
def test_denied_ticket_ends_as_a_denial_the_model_reads(tr: Tribune, mode: str) -> None:
    ran: list[str] = []
    model = scripted(("email_send", UNKNOWN))
    session = Session(tr, mode, model, ran, **MAIL)
    out = session.run()
    [ticket] = tickets(tr)
    vote(tr, ticket, "bob", approve=False)
    answers = session.resolve(out, timeout=5)
    assert [a["type"] for a in answers.values()] == ["reject"]
    done = session.resume(answers)
    assert done["messages"][-1].content == "done"
    assert ran == []
    text = last_tool_text(model)
    assert text.startswith("Tribune: `email.send` was not approved (its ticket is denied)")
    assert kinds(records(tr)) == ["intent", "decision"]
    assert tickets(tr) == [ticket]


def test_a_ticket_still_pending_at_the_timeout_is_answered_reject(tr: Tribune) -> None:
    ran: list[str] = []
    model = scripted(("email_send", UNKNOWN))
    session = Session(tr, "sync", model, ran, **MAIL)
    out = session.run()
    session.resume(session.resolve(out, timeout=0.2))
    assert ran == []
    assert last_tool_text(model).startswith("Tribune: `email.send` is still pending")


# --------------------------------------------------------------------------- around the flow


@pytest.mark.parametrize("mode", MODES)
def test_parallel_calls_each_interrupt_and_each_runs_once(tr: Tribune, mode: str) -> None:
    ran: list[str] = []
    other = {"to": "zed@elsewhere.example", "body": "hi"}
    model = scripted(
        [("email_send", UNKNOWN), ("email_send", other), ("crm_read", {"customer_id": "7"})]
    )
    session = Session(tr, mode, model, ran, **MAIL)
    out = session.run()
    assert ran == ["crm_read:7"]  # the allowed call ran at once
    assert len(out["__interrupt__"]) == 2
    by_recipient = {tr.approvals.get(t).shown["arguments"]["to"]: t for t in tickets(tr)}
    eve, zed = by_recipient["eve@elsewhere.example"], by_recipient["zed@elsewhere.example"]
    vote(tr, eve, "bob")
    vote(tr, zed, "carol", approve=False)
    session.resume(session.resolve(out, timeout=5))
    assert sorted(ran) == ["crm_read:7", "email_send:eve@elsewhere.example"]
    assert (state_of(tr, eve), state_of(tr, zed)) == ("consumed", "denied")


def test_a_resume_in_a_fresh_process_finds_the_approved_ticket(tr: Tribune) -> None:
    """A new middleware (nothing remembered) resuming the same checkpoint decides the call
    afresh: the approved ticket is found by the action's digest and used once."""
    ran: list[str] = []
    first = Session(tr, "sync", scripted(("email_send", UNKNOWN)), ran, **MAIL)
    out = first.run()
    [ticket] = tickets(tr)
    vote(tr, ticket, "bob")
    fresh = Session(tr, "sync", scripted(), ran, first.task, first.saver, **MAIL)
    fresh.resume({out["__interrupt__"][0].id: APPROVE})
    assert ran == ["email_send:eve@elsewhere.example"]
    assert state_of(tr, ticket) == "consumed"


def test_other_interrupts_are_left_to_the_application(tr: Tribune) -> None:
    """With ``HumanInTheLoopMiddleware`` (per call) outside Tribune's: the app's reviewer
    answers first, then Tribune asks; the call runs once both said yes."""
    ran: list[str] = []
    hitl = HumanInTheLoopMiddleware(interrupt_on={"email_send": True}, interrupt_mode="per_call")
    model = scripted(("email_send", UNKNOWN))
    session = Session(tr, "sync", model, ran, middleware=[hitl], **MAIL)
    out = session.run()
    [own] = out["__interrupt__"]
    assert "tribune" not in own.value and resolve_interrupts(tr, [own], timeout=0) == {}
    assert records(tr) == []  # not decided before the app's reviewer answered
    out = session.resume({own.id: APPROVE})
    [asked] = out["__interrupt__"]
    [ticket] = tickets(tr)
    assert asked.value["tribune"]["ticket"] == ticket
    vote(tr, ticket, "bob")
    session.resume(session.resolve(out, timeout=5))
    assert ran == ["email_send:eve@elsewhere.example"]
    assert state_of(tr, ticket) == "consumed"
