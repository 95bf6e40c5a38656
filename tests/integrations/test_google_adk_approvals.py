"""Tribune approvals through ADK's own tool confirmation: a call that needs approval asks for
confirmation (the ticket in the payload), the run yields ``adk_request_confirmation``, the app
answers with a ``FunctionResponse`` (``resolve_confirmations`` builds it), and the confirmed
re-run is decided again. Only an approved Tribune ticket runs a call.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from google.adk.agents import LlmAgent
from google.adk.apps import App
from google.adk.events.event import Event
from google.adk.runners import InMemoryRunner
from google.adk.tools import FunctionTool
from google.genai import types

from tribune.bootstrap import Tribune
from tribune.integrations._paused import Remembered
from tribune.integrations.google_adk import (
    CONFIRMATION,
    TribunePlugin,
    aresolve_confirmations,
    resolve_confirmations,
)

from .agent_world import DROP, MAIL, UNKNOWN, kinds, records, state_of, tickets, tr, vote
from .test_google_adk import NAMES, Scripted, email_tool

__all__ = ["tr"]  # the shared home fixture
MODES = ["sync", "async"]


def db_drop(ran: list[str]) -> Any:
    def db_drop(table: str) -> str:
        """Drop a table."""
        ran.append(f"db_drop:{table}")
        return f"dropped {table}"

    return db_drop


class Session:
    """A governed runner in one task and one ADK session, driven sync or async."""

    def __init__(
        self,
        tr: Tribune,
        mode: str,
        model: Scripted,
        ran: list[str],
        *,
        agent_tools: list[Any] | None = None,
        **scope: Any,
    ) -> None:
        self.tr, self.mode, self.model = tr, mode, model
        self.task = tr.start_task("bot", **scope)
        names = {**NAMES, "db_drop": "db.drop"}
        self.plugin = TribunePlugin(tr, task=self.task.id, names=names)
        agent = LlmAgent(
            name="support", model=model, tools=agent_tools or [email_tool(ran), db_drop(ran)]
        )
        app = App(name="support", root_agent=agent, plugins=[self.plugin])
        self.runner = InMemoryRunner(app=app)
        session = asyncio.run(
            self.runner.session_service.create_session(app_name="support", user_id="u")
        )
        self.session_id = session.id

    def send(self, message: types.Content | None = None) -> list[Event]:
        message = message or types.Content(role="user", parts=[types.Part(text="go")])
        if self.mode == "sync":
            return list(
                self.runner.run(user_id="u", session_id=self.session_id, new_message=message)
            )

        async def collect() -> list[Event]:
            return [
                e
                async for e in self.runner.run_async(
                    user_id="u", session_id=self.session_id, new_message=message
                )
            ]

        return asyncio.run(collect())

    def resolve(self, events: list[Event], timeout: float = 0.0) -> types.Content | None:
        if self.mode == "sync":
            return resolve_confirmations(self.tr, events, timeout=timeout)
        return asyncio.run(aresolve_confirmations(self.tr, events, timeout=timeout))


def asked(events: list[Event]) -> list[types.FunctionCall]:
    """The confirmation calls a run yielded."""
    return [c for e in events for c in e.get_function_calls() if c.name == CONFIRMATION]


def confirm(call: types.FunctionCall, confirmed: bool = True) -> types.Content:
    """The app's own answer to a confirmation call, without Tribune."""
    response = types.FunctionResponse(
        name=CONFIRMATION, id=call.id, response={"confirmed": confirmed}
    )
    return types.Content(role="user", parts=[types.Part(function_response=response)])


def decisions(tr: Tribune) -> list[dict[str, Any]]:
    return [r["data"] for r in records(tr) if r["kind"] == "decision"]


# --------------------------------------------------------------------------- (1) pause


