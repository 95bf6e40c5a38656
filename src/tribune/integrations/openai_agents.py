"""Tribune for the OpenAI Agents SDK: each call of a governed function tool is decided first.

    import tribune
    from agents import Agent, Runner, function_tool
    from tribune.integrations.openai_agents import govern_agent

    tr = tribune.open()
    @function_tool
    def crm_read(customer_id: str) -> str: ...
    agent = Agent(name="support", tools=[crm_read])
    agent = govern_agent(tr, agent, names={"crm_read": "crm.read"})
    with tr.task("support-bot", purpose="answer ticket 42", tools=["crm.read"]):
        result = Runner.run_sync(agent, "What is the name of customer 7?")

A governed tool is a copy of the original whose invoker is wrapped, so one place sees each call
before and after: it decides the call, runs the original body only when allowed, and records its
result, error or cancellation. A denied or approval-pending call does not run; the model reads
``model_message(verdict)`` as the tool's output. An error from Tribune itself (no current task,
a store that does not answer) fails the run, as the SDK's ``UserError`` caused by it, and the
tool does not run.

Why a wrapper rather than tool guardrails: an output guardrail sees the SDK's formatted error
string when a body raises (an error would be recorded as ok), and it never runs when the body
raises without a failure formatter or is cancelled (a decision would be left without a result).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from agents import Agent, FunctionTool, Tool
from agents.tool import (
    maybe_invoke_function_tool_failure_error_function,
    set_function_tool_failure_error_function,
)
from agents.tool_context import ToolContext

from tribune.core.model import ResultStatus
from tribune.errors import InvalidInput
from tribune.sdk.governed import Governed, elapsed_ms, failure, model_message

__all__ = ["govern_agent", "govern_tool", "govern_tools"]


def govern_tool(
    gov: Governed,
    tool: Tool,
    *,
    name: str | None = None,
    task: str | None = None,
    environment: str | None = None,
) -> FunctionTool:
    """A copy of ``tool`` whose every call Tribune decides and records as the tool ``name``
    (default: the tool's own name) in ``task`` (default: the current task at call time)."""
    if not isinstance(tool, FunctionTool):
        raise InvalidInput(
            f"cannot govern tool `{getattr(tool, 'name', type(tool).__name__)}`",
            hint="only function tools run in this process; govern hosted tools elsewhere",
        )
    tribune_name = name or tool.name
    # INVARIANT: the inner copy raises what its body raises, so `invoke` sees every failure;
    # the original tool's failure policy then makes the model's message, as it did before.
    inner = copy.copy(tool)
    set_function_tool_failure_error_function(inner, None)

    async def invoke(ctx: ToolContext[Any], input_json: str) -> Any:
        arguments = _arguments(input_json)
        if arguments is None:
            return (
                f"Tribune: the arguments of `{tool.name}` are not a JSON object; "
                "the call did not run"
            )
        verdict = await gov.adecide_call(
            tribune_name, arguments, task=task, environment=environment
        )
        if not verdict.allowed:
            return model_message(verdict)
        started = time.perf_counter()
        try:
            output = await inner.on_invoke_tool(ctx, input_json)
        except BaseException as exc:
            status, error = failure(exc)
            await gov.arecord(verdict, status, duration_ms=elapsed_ms(started), error=error)
            if not isinstance(exc, Exception):
                raise
            message = await maybe_invoke_function_tool_failure_error_function(
                function_tool=tool, context=ctx, error=exc
            )
            if message is None:
                raise
            return message
        await gov.arecord(verdict, ResultStatus.OK, output=output, duration_ms=elapsed_ms(started))
        return output

    governed = copy.copy(tool)
    governed.on_invoke_tool = invoke
    return governed


def govern_tools(
    gov: Governed,
    tools: Iterable[Tool],
    *,
    names: Mapping[str, str] | None = None,
    task: str | None = None,
    environment: str | None = None,
) -> list[Tool]:
    """``govern_tool`` for each tool; ``names`` maps a tool's name to its Tribune name where they
    differ (OpenAI tool names cannot hold dots: ``{"crm_read": "crm.read"}``). A name Tribune
    does not know is denied as an unknown tool."""
    names = names or {}
    return [
        govern_tool(gov, t, name=names.get(t.name), task=task, environment=environment)
        for t in tools
    ]


def govern_agent(
    gov: Governed,
    agent: Agent[Any],
    *,
    names: Mapping[str, str] | None = None,
    task: str | None = None,
    environment: str | None = None,
) -> Agent[Any]:
    """A clone of ``agent`` whose tools are governed (its handoffs' agents and its MCP servers'
    tools are not: govern those agents too, and put MCP servers behind the Tribune gateway)."""
    tools = govern_tools(gov, agent.tools, names=names, task=task, environment=environment)
    return agent.clone(tools=tools)


def _arguments(input_json: str) -> dict[str, Any] | None:
    """The call's arguments, or None when they are not a JSON object (the SDK reads an empty
    string as no arguments)."""
    try:
        value = json.loads(input_json) if input_json else {}
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
