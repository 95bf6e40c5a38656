"""Tribune approvals through the OpenAI Agents SDK's own human-in-the-loop: ``needs_approval``
pauses the run with an interruption, ``resolve_interruptions`` settles it from the Tribune
ticket, and ``Runner.run(agent, state)`` resumes. Only an approved Tribune ticket runs a call.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from agents import Agent, FunctionTool, Runner, RunState, Usage, function_tool
from agents.items import ModelResponse
from openai.types.responses import ResponseFunctionToolCall

from tribune.bootstrap import Tribune
from tribune.core.model import Task
from tribune.integrations.openai_agents import (
    aresolve_interruptions,
    govern_agent,
    resolve_interruptions,
    ticket_of,
)

from .agent_world import DROP, MAIL, UNKNOWN, kinds, records, state_of, tickets, tr, vote
from .test_openai_agents import NAMES, NO_TRACING, ScriptedModel, tools

__all__ = ["tr"]  # the shared home fixture
MODES = ["sync", "async"]


class Session:
    """A governed agent in one task, started and resumed sync or async."""

    def __init__(
        self,
        tr: Tribune,
        mode: str,
        model: ScriptedModel,
        ran: list[str],
        task: Task | None = None,
        **scope: Any,
    ) -> None:
        self.tr, self.mode, self.model = tr, mode, model
        self.task = task or tr.start_task("bot", **scope)
        agent = Agent(name="bot", model=model, tools=[*tools(ran, mode), db_drop(ran)])
        names = {**NAMES, "db_drop": "db.drop"}
        environment = scope.get("environment")
        self.agent = govern_agent(
            tr, agent, names=names, task=self.task.id, environment=environment
        )

    def run(self, start: str | RunState[Any]) -> Any:
        if self.mode == "sync":
            return Runner.run_sync(self.agent, start, run_config=NO_TRACING)
        return asyncio.run(Runner.run(self.agent, start, run_config=NO_TRACING))

    def resolve(self, result: Any, timeout: float = 0.0) -> RunState[Any]:
        if self.mode == "sync":
            return resolve_interruptions(self.tr, result, timeout=timeout)
        return asyncio.run(aresolve_interruptions(self.tr, result, timeout=timeout))


def db_drop(ran: list[str]) -> FunctionTool:
    def drop(table: str) -> str:
        ran.append(f"db_drop:{table}")
        return f"dropped {table}"

    return function_tool(drop, name_override="db_drop")


def decisions(tr: Tribune) -> list[dict[str, Any]]:
    return [r["data"] for r in records(tr) if r["kind"] == "decision"]


# --------------------------------------------------------------------------- (1) pause


@pytest.mark.parametrize("mode", MODES)
def test_approval_required_pauses_the_run_with_the_ticket_and_nothing_runs(
    tr: Tribune, mode: str
) -> None:
    ran: list[str] = []
    model = ScriptedModel(("email_send", UNKNOWN))
    session = Session(tr, mode, model, ran, **MAIL)
    result = session.run("help")
    assert ran == []
    [item] = result.interruptions
    assert item.tool_name == "email_send"
    [ticket] = tickets(tr)
    assert ticket_of(item) == ticket and state_of(tr, ticket) == "pending"
    assert len(model.inputs) == 1  # the model waits too: no tool output was produced
    assert kinds(records(tr)) == ["intent", "decision"]  # decided once, when the model called
    assert decisions(tr)[0]["effect"] == "approval_required"
    assert decisions(tr)[0]["ticket"] == ticket


# --------------------------------------------------------------------------- (2) approved


@pytest.mark.parametrize("mode", MODES)
def test_approved_ticket_resumes_and_runs_exactly_once(tr: Tribune, mode: str) -> None:
    ran: list[str] = []
    model = ScriptedModel(("email_send", UNKNOWN))
    session = Session(tr, mode, model, ran, **MAIL)
    paused = session.run("help")
    [ticket] = tickets(tr)
    assert vote(tr, ticket, "bob") == "approved"
    resumed = session.run(session.resolve(paused, timeout=5))
    assert resumed.final_output == "done" and not resumed.interruptions
    assert ran == ["email_send:eve@elsewhere.example"]
    assert model.tool_outputs() == ["sent"]
    assert state_of(tr, ticket) == "consumed"
    found = records(tr)
    assert kinds(found) == ["intent", "decision", "intent", "decision", "result"]
    second = found[3]["data"]
    assert second["effect"] == "allow" and second["approved_by_ticket"] == ticket
    assert found[4]["data"]["status"] == "ok"
    assert found[4]["action_id"] == found[3]["action_id"] != found[1]["action_id"]
    assert tr.approvals.get(ticket).consumed_by == found[3]["action_id"]


def test_dual_control_waits_for_both_approvers(tr: Tribune) -> None:
    ran: list[str] = []
    session = Session(tr, "sync", ScriptedModel(("db_drop", {"table": "t1"})), ran, **DROP)
    paused = session.run("help")
    [ticket] = tickets(tr)
    assert vote(tr, ticket, "bob", "carol") == "approved"
    session.run(session.resolve(paused, timeout=5))
    assert ran == ["db_drop:t1"]
    assert state_of(tr, ticket) == "consumed"


def test_waiting_sees_a_vote_cast_while_it_waits(tr: Tribune) -> None:
    ran: list[str] = []
    session = Session(tr, "sync", ScriptedModel(("email_send", UNKNOWN)), ran, **MAIL)
    paused = session.run("help")
    [ticket] = tickets(tr)

    async def approve_later() -> RunState[Any]:
        waiting = asyncio.ensure_future(aresolve_interruptions(tr, paused, timeout=10))
        await asyncio.sleep(0.3)
        await asyncio.to_thread(vote, tr, ticket, "bob")
        return await waiting

    session.run(asyncio.run(approve_later()))
    assert ran == ["email_send:eve@elsewhere.example"]


# --------------------------------------------------------------------------- (3) SDK-only approval


@pytest.mark.parametrize("mode", MODES)
def test_sdk_approval_of_a_pending_ticket_does_not_run_the_tool(tr: Tribune, mode: str) -> None:
    ran: list[str] = []
    model = ScriptedModel(("db_drop", {"table": "t1"}))
    session = Session(tr, mode, model, ran, **DROP)
    paused = session.run("help")
    [ticket] = tickets(tr)
    assert vote(tr, ticket, "bob") == "pending"  # one of two
    state = paused.to_state()
    [item] = state.get_interruptions()
    state.approve(item)  # the SDK's own flag, not Tribune's
    session.run(state)
    assert ran == []
    [seen] = model.tool_outputs()
    assert f"ticket `{ticket}` is pending" in seen and "did not run" in seen
    assert state_of(tr, ticket) == "pending"  # still waiting, not used
    assert decisions(tr)[-1]["effect"] == "deny"
    assert tickets(tr) == [ticket]  # no second ticket was opened


def test_sdk_approval_of_a_denied_ticket_does_not_run_the_tool(tr: Tribune) -> None:
    ran: list[str] = []
    model = ScriptedModel(("email_send", UNKNOWN))
    session = Session(tr, "sync", model, ran, **MAIL)
    paused = session.run("help")
    [ticket] = tickets(tr)
    assert vote(tr, ticket, "carol", approve=False) == "denied"
    state = paused.to_state()
    state.approve(state.get_interruptions()[0])
    session.run(state)
    assert ran == []
    assert f"ticket `{ticket}` is denied" in model.tool_outputs()[0]
    assert tickets(tr) == [ticket]


def test_resolving_a_ticket_still_pending_rejects_the_call(tr: Tribune) -> None:
    ran: list[str] = []
    model = ScriptedModel(("db_drop", {"table": "t1"}))
    session = Session(tr, "sync", model, ran, **DROP)
    paused = session.run("help")
    [ticket] = tickets(tr)
    vote(tr, ticket, "bob")
    session.run(session.resolve(paused, timeout=0.2))
    assert ran == []
    [seen] = model.tool_outputs()
    assert seen.startswith("Tribune: `db.drop` is still pending human approval")
    assert ticket in seen
    assert state_of(tr, ticket) == "pending"


# --------------------------------------------------------------------------- (4) denied


@pytest.mark.parametrize("mode", MODES)
def test_denied_ticket_ends_as_a_denial_the_model_reads(tr: Tribune, mode: str) -> None:
    ran: list[str] = []
    model = ScriptedModel(("email_send", UNKNOWN))
    session = Session(tr, mode, model, ran, **MAIL)
    paused = session.run("help")
    [ticket] = tickets(tr)
    vote(tr, ticket, "bob", approve=False)
    resumed = session.run(session.resolve(paused, timeout=5))
    assert resumed.final_output == "done"
    assert ran == []
    [seen] = model.tool_outputs()
    assert seen.startswith("Tribune: `email.send` was not approved (its ticket is denied)")
    assert "did not run" in seen
    assert kinds(records(tr)) == ["intent", "decision"]  # nothing decided to run
    assert tickets(tr) == [ticket]


# --------------------------------------------------------------------------- around the flow


class OneTurn(ScriptedModel):
    """Makes all its calls in its first turn, then answers "done"."""

    async def get_response(self, system_instructions: Any, input: Any, *a: Any, **k: Any) -> Any:
        if not self.inputs:
            self.inputs.append(input)
            items = [
                ResponseFunctionToolCall(
                    id=f"fc{n}", call_id=f"call{n}", name=name, arguments=json.dumps(args),
                    type="function_call", status="completed",
                )
                for n, (name, args) in enumerate(self.calls)
            ]  # fmt: skip
            return ModelResponse(output=items, usage=Usage(), response_id=None)
        self.calls = []
        return await super().get_response(system_instructions, input, *a, **k)


def test_an_allowed_call_in_the_same_turn_runs_at_once_decided_once(tr: Tribune) -> None:
    ran: list[str] = []
    model = OneTurn(("crm_read", {"customer_id": "7"}), ("email_send", UNKNOWN))
    session = Session(tr, "sync", model, ran, **MAIL)
    paused = session.run("help")
    assert ran == ["crm_read:7"]  # not held back by the other call's pause
    [item] = paused.interruptions
    [ticket] = tickets(tr)
    assert ticket_of(item) == ticket
    vote(tr, ticket, "bob")
    session.run(session.resolve(paused, timeout=5))
    assert ran == ["crm_read:7", "email_send:eve@elsewhere.example"]
    effects = [d["effect"] for d in decisions(tr)]
    # each call decided once when the model made it; the paused one once more on resume
    assert sorted(effects[:2]) == ["allow", "approval_required"] and effects[2:] == ["allow"]


def test_repeating_the_call_after_approval_runs_it_without_a_new_pause(tr: Tribune) -> None:
    """The model may make the same call again instead of the run being resumed: the approved
    ticket is found by the action's digest and used up."""
    ran: list[str] = []
    session = Session(tr, "sync", ScriptedModel(("email_send", UNKNOWN)), ran, **MAIL)
    paused = session.run("help")
    [ticket] = tickets(tr)
    session.run(session.resolve(paused, timeout=0))  # still pending: rejected
    vote(tr, ticket, "bob")
    again = Session(tr, "sync", ScriptedModel(("email_send", UNKNOWN)), ran, session.task, **MAIL)
    result = again.run("once more")
    assert not result.interruptions
    assert ran == ["email_send:eve@elsewhere.example"]
    assert state_of(tr, ticket) == "consumed"


