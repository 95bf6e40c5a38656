"""Google ADK adapter: a real ``InMemoryRunner`` loop, a scripted ``BaseLlm``, a real Tribune.

The scripted model makes the given function calls (one list per turn) and keeps the contents
it was last sent, so "the model saw the message" is asserted on the model's next turn. Tool
bodies count their runs, so "never ran" is asserted, not assumed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import Any

import pytest
from google.adk.agents import LlmAgent
from google.adk.apps import App
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.runners import InMemoryRunner
from google.adk.tools import FunctionTool
from google.genai import types
from pydantic import Field

from tribune.bootstrap import Tribune
from tribune.core.canonical import keyed_digest
from tribune.errors import InvalidInput
from tribune.integrations.google_adk import TribunePlugin

from .agent_world import open_home

NAMES = {"crm_read": "crm.read", "email_send": "email.send"}
Call = tuple[str, dict[str, Any]]


@pytest.fixture
def tr(tmp_path: Path) -> Iterator[Tribune]:
    yield from open_home(tmp_path)


class Scripted(BaseLlm):
    """Makes the scripted calls, one list per turn, then answers "done"."""

    model: str = "scripted"
    turns: list[list[Call]] = Field(default_factory=list)
    seen: list[types.Content] = Field(default_factory=list)

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        self.seen = list(llm_request.contents)
        if self.turns:
            parts = [
                types.Part(function_call=types.FunctionCall(name=name, args=args))
                for name, args in self.turns.pop(0)
            ]
        else:
            parts = [types.Part(text="done")]
        yield LlmResponse(content=types.Content(role="model", parts=parts))

    def tool_results(self) -> list[dict[str, Any]]:
        """Every tool response the model was sent, in order."""
        return [
            dict(part.function_response.response or {})
            for content in self.seen
            for part in content.parts or []
            if part.function_response is not None
        ]


def runner_for(tr: Tribune, model: Scripted, tools: list[Any], **plugin: Any) -> InMemoryRunner:
    return runner_with(LlmAgent(name="support", model=model, tools=tools), tr, **plugin)


def runner_with(agent: LlmAgent, tr: Tribune, **plugin: Any) -> InMemoryRunner:
    plugins = [TribunePlugin(tr, names=NAMES, **plugin)]
    return InMemoryRunner(app=App(name="support", root_agent=agent, plugins=plugins))


async def run(runner: InMemoryRunner, text: str = "go") -> str:
    """One user turn through the runner; the last text the agent said."""
    session = await runner.session_service.create_session(app_name=runner.app_name, user_id="u")
    message = types.Content(role="user", parts=[types.Part(text=text)])
    said = ""
    async for event in runner.run_async(user_id="u", session_id=session.id, new_message=message):
        for part in (event.content.parts or []) if event.content else []:
            said = part.text or said
    return said


def run_sync(runner: InMemoryRunner, text: str = "go") -> str:
    """The same turn through ``Runner.run`` (its own thread and event loop)."""
    session = asyncio.run(
        runner.session_service.create_session(app_name=runner.app_name, user_id="u")
    )
    message = types.Content(role="user", parts=[types.Part(text=text)])
    said = ""
    for event in runner.run(user_id="u", session_id=session.id, new_message=message):
        for part in (event.content.parts or []) if event.content else []:
            said = part.text or said
    return said


def records(tr: Tribune) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in tr.store.records()]


def actions(tr: Tribune) -> dict[str, list[dict[str, Any]]]:
    """Intent, decision and result records by action id, in order of the intents."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for r in records(tr):
        if r["kind"] in ("intent", "decision", "result"):
            grouped.setdefault(r["action_id"], []).append(r)
    return grouped


def kinds(action: list[dict[str, Any]]) -> list[str]:
    return [r["kind"] for r in action]


def output_digest(tr: Tribune, output: Any) -> str:
    """The digest a result record holds for ``output``."""
    return keyed_digest(output, (tr.home / "keys" / "digest.secret").read_bytes())


def email_tool(ran: list[str]) -> Any:
    def email_send(to: str, body: str) -> str:
        """Send an e-mail."""
        ran.append(to)
        return "sent"

    return email_send


