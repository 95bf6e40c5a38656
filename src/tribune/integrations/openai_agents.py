"""Tribune for the OpenAI Agents SDK: each call of a governed function tool is decided first.

    import tribune
    from agents import Agent, Runner, function_tool
    from tribune.integrations.openai_agents import govern_agent, resolve_interruptions

    tr = tribune.open()
    @function_tool
    def crm_read(customer_id: str) -> str: ...
    agent = Agent(name="support", tools=[crm_read])
    agent = govern_agent(tr, agent, names={"crm_read": "crm.read"})
    with tr.task("support-bot", purpose="answer ticket 42", tools=["crm.read"]):
        result = Runner.run_sync(agent, "What is the name of customer 7?")
        while result.interruptions:  # Tribune asked humans to approve a call
            state = resolve_interruptions(tr, result, timeout=600)
            result = Runner.run_sync(agent, state)

A governed tool is a copy of the original whose ``needs_approval`` and invoker are Tribune's.
``needs_approval`` decides the call once, when the model makes it, and remembers the verdict by
call id; the invoker uses that verdict: it runs the original body only when allowed, and records
its result, error or cancellation. A denied call does not run; the model reads
``model_message(verdict)`` as the tool's output. A call that needs approval pauses the run with
the SDK's own interruption (``result.interruptions``); ``resolve_interruptions`` waits for each
call's Tribune ticket and approves the SDK item only when the ticket is approved (otherwise it
rejects it with a Tribune message); on resume the call is decided again with its ticket and runs
only if Tribune allows it, using the ticket up. An SDK approval alone (``state.approve``) never
runs a call: without an approved ticket the re-decision refuses it. With ``interrupt=False``
the tool's ``needs_approval`` stays as it was and the model reads the pending approval instead.
An error from Tribune itself (no current task, a store that does not answer) fails the run, as
the SDK's ``UserError`` caused by it, and the tool does not run.

Why a wrapper rather than tool guardrails: an output guardrail sees the SDK's formatted error
string when a body raises (an error would be recorded as ok), and it never runs when the body
raises without a failure formatter or is cancelled (a decision would be left without a result).
"""

from __future__ import annotations

import copy
import inspect
import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from agents import Agent, FunctionTool, RunState, Tool, ToolApprovalItem
from agents.result import RunResult, RunResultStreaming
from agents.run_context import RunContextWrapper
from agents.tool import (
    maybe_invoke_function_tool_failure_error_function,
    set_function_tool_failure_error_function,
)
from agents.tool_context import ToolContext

from tribune.core.model import ResultStatus, Verdict
from tribune.errors import InvalidInput
from tribune.integrations._paused import Remembered, asks_approval, time_left, unapproved
from tribune.sdk.governed import Governed, current_task, elapsed_ms, failure, model_message

__all__ = [
    "aresolve_interruptions",
    "govern_agent",
    "govern_tool",
    "govern_tools",
    "resolve_interruptions",
    "ticket_of",
]


def govern_tool(
    gov: Governed,
    tool: Tool,
    *,
    name: str | None = None,
    task: str | None = None,
    environment: str | None = None,
    interrupt: bool = True,
) -> FunctionTool:
    """A copy of ``tool`` whose every call Tribune decides and records as the tool ``name``
    (default: the tool's own name) in ``task`` (default: the current task at call time).
    ``interrupt``: pause the run when a call needs approval (default), or tell the model it is
    pending and leave the tool's ``needs_approval`` as it was (for models that refuse
    approval tools, such as the experimental hosted multi-agent model)."""
    if not isinstance(tool, FunctionTool):
        raise InvalidInput(
            f"cannot govern tool `{getattr(tool, 'name', type(tool).__name__)}`",
            hint="only function tools run in this process; govern hosted tools elsewhere",
        )
    gate = _Gate(gov, tool, name or tool.name, task, environment)
    governed = copy.copy(tool)
    if interrupt:
        governed.needs_approval = gate.needs_approval
    governed.on_invoke_tool = gate.invoke
    return governed


