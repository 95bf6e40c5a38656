"""The OpenAI Agents SDK adapter, driven through the SDK's real run loop.

A scripted ``Model`` emits tool calls and keeps every input it is given, so what the model read
back (a result, a Tribune message) is asserted from its next turn. Tool bodies count their runs.
Tribune is a real home on SQLite with the default policy pack.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, FunctionTool, RunConfig, Runner, Usage, WebSearchTool, function_tool
from agents.exceptions import UserError
from agents.items import ModelResponse
from agents.models.interface import Model
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)
from pydantic import BaseModel

from tribune.bootstrap import Tribune
from tribune.errors import InvalidInput
from tribune.integrations.openai_agents import (
    govern_agent,
    govern_tool,
    govern_tools,
    resolve_interruptions,
    ticket_of,
)

from .agent_world import kinds, only_action, open_home, raw_log, records

NAMES = {"crm_read": "crm.read", "email_send": "email.send"}
MODES = ["sync", "async"]
NO_TRACING = RunConfig(tracing_disabled=True)


@pytest.fixture
def tr(tmp_path: Path) -> Iterator[Tribune]:
    yield from open_home(tmp_path)


class ScriptedModel(Model):
    """Answers each turn with the next scripted tool call, then with a final text."""

    def __init__(self, *calls: tuple[str, Any]) -> None:
        self.calls = list(calls)
        self.inputs: list[Any] = []

    async def get_response(self, system_instructions: Any, input: Any, *a: Any, **k: Any) -> Any:
        self.inputs.append(copy.deepcopy(input))
        if self.calls:
            name, args = self.calls.pop(0)
            arguments = args if isinstance(args, str) else json.dumps(args)
            n = len(self.inputs)
            item: Any = ResponseFunctionToolCall(
                id=f"fc{n}", call_id=f"call{n}", name=name, arguments=arguments,
                type="function_call", status="completed",
            )  # fmt: skip
        else:
            text = ResponseOutputText(text="done", type="output_text", annotations=[])
            item = ResponseOutputMessage(
                id="msg", content=[text], role="assistant", status="completed", type="message"
            )
        return ModelResponse(output=[item], usage=Usage(), response_id=None)

    def stream_response(self, *a: Any, **k: Any) -> AsyncIterator[Any]:
        raise NotImplementedError

    def tool_outputs(self) -> list[str]:
        """What the model read back as tool outputs, in order."""
        last = self.inputs[-1]
        return [i["output"] for i in last if i.get("type") == "function_call_output"]


def tools(ran: list[str], mode: str) -> list[FunctionTool]:
    """``crm_read`` and ``email_send``, sync or async, appending to ``ran`` when they run."""
    if mode == "sync":

        def crm_read(customer_id: str) -> str:
            ran.append(f"crm_read:{customer_id}")
            return f"customer {customer_id} is Ada Lovelace"

        def email_send(to: str, body: str) -> str:
            ran.append(f"email_send:{to}")
            return "sent"

        return [function_tool(crm_read), function_tool(email_send)]

    async def acrm_read(customer_id: str) -> str:
        await asyncio.sleep(0)
        ran.append(f"crm_read:{customer_id}")
        return f"customer {customer_id} is Ada Lovelace"

    async def aemail_send(to: str, body: str) -> str:
        await asyncio.sleep(0)
        ran.append(f"email_send:{to}")
        return "sent"

    return [
        function_tool(acrm_read, name_override="crm_read"),
        function_tool(aemail_send, name_override="email_send"),
    ]


def run(tr: Tribune, model: ScriptedModel, agent_tools: list[Any], mode: str, **scope: Any) -> Any:
    """One run of an agent governed by ``tr`` inside a task of ``bot`` with ``scope``:
    ``Runner.run_sync`` (mode sync) or ``await Runner.run`` inside ``tr.atask`` (mode async)."""
    agent = govern_agent(tr, Agent(name="bot", model=model, tools=agent_tools), names=NAMES)
    if mode == "sync":
        with tr.task("bot", **scope):
            return Runner.run_sync(agent, "help", run_config=NO_TRACING)

    async def main() -> Any:
        async with tr.atask("bot", **scope):
            return await Runner.run(agent, "help", run_config=NO_TRACING)

    return asyncio.run(main())


# --------------------------------------------------------------------------- outcomes


@pytest.mark.parametrize("mode", MODES)
def test_allowed_call_runs_once_and_records_intent_decision_result(tr: Tribune, mode: str) -> None:
    ran: list[str] = []
    model = ScriptedModel(("crm_read", {"customer_id": "7"}))
    result = run(tr, model, tools(ran, mode), mode, purpose="ticket 42", tools=["crm.read"])
    assert result.final_output == "done"
    assert ran == ["crm_read:7"]
    assert model.tool_outputs() == ["customer 7 is Ada Lovelace"]
    found = only_action(tr)
    assert kinds(found) == ["intent", "decision", "result"]
    intent, decision, outcome = (r["data"] for r in found)
    assert intent["tool"] == "crm.read"  # the Tribune name, mapped from `crm_read`
    assert decision["effect"] == "allow"
    assert outcome["status"] == "ok" and "error" not in outcome


@pytest.mark.parametrize("mode", MODES)
def test_denied_call_never_runs_and_the_model_reads_why(tr: Tribune, mode: str) -> None:
    ran: list[str] = []
    model = ScriptedModel(("email_send", {"to": "bob@example.com", "body": "hi"}))
    run(tr, model, tools(ran, mode), mode, purpose="ticket 42", tools=["crm.read"])
    assert ran == []
    [seen] = model.tool_outputs()
    assert seen.startswith("Tribune: `email.send` denied by intent-tool-not-in-scope")
    assert "did not run" in seen
    found = only_action(tr)
    assert kinds(found) == ["intent", "decision"]  # no result: nothing ran
    assert found[1]["data"]["effect"] == "deny"
    assert found[0]["action_id"] in seen


@pytest.mark.parametrize("mode", MODES)
def test_without_interrupts_approval_required_never_runs_and_the_model_reads_pending(
    tr: Tribune, mode: str
) -> None:
    """``interrupt=False``; the interrupting flow is in test_openai_agents_approvals.py."""
    ran: list[str] = []
    model = ScriptedModel(("email_send", {"to": "eve@elsewhere.example", "body": "hi"}))
    agent = govern_agent(
        tr, Agent(name="bot", model=model, tools=tools(ran, mode)), names=NAMES, interrupt=False
    )
    assert all(t.needs_approval is False for t in agent.tools if isinstance(t, FunctionTool))
    scope = {"purpose": "ticket 42", "tools": ["crm.read", "email.send"]}
    if mode == "sync":
        with tr.task("bot", **scope):
            result = Runner.run_sync(agent, "help", run_config=NO_TRACING)
    else:

        async def main() -> Any:
            async with tr.atask("bot", **scope):
                return await Runner.run(agent, "help", run_config=NO_TRACING)

        result = asyncio.run(main())
    assert not result.interruptions
    assert ran == []
    [seen] = model.tool_outputs()
    assert "needs 1 approval(s)" in seen and "pending human approval" in seen
    found = only_action(tr)
    assert kinds(found) == ["intent", "decision"]
    assert found[1]["data"]["effect"] == "approval_required"


@pytest.mark.parametrize("mode", MODES)
def test_body_raising_records_error_type_without_its_message(tr: Tribune, mode: str) -> None:
    ran: list[str] = []

    def crm_read(customer_id: str) -> str:
        ran.append(customer_id)
        raise LookupError("secret-detail-4711")

    async def acrm_read(customer_id: str) -> str:
        return crm_read(customer_id)

    body = crm_read if mode == "sync" else acrm_read
    tool = function_tool(body, name_override="crm_read")
    model = ScriptedModel(("crm_read", {"customer_id": "7"}))
    run(tr, model, [tool], mode, purpose="ticket 42", tools=["crm.read"])
    assert ran == ["7"]
    # the SDK's own failure policy still makes the model's message, as without Tribune
    assert model.tool_outputs() == ["An error occurred while running the tool. Please try again."]
    found = only_action(tr)
    assert kinds(found) == ["intent", "decision", "result"]
    assert found[2]["data"]["status"] == "error"
    assert found[2]["data"]["error"] == "LookupError"
    assert "secret-detail-4711" not in raw_log(tr)


def test_body_raising_without_failure_formatter_fails_the_run_and_is_recorded(
    tr: Tribune,
) -> None:
    @function_tool(failure_error_function=None)
    def crm_read(customer_id: str) -> str:
        raise LookupError("boom")

    model = ScriptedModel(("crm_read", {"customer_id": "7"}))
    with pytest.raises(UserError) as info:
        run(tr, model, [crm_read], "sync", purpose="ticket 42", tools=["crm.read"])
    assert isinstance(info.value.__cause__, LookupError)
    found = only_action(tr)
    assert kinds(found) == ["intent", "decision", "result"]
    assert found[2]["data"]["error"] == "LookupError"


def test_timed_out_body_records_cancelled(tr: Tribune) -> None:
    started: list[int] = []

    @function_tool(timeout=0.05)
    async def crm_read(customer_id: str) -> str:
        started.append(1)
        await asyncio.sleep(30)
        return "never"

    model = ScriptedModel(("crm_read", {"customer_id": "7"}))
    run(tr, model, [crm_read], "async", purpose="ticket 42", tools=["crm.read"])
    assert started == [1]
    assert model.tool_outputs() == ["Tool 'crm_read' timed out after 0.05 seconds."]
    found = only_action(tr)
    assert kinds(found) == ["intent", "decision", "result"]
    assert found[2]["data"]["status"] == "cancelled"


# --------------------------------------------------------------------------- tasks and set-up


@pytest.mark.parametrize("mode", MODES)
def test_no_task_fails_the_run_and_the_body_never_runs(tr: Tribune, mode: str) -> None:
    ran: list[str] = []
    agent = govern_agent(
        tr,
        Agent(name="bot", model=ScriptedModel(("crm_read", {"customer_id": "7"})),
              tools=tools(ran, mode)),
        names=NAMES,
    )  # fmt: skip
    with pytest.raises(UserError, match="no task for this call") as info:
        if mode == "sync":
            Runner.run_sync(agent, "help", run_config=NO_TRACING)
        else:
            asyncio.run(Runner.run(agent, "help", run_config=NO_TRACING))
    assert isinstance(info.value.__cause__, InvalidInput)  # the SDK wraps what a tool raises
    assert ran == []
    assert records(tr) == []


def test_explicit_task_is_used_outside_any_task_block(tr: Tribune) -> None:
    ran: list[str] = []
    task = tr.start_task("bot", purpose="ticket 42", tools=["crm.read"])
    model = ScriptedModel(("crm_read", {"customer_id": "7"}))
    governed = govern_tools(tr, tools(ran, "sync"), names=NAMES, task=task.id)
    Runner.run_sync(Agent(name="bot", model=model, tools=governed), "help", run_config=NO_TRACING)
    assert ran == ["crm_read:7"]
    assert {r["task_id"] for r in only_action(tr)} == {task.id}


def test_arguments_that_are_not_an_object_are_refused_unrun(tr: Tribune) -> None:
    """The SDK itself pauses a call whose arguments a ``needs_approval`` callable cannot read;
    resolving the interruption refuses it with Tribune's message."""
    ran: list[str] = []
    model = ScriptedModel(("crm_read", "[1, 2]"))
    agent = govern_agent(tr, Agent(name="bot", model=model, tools=tools(ran, "sync")), names=NAMES)
    with tr.task("bot", purpose="ticket 42", tools=["crm.read"]):
        paused = Runner.run_sync(agent, "help", run_config=NO_TRACING)
        [item] = paused.interruptions
        assert ticket_of(item) is None
        state = resolve_interruptions(tr, paused, timeout=0)
        Runner.run_sync(agent, state, run_config=NO_TRACING)
    assert ran == []
    [seen] = model.tool_outputs()
    assert seen.startswith("Tribune: the arguments of `crm_read` are not a JSON object")
    assert records(tr) == []


