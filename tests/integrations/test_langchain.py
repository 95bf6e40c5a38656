"""The LangChain v1 adapter, driven through ``create_agent``'s real LangGraph run loop.

A scripted chat model emits tool calls and keeps the messages of every turn, so what the model
read back (a result, a Tribune message) is asserted from its next turn. Tool bodies count their
runs. Tribune is a real home on SQLite with the default policy pack.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import BaseTool, StructuredTool, ToolException, tool
from pydantic import Field

from tribune.bootstrap import Tribune
from tribune.errors import InvalidInput
from tribune.integrations.langchain import TribuneMiddleware

from .agent_world import kinds, only_action, open_home, raw_log, records

NAMES = {"crm_read": "crm.read", "email_send": "email.send"}
MODES = ["sync", "async"]


@pytest.fixture
def tr(tmp_path: Path) -> Iterator[Tribune]:
    yield from open_home(tmp_path)


class ScriptedChatModel(BaseChatModel):
    """Answers each turn with the next scripted tool call, then with a final text."""

    calls: list[Any]  # per turn: (name, args), or a list of them for parallel calls
    seen: list[list[BaseMessage]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self

    def _generate(self, messages: list[BaseMessage], *a: Any, **k: Any) -> ChatResult:
        self.seen.append(list(messages))
        if self.calls:
            turn = self.calls.pop(0)
            turn = turn if isinstance(turn, list) else [turn]
            n = len(self.seen)
            calls = [
                {"name": name, "args": args, "id": f"call{n}" + (f"-{i}" if i else "")}
                for i, (name, args) in enumerate(turn)
            ]
            message = AIMessage(content="", tool_calls=calls)
        else:
            message = AIMessage(content="done")
        return ChatResult(generations=[ChatGeneration(message=message)])

    def tool_outputs(self) -> list[ToolMessage]:
        """The tool messages the model read on its last turn."""
        return [m for m in self.seen[-1] if isinstance(m, ToolMessage)]


def scripted(*calls: Any) -> ScriptedChatModel:
    return ScriptedChatModel(calls=list(calls))


def tools(ran: list[str], mode: str) -> list[BaseTool]:
    """``crm_read`` and ``email_send``, sync or async, appending to ``ran`` when they run."""
    if mode == "sync":

        @tool
        def crm_read(customer_id: str) -> str:
            """Read a customer."""
            ran.append(f"crm_read:{customer_id}")
            return f"customer {customer_id} is Ada Lovelace"

        @tool
        def email_send(to: str, body: str) -> str:
            """Send an e-mail."""
            ran.append(f"email_send:{to}")
            return "sent"

        return [crm_read, email_send]

    @tool("crm_read")
    async def acrm_read(customer_id: str) -> str:
        """Read a customer."""
        await asyncio.sleep(0)
        ran.append(f"crm_read:{customer_id}")
        return f"customer {customer_id} is Ada Lovelace"

    @tool("email_send")
    async def aemail_send(to: str, body: str) -> str:
        """Send an e-mail."""
        await asyncio.sleep(0)
        ran.append(f"email_send:{to}")
        return "sent"

    return [acrm_read, aemail_send]


def run(
    tr: Tribune,
    model: ScriptedChatModel,
    agent_tools: Sequence[BaseTool],
    mode: str,
    middleware: TribuneMiddleware | None = None,
    **scope: Any,
) -> dict[str, Any]:
    """One run of an agent governed by ``tr`` inside a task of ``bot`` with ``scope``:
    ``invoke`` (mode sync) or ``await ainvoke`` inside ``tr.atask`` (mode async)."""
    middleware = middleware or TribuneMiddleware(tr, names=NAMES)
    agent = create_agent(model, list(agent_tools), middleware=[middleware])
    question = {"messages": [{"role": "user", "content": "help"}]}
    if mode == "sync":
        with tr.task("bot", **scope):
            return agent.invoke(question)

    async def main() -> dict[str, Any]:
        async with tr.atask("bot", **scope):
            return await agent.ainvoke(question)

    return asyncio.run(main())


# --------------------------------------------------------------------------- outcomes


@pytest.mark.parametrize("mode", MODES)
def test_allowed_call_runs_once_and_records_intent_decision_result(tr: Tribune, mode: str) -> None:
    ran: list[str] = []
    model = scripted(("crm_read", {"customer_id": "7"}))
    out = run(tr, model, tools(ran, mode), mode, purpose="ticket 42", tools=["crm.read"])
    assert out["messages"][-1].content == "done"
    assert ran == ["crm_read:7"]
    [seen] = model.tool_outputs()
    assert seen.content == "customer 7 is Ada Lovelace" and seen.status == "success"
    found = only_action(tr)
    assert kinds(found) == ["intent", "decision", "result"]
    intent, decision, outcome = (r["data"] for r in found)
    assert intent["tool"] == "crm.read"  # the Tribune name, mapped from `crm_read`
    assert decision["effect"] == "allow"
    assert outcome["status"] == "ok" and "error" not in outcome


@pytest.mark.parametrize("mode", MODES)
def test_denied_call_never_runs_and_the_model_reads_why(tr: Tribune, mode: str) -> None:
    ran: list[str] = []
    model = scripted(("email_send", {"to": "bob@example.com", "body": "hi"}))
    run(tr, model, tools(ran, mode), mode, purpose="ticket 42", tools=["crm.read"])
    assert ran == []
    [seen] = model.tool_outputs()
    assert seen.status == "error" and seen.tool_call_id == "call1"
    assert isinstance(seen.content, str)
    assert seen.content.startswith("Tribune: `email.send` denied by intent-tool-not-in-scope")
    assert "did not run" in seen.content
    found = only_action(tr)
    assert kinds(found) == ["intent", "decision"]  # no result: nothing ran
    assert found[1]["data"]["effect"] == "deny"
    assert found[0]["action_id"] in seen.content


@pytest.mark.parametrize("mode", MODES)
def test_without_interrupts_approval_required_never_runs_and_the_model_reads_pending(
    tr: Tribune, mode: str
) -> None:
    """``interrupt=False``, for graphs without a checkpointer (they cannot be resumed); the
    interrupting flow is in test_langchain_approvals.py."""
    ran: list[str] = []
    model = scripted(("email_send", {"to": "eve@elsewhere.example", "body": "hi"}))
    scope = {"purpose": "ticket 42", "tools": ["crm.read", "email.send"]}
    quiet = TribuneMiddleware(tr, names=NAMES, interrupt=False)
    run(tr, model, tools(ran, mode), mode, quiet, **scope)
    assert ran == []
    [seen] = model.tool_outputs()
    assert isinstance(seen.content, str) and seen.status == "error"
    assert "needs 1 approval(s)" in seen.content and "pending human approval" in seen.content
    found = only_action(tr)
    assert kinds(found) == ["intent", "decision"]
    assert found[1]["data"]["effect"] == "approval_required"


@pytest.mark.parametrize("mode", MODES)
def test_parallel_calls_in_one_turn_are_each_decided_in_the_task(tr: Tribune, mode: str) -> None:
    ran: list[str] = []
    turn = [("crm_read", {"customer_id": "7"}), ("email_send", {"to": "x@y.example", "body": ""})]
    model = scripted(turn)
    run(tr, model, tools(ran, mode), mode, purpose="ticket 42", tools=["crm.read"])
    assert ran == ["crm_read:7"]
    read, send = model.tool_outputs()
    assert read.content == "customer 7 is Ada Lovelace"
    assert isinstance(send.content, str) and "intent-tool-not-in-scope" in send.content
    effects = [r["data"]["effect"] for r in records(tr) if r["kind"] == "decision"]
    assert sorted(effects) == ["allow", "deny"]


@pytest.mark.parametrize("mode", MODES)
def test_body_raising_records_error_type_without_its_message(tr: Tribune, mode: str) -> None:
    ran: list[str] = []

    def body(customer_id: str) -> str:
        """Read a customer."""
        ran.append(customer_id)
        raise LookupError("secret-detail-4711")

    async def abody(customer_id: str) -> str:
        """Read a customer."""
        return body(customer_id)

    crm_read = tool("crm_read")(body if mode == "sync" else abody)
    model = scripted(("crm_read", {"customer_id": "7"}))
    with pytest.raises(LookupError):  # LangChain raises a tool's exception out of the run
        run(tr, model, [crm_read], mode, purpose="ticket 42", tools=["crm.read"])
    assert ran == ["7"]
    found = only_action(tr)
    assert kinds(found) == ["intent", "decision", "result"]
    assert found[2]["data"]["status"] == "error"
    assert found[2]["data"]["error"] == "LookupError"
    assert "secret-detail-4711" not in raw_log(tr)


def test_tool_error_the_tool_turns_into_a_message_is_recorded_as_error(tr: Tribune) -> None:
    def body(customer_id: str) -> str:
        """Read a customer."""
        raise ToolException("customer 7 is archived")

    crm_read = StructuredTool.from_function(body, name="crm_read", handle_tool_error=True)
    model = scripted(("crm_read", {"customer_id": "7"}))
    run(tr, model, [crm_read], "sync", purpose="ticket 42", tools=["crm.read"])
    [seen] = model.tool_outputs()
    assert seen.content == "customer 7 is archived" and seen.status == "error"
    found = only_action(tr)
    assert found[2]["data"]["status"] == "error"
    assert found[2]["data"]["error"] == "ToolException"


def test_cancelled_async_body_records_cancelled(tr: Tribune) -> None:
    started: list[int] = []

    @tool
    async def crm_read(customer_id: str) -> str:
        """Read a customer."""
        started.append(1)
        await asyncio.sleep(30)
        return "never"

    agent = create_agent(
        scripted(("crm_read", {"customer_id": "7"})),
        [crm_read],
        middleware=[TribuneMiddleware(tr, names=NAMES)],
    )

    async def main() -> None:
        async with tr.atask("bot", purpose="ticket 42", tools=["crm.read"]):
            run = asyncio.create_task(agent.ainvoke({"messages": [("user", "help")]}))
            while not started:
                await asyncio.sleep(0.01)
            run.cancel()
            with pytest.raises(asyncio.CancelledError):
                await run

    asyncio.run(main())
    found = only_action(tr)
    assert kinds(found) == ["intent", "decision", "result"]
    assert found[2]["data"]["status"] == "cancelled"


# --------------------------------------------------------------------------- tasks and set-up


@pytest.mark.parametrize("mode", MODES)
def test_no_task_fails_the_run_and_the_body_never_runs(tr: Tribune, mode: str) -> None:
    ran: list[str] = []
    model = scripted(("crm_read", {"customer_id": "7"}))
    agent = create_agent(model, tools(ran, mode), middleware=[TribuneMiddleware(tr, names=NAMES)])
    question = {"messages": [{"role": "user", "content": "help"}]}
    with pytest.raises(InvalidInput, match="no task for this call"):
        if mode == "sync":
            agent.invoke(question)
        else:
            asyncio.run(agent.ainvoke(question))
    assert ran == []
    assert records(tr) == []


def test_explicit_task_is_used_outside_any_task_block(tr: Tribune) -> None:
    ran: list[str] = []
    task = tr.start_task("bot", purpose="ticket 42", tools=["crm.read"])
    model = scripted(("crm_read", {"customer_id": "7"}))
    middleware = TribuneMiddleware(tr, names=NAMES, task=task.id)
    agent = create_agent(model, tools(ran, "sync"), middleware=[middleware])
    agent.invoke({"messages": [{"role": "user", "content": "help"}]})
    assert ran == ["crm_read:7"]
    assert {r["task_id"] for r in only_action(tr)} == {task.id}


def test_tool_names_are_tribune_names_by_default(tr: Tribune) -> None:
    ran: list[str] = []

    @tool("crm.read")
    def crm_read(customer_id: str) -> str:
        """Read a customer."""
        ran.append(customer_id)
        return "Ada"

    model = scripted(("crm.read", {"customer_id": "7"}), ("crm_read", {"customer_id": "8"}))
    run(tr, model, [crm_read], "sync", TribuneMiddleware(tr), purpose="x", tools=["crm.read"])
    assert ran == ["7"]  # `crm_read` is neither a tool here nor known to Tribune
    [seen] = model.tool_outputs()[-1:]
    assert isinstance(seen.content, str) and "unknown tool `crm_read`" in seen.content