def govern_tools(
    gov: Governed,
    tools: Iterable[Tool],
    *,
    names: Mapping[str, str] | None = None,
    task: str | None = None,
    environment: str | None = None,
    interrupt: bool = True,
) -> list[Tool]:
    """``govern_tool`` for each tool; ``names`` maps a tool's name to its Tribune name where they
    differ (OpenAI tool names cannot hold dots: ``{"crm_read": "crm.read"}``). A name Tribune
    does not know is denied as an unknown tool."""
    names = names or {}
    return [
        govern_tool(
            gov, t, name=names.get(t.name), task=task, environment=environment, interrupt=interrupt
        )
        for t in tools
    ]


def govern_agent(
    gov: Governed,
    agent: Agent[Any],
    *,
    names: Mapping[str, str] | None = None,
    task: str | None = None,
    environment: str | None = None,
    interrupt: bool = True,
) -> Agent[Any]:
    """A clone of ``agent`` whose tools are governed (its handoffs' agents and its MCP servers'
    tools are not: govern those agents too, and put MCP servers behind the Tribune gateway)."""
    tools = govern_tools(
        gov, agent.tools, names=names, task=task, environment=environment, interrupt=interrupt
    )
    return agent.clone(tools=tools)


# --------------------------------------------------------------------------- approvals


def ticket_of(item: ToolApprovalItem) -> str | None:
    """The Tribune ticket an interruption waits on; None for one Tribune did not raise (the
    tool's own ``needs_approval``) or does not remember (a run resumed in another process)."""
    verdict = _pending(item)
    return verdict.ticket_id if verdict is not None else None


def resolve_interruptions(
    gov: Governed, result: RunResult | RunResultStreaming | RunState[Any], *, timeout: float
) -> RunState[Any]:
    """The run's state with each interruption Tribune raised settled: approved in the SDK when
    its ticket is approved within ``timeout`` seconds (all tickets together), otherwise
    rejected with a Tribune message the model reads. Interruptions without a Tribune ticket
    are left for the application to approve or reject. Resume with ``Runner.run(agent,
    state)``: each approved call is decided again with its ticket, and runs once."""
    state = result if isinstance(result, RunState) else result.to_state()
    deadline = time.monotonic() + max(0.0, timeout)
    for item in state.get_interruptions():
        verdict = _pending(item)
        if verdict is not None and verdict.ticket_id:
            ticket = gov.wait_for_approval(verdict.ticket_id, time_left(deadline))
            _settle(state, item, verdict, ticket)
        elif _malformed(item):
            state.reject(item, rejection_message=_not_an_object(item.tool_name))
    return state


async def aresolve_interruptions(
    gov: Governed, result: RunResult | RunResultStreaming | RunState[Any], *, timeout: float
) -> RunState[Any]:
    """``resolve_interruptions`` without holding the event loop while it waits."""
    state = result if isinstance(result, RunState) else result.to_state()
    deadline = time.monotonic() + max(0.0, timeout)
    for item in state.get_interruptions():
        verdict = _pending(item)
        if verdict is not None and verdict.ticket_id:
            ticket = await gov.await_approval(verdict.ticket_id, time_left(deadline))
            _settle(state, item, verdict, ticket)
        elif _malformed(item):
            state.reject(item, rejection_message=_not_an_object(item.tool_name))
    return state


def _settle(state: RunState[Any], item: ToolApprovalItem, verdict: Verdict, ticket: str) -> None:
    """Approve the SDK item only for an approved ticket; otherwise reject it, saying why."""
    if ticket == "approved":
        state.approve(item)
    else:
        state.reject(item, rejection_message=unapproved(verdict, ticket))


def _gate(item: ToolApprovalItem) -> _Gate | None:
    """The gate of the governed tool behind an interruption; None if it is not governed."""
    for tool in getattr(item.agent, "tools", ()):
        if isinstance(tool, FunctionTool) and tool.name == item.tool_name:
            gate = getattr(tool.needs_approval, "__self__", None)
            return gate if isinstance(gate, _Gate) else None
    return None