def test_governing_leaves_the_original_tool_ungoverned(tr: Tribune) -> None:
    ran: list[str] = []
    original, _ = tools(ran, "sync")
    governed = govern_tool(tr, original, name="crm.read")
    assert governed is not original and governed.name == original.name
    assert governed.params_json_schema == original.params_json_schema
    model = ScriptedModel(("crm_read", {"customer_id": "7"}))
    Runner.run_sync(Agent(name="bot", model=model, tools=[original]), "x", run_config=NO_TRACING)
    assert ran == ["crm_read:7"] and records(tr) == []


def test_hosted_tools_are_refused(tr: Tribune) -> None:
    with pytest.raises(InvalidInput, match="cannot govern tool `web_search`"):
        govern_tools(tr, [WebSearchTool()])


def test_a_name_tribune_does_not_know_is_denied(tr: Tribune) -> None:
    ran: list[str] = []
    model = ScriptedModel(("crm_read", {"customer_id": "7"}))
    agent_tools = govern_tools(tr, tools(ran, "sync"))  # no names: `crm_read` is not registered
    with tr.task("bot", purpose="ticket 42", tools=["crm.read"]):
        Runner.run_sync(
            Agent(name="bot", model=model, tools=agent_tools), "x", run_config=NO_TRACING
        )
    assert ran == []
    assert "unknown tool `crm_read`" in model.tool_outputs()[0]


class Customer(BaseModel):
    name: str


def test_refusing_a_tool_with_a_structured_output_fails_the_run_unrun(tr: Tribune) -> None:
    """A known limit: the SDK checks a tool's output against its declared output type, so the
    Tribune message cannot reach the model; the run fails closed instead."""
    ran: list[str] = []

    @function_tool(output_type=Customer)
    def crm_read(customer_id: str) -> Customer:
        ran.append(customer_id)
        return Customer(name="Ada")

    model = ScriptedModel(("crm_read", {"customer_id": "7"}))
    with pytest.raises(UserError, match="does not match its declared output schema"):
        run(tr, model, [crm_read], "sync", purpose="ticket 42", tools=["email.send"])
    assert ran == []
    assert kinds(only_action(tr)) == ["intent", "decision"]