# --------------------------------------------------------------------------- allowed


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_allowed_call_runs_once_and_the_model_sees_its_result(tr: Tribune, mode: str) -> None:
    ran: list[str] = []
    model = Scripted(turns=[[("crm_read", {"customer_id": "42"})]])
    if mode == "sync":

        def crm_read(customer_id: str) -> str:
            """Read a customer."""
            ran.append(customer_id)
            return "Ada Lovelace owes 12 EUR"

        runner = runner_for(tr, model, [crm_read])
        with tr.task("bot", purpose="answer ticket 42", tools=["crm.read"]) as task:
            said = run_sync(runner)  # Runner.run: another thread, the task still current
    else:

        async def crm_read_async(customer_id: str) -> str:
            """Read a customer."""
            await asyncio.sleep(0)
            ran.append(customer_id)
            return "Ada Lovelace owes 12 EUR"

        crm_read_async.__name__ = "crm_read"
        runner = runner_for(tr, model, [crm_read_async])

        async def main() -> Any:
            async with tr.atask("bot", purpose="answer ticket 42", tools=["crm.read"]) as t:
                return await run(runner), t

        said, task = asyncio.run(main())

    assert said == "done"
    assert ran == ["42"]
    assert model.tool_results() == [{"result": "Ada Lovelace owes 12 EUR"}]
    [action] = actions(tr).values()
    assert kinds(action) == ["intent", "decision", "result"]
    intent, decision, result = (r["data"] for r in action)
    assert intent["tool"] == "crm.read" and intent["arguments"] == {"customer_id": "42"}
    assert decision["effect"] == "allow"
    assert result["status"] == "ok"
    assert result["output_digest"] == output_digest(tr, "Ada Lovelace owes 12 EUR")
    assert {r["task_id"] for r in action} == {task.id}


def test_explicit_task_is_used_outside_any_task_block(tr: Tribune) -> None:
    ran: list[str] = []

    def crm_read(customer_id: str) -> str:
        """Read a customer."""
        ran.append(customer_id)
        return "Grace"

    task = tr.start_task("bot", purpose="answer ticket 42", tools=["crm.read"])
    model = Scripted(turns=[[("crm_read", {"customer_id": "7"})]])
    asyncio.run(run(runner_for(tr, model, [crm_read], task=task.id)))
    assert ran == ["7"]
    [action] = actions(tr).values()
    assert kinds(action) == ["intent", "decision", "result"]
    assert {r["task_id"] for r in action} == {task.id}


# --------------------------------------------------------------------------- not allowed


def test_denied_call_never_runs_and_the_model_reads_why(tr: Tribune) -> None:
    ran: list[str] = []
    model = Scripted(turns=[[("email_send", {"to": "bob@example.com", "body": "hi"})]])
    runner = runner_for(tr, model, [email_tool(ran)])
    with tr.task("bot", purpose="answer ticket 42", tools=["crm.read"]):
        assert run_sync(runner) == "done"  # the run went on
    assert ran == []
    [(action_id, action)] = actions(tr).items()
    [seen] = model.tool_results()
    assert list(seen) == ["error"]
    assert seen["error"].startswith("Tribune: ") and "did not run" in seen["error"]
    assert "intent-tool-not-in-scope" in seen["error"] and action_id in seen["error"]
    assert kinds(action) == ["intent", "decision"]  # no result: nothing ran
    assert action[1]["data"]["effect"] == "deny"


def test_without_confirmation_approval_required_never_runs_and_the_model_reads_pending(
    tr: Tribune,
) -> None:
    """``confirm=False``; the confirmation flow is in test_google_adk_approvals.py."""
    ran: list[str] = []
    model = Scripted(turns=[[("email_send", {"to": "mallory@unknown.example", "body": "hi"})]])
    runner = runner_for(tr, model, [email_tool(ran)], confirm=False)
    with tr.task("bot", purpose="answer ticket 42", tools=["crm.read", "email.send"]):
        assert run_sync(runner) == "done"
    assert ran == []
    [seen] = model.tool_results()
    assert "pending human approval" in seen["error"]
    [action] = actions(tr).values()
    assert kinds(action) == ["intent", "decision"]
    assert action[1]["data"]["effect"] == "approval_required"