def _pending(item: ToolApprovalItem) -> Verdict | None:
    """The approval-required verdict Tribune remembers for an interruption."""
    gate = _gate(item)
    call_id = getattr(item.raw_item, "call_id", None)
    if gate is None or not isinstance(call_id, str):
        return None
    verdict = gate.calls.peek(call_id)
    return verdict if verdict is not None and asks_approval(verdict) else None


def _malformed(item: ToolApprovalItem) -> bool:
    """A governed call whose arguments are not an object (the SDK pauses those itself)."""
    arguments = getattr(item.raw_item, "arguments", None)
    return _gate(item) is not None and isinstance(arguments, str) and _arguments(arguments) is None


def _not_an_object(tool: str | None) -> str:
    return f"Tribune: the arguments of `{tool}` are not a JSON object; the call did not run"


# --------------------------------------------------------------------------- the gate


class _Gate:
    """One governed tool's ``needs_approval`` and invoker, sharing the verdicts they decide."""

    def __init__(
        self,
        gov: Governed,
        tool: FunctionTool,
        name: str,
        task: str | None,
        environment: str | None,
    ) -> None:
        self.gov = gov
        self.tool = tool
        self.name = name
        self.task = task
        self.environment = environment
        self.own = tool.needs_approval
        self.calls = Remembered()
        # INVARIANT: the inner copy raises what its body raises, so `invoke` sees every
        # failure; the original tool's failure policy then makes the model's message.
        self.inner = copy.copy(tool)
        set_function_tool_failure_error_function(self.inner, None)

    async def needs_approval(
        self, ctx: RunContextWrapper[Any], params: dict[str, Any], call_id: str
    ) -> bool:
        """Decide the call once, when the model makes it; pause the run when Tribune asks for
        approval. A tool whose own policy asks for approval pauses first and is decided when
        it is invoked."""
        if await self._own(ctx, params, call_id):
            return True
        verdict = await self.gov.adecide_call(
            self.name, params, task=self.task, environment=self.environment
        )
        self.calls.put(call_id, params, verdict)
        return asks_approval(verdict)

    async def invoke(self, ctx: ToolContext[Any], input_json: str) -> Any:
        arguments = _arguments(input_json)
        if arguments is None:
            return _not_an_object(self.tool.name)
        verdict = self.calls.take(ctx.tool_call_id, self.task or current_task.get(), arguments)
        if verdict is None or asks_approval(verdict):
            # after a pause: decided again, with its ticket; only an approved one lets it run
            verdict = await self.gov.adecide_call(
                self.name,
                arguments,
                task=self.task,
                environment=self.environment,
                ticket=verdict.ticket_id if verdict is not None else None,
            )
        if not verdict.allowed:
            return model_message(verdict)
        started = time.perf_counter()
        try:
            output = await self.inner.on_invoke_tool(ctx, input_json)
        except BaseException as exc:
            status, error = failure(exc)
            await self.gov.arecord(verdict, status, duration_ms=elapsed_ms(started), error=error)
            if not isinstance(exc, Exception):
                raise
            message = await maybe_invoke_function_tool_failure_error_function(
                function_tool=self.tool, context=ctx, error=exc
            )
            if message is None:
                raise
            return message
        await self.gov.arecord(
            verdict, ResultStatus.OK, output=output, duration_ms=elapsed_ms(started)
        )
        return output

    async def _own(self, ctx: RunContextWrapper[Any], params: dict[str, Any], call_id: str) -> bool:
        own = self.own
        if isinstance(own, bool):
            return own
        answer: Any = own(ctx, params, call_id)
        return bool(await answer if inspect.isawaitable(answer) else answer)


def _arguments(input_json: str) -> dict[str, Any] | None:
    """The call's arguments, or None when they are not a JSON object (the SDK reads an empty
    string as no arguments)."""
    try:
        value = json.loads(input_json) if input_json else {}
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