@pytest.mark.parametrize("mode", MODES)
def test_approval_required_asks_adk_confirmation_with_the_ticket(tr: Tribune, mode: str) -> None:
    ran: list[str] = []
    model = Scripted(turns=[[("email_send", UNKNOWN)]])
    session = Session(tr, mode, model, ran, **MAIL)
    events = session.send()
    assert ran == []
    [call] = asked(events)
    [ticket] = tickets(tr)
    payload = (call.args or {})["toolConfirmation"]["payload"]["tribune"]
    assert payload["ticket"] == ticket and payload["tool"] == "email.send"
    assert (call.args or {})["originalFunctionCall"]["args"] == UNKNOWN
    assert state_of(tr, ticket) == "pending"
    assert kinds(records(tr)) == ["intent", "decision"]
    assert decisions(tr)[0]["effect"] == "approval_required"
    assert not any(e.content and e.content.parts and e.content.parts[0].text for e in events)


# --------------------------------------------------------------------------- (2) approved


@pytest.mark.parametrize("mode", MODES)
def test_approved_ticket_resumes_and_runs_exactly_once(tr: Tribune, mode: str) -> None:
    ran: list[str] = []
    model = Scripted(turns=[[("email_send", UNKNOWN)]])
    session = Session(tr, mode, model, ran, **MAIL)
    events = session.send()
    [ticket] = tickets(tr)
    assert vote(tr, ticket, "bob") == "approved"
    answer = session.resolve(events, timeout=5)
    assert answer is not None
    session.send(answer)
    assert ran == ["eve@elsewhere.example"]
    assert model.tool_results()[-1] == {"result": "sent"}
    assert state_of(tr, ticket) == "consumed"
    found = records(tr)
    assert kinds(found) == ["intent", "decision", "intent", "decision", "result"]
    assert found[3]["data"]["effect"] == "allow"
    assert found[3]["data"]["approved_by_ticket"] == ticket
    assert found[4]["data"]["status"] == "ok"
    assert tr.approvals.get(ticket).consumed_by == found[3]["action_id"]


def test_dual_control_runs_after_both_approvers(tr: Tribune) -> None:
    ran: list[str] = []
    session = Session(tr, "async", Scripted(turns=[[("db_drop", {"table": "t1"})]]), ran, **DROP)
    events = session.send()
    [ticket] = tickets(tr)
    vote(tr, ticket, "bob", "carol")
    session.send(session.resolve(events, timeout=5))
    assert ran == ["db_drop:t1"]
    assert state_of(tr, ticket) == "consumed"


# ------------------------------------------------------------------- (3) ADK-only confirmation


@pytest.mark.parametrize("mode", MODES)
def test_confirming_in_adk_while_the_ticket_is_pending_does_not_run(tr: Tribune, mode: str) -> None:
    ran: list[str] = []
    model = Scripted(turns=[[("db_drop", {"table": "t1"})]])
    session = Session(tr, mode, model, ran, **DROP)
    events = session.send()
    [ticket] = tickets(tr)
    assert vote(tr, ticket, "bob") == "pending"  # one of two
    session.send(confirm(asked(events)[0]))  # ADK's own "confirmed", not Tribune's
    assert ran == []
    seen = model.tool_results()[-1]["error"]
    assert f"ticket `{ticket}` is pending" in seen and "did not run" in seen
    assert state_of(tr, ticket) == "pending"
    assert tickets(tr) == [ticket]
    assert [d["effect"] for d in decisions(tr)] == ["approval_required", "deny"]


def test_confirming_in_adk_after_a_denial_does_not_run(tr: Tribune) -> None:
    ran: list[str] = []
    model = Scripted(turns=[[("email_send", UNKNOWN)]])
    session = Session(tr, "sync", model, ran, **MAIL)
    events = session.send()
    [ticket] = tickets(tr)
    vote(tr, ticket, "carol", approve=False)
    session.send(confirm(asked(events)[0]))
    assert ran == []
    assert f"ticket `{ticket}` is denied" in model.tool_results()[-1]["error"]
    assert tickets(tr) == [ticket]


