"""Pydantic AI adapter: the real agent run loop, a scripted ``FunctionModel``, a real Tribune.

Each test runs an ``Agent`` whose model is a script of tool calls; the script keeps what the
model was shown, so "the model saw the message" is asserted on the model's next turn. Tool
bodies count their runs, so "never ran" is asserted, not assumed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic_ai import Agent, ModelRetry, RunContext
from pydantic_ai.capabilities import Hooks
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    RetryPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.tools import ToolDefinition

from tribune.bootstrap import Tribune
from tribune.core.canonical import keyed_digest
from tribune.errors import InvalidInput
from tribune.integrations.pydantic_ai import TribuneCapability

from .agent_world import open_home

NAMES = {"crm_read": "crm.read", "email_send": "email.send"}


@pytest.fixture
def tr(tmp_path: Path) -> Iterator[Tribune]:
    yield from open_home(tmp_path)


class Script:
    """A model that makes the given tool calls, one per turn, then answers "done"; it keeps
    the messages it was last shown."""

    def __init__(self, *calls: tuple[str, dict[str, Any]]) -> None:
        self.calls = list(calls)
        self.seen: list[ModelMessage] = []

    def __call__(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        self.seen = list(messages)
        if self.calls:
            name, args = self.calls.pop(0)
            return ModelResponse(parts=[ToolCallPart(name, args)])
        return ModelResponse(parts=[TextPart("done")])

    def tool_results(self) -> list[ToolReturnPart | RetryPromptPart]:
        """Every tool outcome the model was shown, in order."""
        return [
            part
            for message in self.seen
            if isinstance(message, ModelRequest)
            for part in message.parts
            if isinstance(part, ToolReturnPart | RetryPromptPart)
        ]


def agent_for(tr: Tribune, script: Script, **capability: Any) -> Agent[None, str]:
    return Agent(
        FunctionModel(script),
        capabilities=[TribuneCapability(tr, names=NAMES, **capability)],
    )


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


# --------------------------------------------------------------------------- allowed


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_allowed_call_runs_once_and_the_model_sees_its_result(tr: Tribune, mode: str) -> None:
    ran: list[str] = []
    script = Script(("crm_read", {"customer_id": "42"}))
    agent = agent_for(tr, script)
    if mode == "sync":

        @agent.tool_plain
        def crm_read(customer_id: str) -> str:
            ran.append(customer_id)
            return "Ada Lovelace owes 12 EUR"

        with tr.task("bot", purpose="answer ticket 42", tools=["crm.read"]) as task:
            result = agent.run_sync("what does 42 owe?")
    else:

        @agent.tool_plain(name="crm_read")
        async def crm_read_async(customer_id: str) -> str:
            await asyncio.sleep(0)
            ran.append(customer_id)
            return "Ada Lovelace owes 12 EUR"

        async def main() -> Any:
            async with tr.atask("bot", purpose="answer ticket 42", tools=["crm.read"]) as t:
                return await agent.run("what does 42 owe?"), t

        result, task = asyncio.run(main())

    assert result.output == "done"
    assert ran == ["42"]
    [outcome] = script.tool_results()
    assert isinstance(outcome, ToolReturnPart)
    assert outcome.content == "Ada Lovelace owes 12 EUR"
    [action] = actions(tr).values()
    assert kinds(action) == ["intent", "decision", "result"]
    intent, decision, outcome_record = (r["data"] for r in action)
    assert intent["tool"] == "crm.read" and intent["arguments"] == {"customer_id": "42"}
    assert decision["effect"] == "allow"
    assert outcome_record["status"] == "ok"
    key = (tr.home / "keys" / "digest.secret").read_bytes()
    assert outcome_record["output_digest"] == keyed_digest("Ada Lovelace owes 12 EUR", key)
    assert {r["task_id"] for r in action} == {task.id}


def test_explicit_task_is_used_outside_any_task_block(tr: Tribune) -> None:
    ran: list[str] = []
    task = tr.start_task("bot", purpose="answer ticket 42", tools=["crm.read"])
    script = Script(("crm_read", {"customer_id": "7"}))
    agent = agent_for(tr, script, task=task.id)

    @agent.tool_plain
    def crm_read(customer_id: str) -> str:
        ran.append(customer_id)
        return "Grace"

    assert agent.run_sync("who is 7?").output == "done"
    assert ran == ["7"]
    [action] = actions(tr).values()
    assert {r["task_id"] for r in action} == {task.id}


class Query(BaseModel):
    customer_id: str
    since: date


class Answer(BaseModel):
    text: str


def test_typed_arguments_are_decided_in_their_json_form(tr: Tribune) -> None:
    seen: list[Query] = []
    script = Script(("crm_read", {"query": {"customer_id": "42", "since": "2026-01-31"}}))
    agent = agent_for(tr, script)

    @agent.tool_plain
    def crm_read(query: Query) -> str:
        seen.append(query)
        return "nothing new"

    with tr.task("bot", purpose="answer ticket 42", tools=["crm.read"]):
        agent.run_sync("anything new for 42?")
    assert seen == [Query(customer_id="42", since=date(2026, 1, 31))]
    [action] = actions(tr).values()
    assert action[0]["data"]["arguments"] == {"query": {"customer_id": "42", "since": "2026-01-31"}}
    assert kinds(action) == ["intent", "decision", "result"]


def test_tribune_decides_on_the_arguments_hooks_hand_to_the_tool(tr: Tribune) -> None:
    """A hook that rewrites arguments runs before Tribune decides, whatever the list order."""
    hooks = Hooks[Any]()

    @hooks.on.before_tool_execute
    async def rewrite(
        ctx: RunContext[Any], *, call: ToolCallPart, tool_def: ToolDefinition, args: Any
    ) -> Any:
        return {**args, "customer_id": "99"}

    ran: list[str] = []
    script = Script(("crm_read", {"customer_id": "42"}))
    agent = Agent(
        FunctionModel(script),
        capabilities=[TribuneCapability(tr, names=NAMES), hooks],  # Tribune listed first
    )

    @agent.tool_plain
    def crm_read(customer_id: str) -> str:
        ran.append(customer_id)
        return "ok"

    with tr.task("bot", purpose="answer ticket 42", tools=["crm.read"]):
        agent.run_sync("look up 42")
    assert ran == ["99"]
    [action] = actions(tr).values()
    assert action[0]["data"]["arguments"] == {"customer_id": "99"}


def test_output_tools_are_not_governed(tr: Tribune) -> None:
    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        [output_tool] = info.output_tools
        return ModelResponse(parts=[ToolCallPart(output_tool.name, {"text": "hi"})])

    agent = Agent(FunctionModel(model), output_type=Answer, capabilities=[TribuneCapability(tr)])
    with tr.task("bot", purpose="answer ticket 42", tools=["crm.read"]):
        assert agent.run_sync("say hi").output == Answer(text="hi")
    assert actions(tr) == {}


# --------------------------------------------------------------------------- not allowed


def test_denied_call_never_runs_and_the_model_reads_why(tr: Tribune) -> None:
    ran: list[Any] = []
    # the same denied call twice: a failed tool result spends no retry budget
    call = ("email_send", {"to": "bob@example.com", "body": "hi"})
    script = Script(call, call)
    agent = agent_for(tr, script)

    @agent.tool_plain
    def email_send(to: str, body: str) -> str:
        ran.append(to)
        return "sent"

    with tr.task("bot", purpose="answer ticket 42", tools=["crm.read"]):
        result = agent.run_sync("mail bob")
    assert result.output == "done"  # the run went on
    assert ran == []
    outcomes = script.tool_results()
    assert len(outcomes) == 2
    grouped = actions(tr)
    for outcome, (action_id, action) in zip(outcomes, grouped.items(), strict=True):
        assert isinstance(outcome, ToolReturnPart) and outcome.outcome == "failed"
        text = str(outcome.content)
        assert text.startswith("Tribune: ") and "did not run" in text
        assert "intent-tool-not-in-scope" in text and action_id in text
        assert kinds(action) == ["intent", "decision"]  # no result: nothing ran
        assert action[1]["data"]["effect"] == "deny"


def test_without_deferral_approval_required_never_runs_and_the_model_reads_pending(
    tr: Tribune,
) -> None:
    """``defer=False``; the deferred flow is in test_pydantic_ai_approvals.py."""
    ran: list[Any] = []
    script = Script(("email_send", {"to": "mallory@unknown.example", "body": "hi"}))
    agent = agent_for(tr, script, defer=False)

    @agent.tool_plain
    def email_send(to: str, body: str) -> str:
        ran.append(to)
        return "sent"

    with tr.task("bot", purpose="answer ticket 42", tools=["crm.read", "email.send"]):
        assert agent.run_sync("mail mallory").output == "done"
    assert ran == []
    [outcome] = script.tool_results()
    assert isinstance(outcome, ToolReturnPart) and outcome.outcome == "failed"
    assert "pending human approval" in str(outcome.content)
    assert "approval" in str(outcome.content).split(";")[0]
    [action] = actions(tr).values()
    assert kinds(action) == ["intent", "decision"]
    assert action[1]["data"]["effect"] == "approval_required"


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_tool_error_is_recorded_by_type_without_its_message(tr: Tribune, mode: str) -> None:
    script = Script(("crm_read", {"customer_id": "42"}))
    agent = agent_for(tr, script)
    boom = LookupError("customer 42 pays with card 4111 1111 1111 1111")
    if mode == "sync":

        @agent.tool_plain
        def crm_read(customer_id: str) -> str:
            raise boom

    else:

        @agent.tool_plain(name="crm_read")
        async def crm_read_async(customer_id: str) -> str:
            raise boom

    with (
        tr.task("bot", purpose="answer ticket 42", tools=["crm.read"]),
        pytest.raises(LookupError),
    ):
        agent.run_sync("what does 42 owe?")
    [action] = actions(tr).values()
    assert kinds(action) == ["intent", "decision", "result"]
    result = action[2]["data"]
    assert result["status"] == "error" and result["error"] == "LookupError"
    dumped = json.dumps(records(tr))
    assert "4111 1111" not in dumped and "pays with card" not in dumped


def test_model_retry_from_the_tool_is_recorded_as_an_error(tr: Tribune) -> None:
    script = Script(("crm_read", {"customer_id": "x"}))
    agent = agent_for(tr, script)

    @agent.tool_plain
    def crm_read(customer_id: str) -> str:
        raise ModelRetry("customer ids are digits")

    with tr.task("bot", purpose="answer ticket 42", tools=["crm.read"]):
        assert agent.run_sync("look up x").output == "done"
    [outcome] = script.tool_results()
    assert isinstance(outcome, ToolReturnPart) and outcome.outcome == "retried"
    assert "customer ids are digits" in str(outcome.content)
    [action] = actions(tr).values()
    assert action[2]["data"]["status"] == "error" and action[2]["data"]["error"] == "ModelRetry"


def test_cancelled_run_records_the_call_as_cancelled(tr: Tribune) -> None:
    script = Script(("crm_read", {"customer_id": "42"}))
    agent = agent_for(tr, script)
    started = asyncio.Event()

    @agent.tool_plain
    async def crm_read(customer_id: str) -> str:
        started.set()
        await asyncio.Event().wait()  # never set
        return "unreachable"

    async def main() -> None:
        async with tr.atask("bot", purpose="answer ticket 42", tools=["crm.read"]):
            run = asyncio.create_task(agent.run("look up 42"))
            await started.wait()
            run.cancel()
            with pytest.raises(asyncio.CancelledError):
                await run

    asyncio.run(main())
    [action] = actions(tr).values()
    assert kinds(action) == ["intent", "decision", "result"]
    assert action[2]["data"]["status"] == "cancelled" and "error" not in action[2]["data"]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_without_a_task_the_tool_does_not_run_and_the_run_fails(tr: Tribune, mode: str) -> None:
    ran: list[str] = []
    script = Script(("crm_read", {"customer_id": "42"}))
    agent = agent_for(tr, script)

    @agent.tool_plain
    def crm_read(customer_id: str) -> str:
        ran.append(customer_id)
        return "Ada"

    with pytest.raises(InvalidInput) as info:
        if mode == "sync":
            agent.run_sync("what does 42 owe?")
        else:
            asyncio.run(agent.run("what does 42 owe?"))
    assert info.value.code == "invalid_input" and "no task" in info.value.message
    assert ran == []
    assert actions(tr) == {}