def test_parallel_calls_in_one_turn_are_paired_by_call_id(tr: Tribune) -> None:
    read: list[str] = []
    sent: list[str] = []

    async def crm_read(customer_id: str) -> str:
        """Read a customer."""
        # the first call finishes last: the calls' callbacks interleave
        await asyncio.sleep(0.05 if customer_id == "1" else 0)
        read.append(customer_id)
        return f"customer {customer_id}"

    model = Scripted(
        turns=[
            [
                ("crm_read", {"customer_id": "1"}),
                ("email_send", {"to": "bob@example.com", "body": "hi"}),
                ("crm_read", {"customer_id": "2"}),
            ]
        ]
    )
    runner = runner_for(tr, model, [crm_read, email_tool(sent)])
    with tr.task("bot", purpose="answer ticket 42", tools=["crm.read"]):
        run_sync(runner)
    assert read == ["2", "1"] and sent == []
    seen = model.tool_results()
    assert seen[0] == {"result": "customer 1"} and seen[2] == {"result": "customer 2"}
    assert "intent-tool-not-in-scope" in seen[1]["error"]
    read_1, send, read_2 = actions(tr).values()
    assert kinds(send) == ["intent", "decision"]
    for action, customer in ((read_1, "1"), (read_2, "2")):
        assert action[0]["data"]["arguments"] == {"customer_id": customer}
        assert kinds(action) == ["intent", "decision", "result"]
        # each result is recorded on its own call's action
        assert action[2]["data"]["output_digest"] == output_digest(tr, f"customer {customer}")


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_tool_error_is_recorded_by_type_without_its_message(tr: Tribune, mode: str) -> None:
    boom = LookupError("customer 42 pays with card 4111 1111 1111 1111")

    def crm_read(customer_id: str) -> str:
        """Read a customer."""
        raise boom

    async def crm_read_async(customer_id: str) -> str:
        """Read a customer."""
        raise boom

    crm_read_async.__name__ = "crm_read"
    model = Scripted(turns=[[("crm_read", {"customer_id": "42"})]])
    runner = runner_for(tr, model, [crm_read if mode == "sync" else crm_read_async])
    with (
        tr.task("bot", purpose="answer ticket 42", tools=["crm.read"]),
        pytest.raises(LookupError),
    ):
        run_sync(runner)
    [action] = actions(tr).values()
    assert kinds(action) == ["intent", "decision", "result"]
    result = action[2]["data"]
    assert result["status"] == "error" and result["error"] == "LookupError"
    dumped = json.dumps(records(tr))
    assert "4111 1111" not in dumped and "pays with card" not in dumped


def test_cancelled_run_records_the_call_as_cancelled(tr: Tribune) -> None:
    started = asyncio.Event()

    async def crm_read(customer_id: str) -> str:
        """Read a customer."""
        started.set()
        await asyncio.Event().wait()  # never set
        return "unreachable"

    model = Scripted(turns=[[("crm_read", {"customer_id": "42"})]])
    runner = runner_for(tr, model, [crm_read])

    async def main() -> None:
        async with tr.atask("bot", purpose="answer ticket 42", tools=["crm.read"]):
            running = asyncio.create_task(run(runner))
            await started.wait()
            running.cancel()
            with pytest.raises(asyncio.CancelledError):
                await running

    asyncio.run(main())
    [action] = actions(tr).values()
    assert kinds(action) == ["intent", "decision", "result"]
    assert action[2]["data"]["status"] == "cancelled" and "error" not in action[2]["data"]


def test_call_whose_outcome_no_callback_saw_is_recorded_unknown(tr: Tribune) -> None:
    """An agent-level callback raising after the plugin allowed the call ends the run."""
    ran: list[str] = []

    def crm_read(customer_id: str) -> str:
        """Read a customer."""
        ran.append(customer_id)
        return "Ada"

    def broken(tool: Any, args: dict[str, Any], tool_context: Any) -> None:
        raise ValueError("callback bug")

    model = Scripted(turns=[[("crm_read", {"customer_id": "42"})]])
    agent = LlmAgent(name="support", model=model, tools=[crm_read], before_tool_callback=broken)
    runner = runner_with(agent, tr)
    with (
        tr.task("bot", purpose="answer ticket 42", tools=["crm.read"]),
        pytest.raises(ValueError, match="callback bug"),
    ):
        run_sync(runner)
    assert ran == []
    [action] = actions(tr).values()
    assert kinds(action) == ["intent", "decision", "result"]
    assert action[2]["data"]["status"] == "unknown"


def test_call_held_for_adk_confirmation_is_recorded_cancelled(tr: Tribune) -> None:
    ran: list[str] = []

    def crm_read(customer_id: str) -> str:
        """Read a customer."""
        ran.append(customer_id)
        return "Ada"

    model = Scripted(turns=[[("crm_read", {"customer_id": "42"})]])
    runner = runner_for(tr, model, [FunctionTool(crm_read, require_confirmation=True)])
    with tr.task("bot", purpose="answer ticket 42", tools=["crm.read"]):
        run_sync(runner)
    assert ran == []
    [action] = actions(tr).values()
    assert kinds(action) == ["intent", "decision", "result"]
    assert action[1]["data"]["effect"] == "allow"
    assert action[2]["data"]["status"] == "cancelled"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_without_a_task_the_tool_does_not_run_and_the_run_fails(tr: Tribune, mode: str) -> None:
    ran: list[str] = []

    def crm_read(customer_id: str) -> str:
        """Read a customer."""
        ran.append(customer_id)
        return "Ada"

    model = Scripted(turns=[[("crm_read", {"customer_id": "42"})]])
    runner = runner_for(tr, model, [crm_read])
    with pytest.raises(RuntimeError) as info:  # ADK wraps a plugin's error, chained
        if mode == "sync":
            run_sync(runner)
        else:
            asyncio.run(run(runner))
    cause = info.value.__cause__
    assert isinstance(cause, InvalidInput) and "no task" in cause.message
    assert ran == []
    assert actions(tr) == {}