def test_current_task_is_used_when_none_is_given(tr: Tribune) -> None:
    ran: list[str] = []
    model = ScriptedModel(("email_send", UNKNOWN))
    agent = govern_agent(tr, Agent(name="bot", model=model, tools=tools(ran, "sync")), names=NAMES)
    with tr.task("bot", **MAIL):
        paused = Runner.run_sync(agent, "help", run_config=NO_TRACING)
        [ticket] = tickets(tr)
        vote(tr, ticket, "bob")
        Runner.run_sync(agent, resolve_interruptions(tr, paused, timeout=5), run_config=NO_TRACING)
    assert ran == ["email_send:eve@elsewhere.example"]
    assert state_of(tr, ticket) == "consumed"


def test_a_tools_own_approval_is_left_to_the_application(tr: Tribune) -> None:
    """A tool that asks for approval itself pauses as before; Tribune decides when it runs."""
    ran: list[str] = []

    @function_tool(needs_approval=True)
    def crm_read(customer_id: str) -> str:
        ran.append(customer_id)
        return "Ada"

    model = ScriptedModel(("crm_read", {"customer_id": "7"}))
    agent = govern_agent(tr, Agent(name="bot", model=model, tools=[crm_read]), names=NAMES)
    with tr.task("bot", purpose="ticket 42", tools=["crm.read"]):
        paused = Runner.run_sync(agent, "help", run_config=NO_TRACING)
        [item] = paused.interruptions
        assert ticket_of(item) is None and records(tr) == []  # not decided yet
        state = resolve_interruptions(tr, paused, timeout=0)
        assert state.get_interruptions()  # untouched: the application answers
        state.approve(item)
        Runner.run_sync(agent, state, run_config=NO_TRACING)
    assert ran == ["7"]
    assert kinds(records(tr)) == ["intent", "decision", "result"]