def test_refusing_in_adk_never_runs_even_when_tribune_approved(tr: Tribune) -> None:
    ran: list[str] = []
    model = Scripted(turns=[[("email_send", UNKNOWN)]])
    session = Session(tr, "sync", model, ran, **MAIL)
    events = session.send()
    [ticket] = tickets(tr)
    vote(tr, ticket, "bob")
    session.send(confirm(asked(events)[0], confirmed=False))
    assert ran == []
    assert "was refused" in model.tool_results()[-1]["error"]
    assert state_of(tr, ticket) == "approved"  # unused: it expires by itself


# --------------------------------------------------------------------------- (4) denied


@pytest.mark.parametrize("mode", MODES)
def test_denied_ticket_ends_as_a_denial_the_model_reads(tr: Tribune, mode: str) -> None:
    ran: list[str] = []
    model = Scripted(turns=[[("email_send", UNKNOWN)]])
    session = Session(tr, mode, model, ran, **MAIL)
    events = session.send()
    [ticket] = tickets(tr)
    vote(tr, ticket, "bob", approve=False)
    session.send(session.resolve(events, timeout=5))
    assert ran == []
    seen = model.tool_results()[-1]["error"]
    assert seen.startswith("Tribune: `email.send` was not approved (its ticket is denied)")
    assert kinds(records(tr)) == ["intent", "decision"]
    assert tickets(tr) == [ticket]


def test_a_ticket_still_pending_at_the_timeout_is_refused(tr: Tribune) -> None:
    ran: list[str] = []
    model = Scripted(turns=[[("email_send", UNKNOWN)]])
    session = Session(tr, "sync", model, ran, **MAIL)
    session.send(session.resolve(session.send(), timeout=0.2))
    assert ran == []
    assert model.tool_results()[-1]["error"].startswith("Tribune: `email.send` is still pending")


# --------------------------------------------------------------------------- around the flow


def test_a_resume_that_forgot_the_call_uses_the_ticket_in_the_payload(tr: Tribune) -> None:
    """As in a fresh process: the plugin remembers nothing, the answer carries the ticket."""
    ran: list[str] = []
    session = Session(tr, "sync", Scripted(turns=[[("email_send", UNKNOWN)]]), ran, **MAIL)
    events = session.send()
    [ticket] = tickets(tr)
    vote(tr, ticket, "bob")
    session.plugin.paused = Remembered()
    session.send(resolve_confirmations(tr, events, timeout=5))
    assert ran == ["eve@elsewhere.example"]
    assert decisions(tr)[-1]["approved_by_ticket"] == ticket


def test_a_tools_own_confirmation_is_left_to_the_application(tr: Tribune) -> None:
    ran: list[str] = []

    def crm_read(customer_id: str) -> str:
        """Read a customer."""
        ran.append(customer_id)
        return "Ada"

    model = Scripted(turns=[[("crm_read", {"customer_id": "42"})]])
    tools = [FunctionTool(crm_read, require_confirmation=True)]
    session = Session(tr, "sync", model, ran, agent_tools=tools, **MAIL)
    events = session.send()
    [own] = asked(events)
    assert resolve_confirmations(tr, events, timeout=0) is None  # not Tribune's to answer
    session.send(confirm(own))
    assert ran == ["42"]
    assert tickets(tr) == []


def test_a_confirmed_re_run_that_still_needs_approval_is_refused_as_pending(tr: Tribune) -> None:
    """After a restart (nothing remembered) an ADK confirmation without Tribune's payload is
    decided afresh; ADK asks only once per call, so the model reads that it is pending."""
    ran: list[str] = []
    model = Scripted(turns=[[("email_send", UNKNOWN)]])
    session = Session(tr, "sync", model, ran, **MAIL)
    events = session.send()
    [ticket] = tickets(tr)
    session.plugin.paused = Remembered()
    again = session.send(confirm(asked(events)[0]))
    assert asked(again) == [] and ran == []
    assert "pending human approval" in model.tool_results()[-1]["error"]
    assert tickets(tr) == [ticket]  # the open ticket was found again, not a second one