def test_an_sdk_approval_of_a_tribune_call_from_another_process_still_needs_the_ticket(
    tr: Tribune,
) -> None:
    """A run resumed from JSON by a freshly governed agent: Tribune does not remember the call,
    so the invocation decides it afresh; the approved ticket is found by the action's digest."""
    ran: list[str] = []
    model = ScriptedModel(("email_send", UNKNOWN))
    session = Session(tr, "sync", model, ran, **MAIL)
    paused = session.run("help")
    [ticket] = tickets(tr)
    stored = paused.to_state().to_json()

    fresh = Session(tr, "sync", model, ran, session.task, **MAIL)  # governed anew
    state = asyncio.run(RunState.from_json(fresh.agent, stored))
    [item] = state.get_interruptions()
    assert ticket_of(item) is None
    assert resolve_interruptions(tr, state, timeout=0).get_interruptions()  # left as it was
    state.approve(item)
    fresh.run(state)
    assert ran == []  # not approved in Tribune yet
    assert "pending human approval" in model.tool_outputs()[0]
    assert tickets(tr) == [ticket]


def test_always_approve_in_the_sdk_never_runs_a_call_tribune_holds(tr: Tribune) -> None:
    """``always_approve=True`` makes the SDK skip ``needs_approval`` for the tool's later calls;
    each is still decided when invoked, and without an approved ticket it does not run."""
    ran: list[str] = []
    later = {"to": "eve@elsewhere.example", "body": "again"}
    model = ScriptedModel(("email_send", UNKNOWN), ("email_send", later))
    session = Session(tr, "sync", model, ran, **MAIL)
    paused = session.run("help")
    state = paused.to_state()
    state.approve(state.get_interruptions()[0], always_approve=True)
    result = session.run(state)
    assert not result.interruptions and result.final_output == "done"
    assert ran == []
    first, second = model.tool_outputs()
    assert "is pending" in first and "pending human approval" in second
    assert len(tickets(tr)) == 2 and all(state_of(tr, t) == "pending" for t in tickets(tr))
