"""Tribune for LangChain v1 agents: a middleware that decides each tool call before it runs.

    import tribune
    from langchain.agents import create_agent
    from tribune.integrations.langchain import TribuneMiddleware

    tr = tribune.open()
    agent = create_agent(model, [read_customer], middleware=[TribuneMiddleware(tr)])
    with tr.task("support-bot", purpose="answer ticket 42", tools=["crm.read"]):
        agent.invoke({"messages": [{"role": "user", "content": "Who is customer 7?"}]})

``wrap_tool_call`` (and ``awrap_tool_call`` for ``ainvoke``/``astream``) sees each call before
and after: it decides the call, calls the handler (the tool) only when allowed, and records the
result, error or cancellation. A denied or approval-pending call does not run; the model reads
``model_message(verdict)`` in an error ``ToolMessage``. Errors from Tribune itself (no current
task, a store that does not answer) are raised out of ``invoke`` and the tool does not run.

Put it last in ``middleware=[...]`` (innermost): it then decides exactly the call that runs, each
retry of an outer retry middleware is its own action, and it sees a tool's exception before an
outer error middleware turns it into a message.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from langchain.agents.middleware import AgentMiddleware, AgentState
from langchain_core.messages import ToolMessage
from langgraph.errors import GraphBubbleUp
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import Command

from tribune.core.model import ResultStatus, Verdict
from tribune.sdk.governed import Governed, elapsed_ms, failure, model_message

__all__ = ["TribuneMiddleware"]

Result = ToolMessage | Command[Any]


class TribuneMiddleware(AgentMiddleware[AgentState[Any], Any, Any]):
    """Decides each tool call in ``task`` (default: the current task at call time) as the
    Tribune tool named by ``names`` (default: the tool's own name)."""

    def __init__(
        self,
        gov: Governed,
        *,
        task: str | None = None,
        environment: str | None = None,
        names: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.gov = gov
        self.task = task
        self.environment = environment
        self.names = dict(names or {})

    def wrap_tool_call(
        self, request: ToolCallRequest, handler: Callable[[ToolCallRequest], Result]
    ) -> Result:
        call = request.tool_call
        verdict = self.gov.decide_call(
            self.names.get(call["name"], call["name"]),
            call["args"],
            task=self.task,
            environment=self.environment,
        )
        if not verdict.allowed:
            return _refusal(request, verdict)
        started = time.perf_counter()
        try:
            result = handler(request)
        except BaseException as exc:
            status, error = _exception_status(exc)
            self.gov.record(verdict, status, duration_ms=elapsed_ms(started), error=error)
            raise
        status, error = _result_status(result)
        self.gov.record(
            verdict, status, output=_output(result), duration_ms=elapsed_ms(started), error=error
        )
        return result

    async def awrap_tool_call(
        self, request: ToolCallRequest, handler: Callable[[ToolCallRequest], Awaitable[Result]]
    ) -> Result:
        call = request.tool_call
        verdict = await self.gov.adecide_call(
            self.names.get(call["name"], call["name"]),
            call["args"],
            task=self.task,
            environment=self.environment,
        )
        if not verdict.allowed:
            return _refusal(request, verdict)
        started = time.perf_counter()
        try:
            result = await handler(request)
        except BaseException as exc:
            status, error = _exception_status(exc)
            await self.gov.arecord(verdict, status, duration_ms=elapsed_ms(started), error=error)
            raise
        status, error = _result_status(result)
        await self.gov.arecord(
            verdict, status, output=_output(result), duration_ms=elapsed_ms(started), error=error
        )
        return result


def _refusal(request: ToolCallRequest, verdict: Verdict) -> ToolMessage:
    call = request.tool_call
    return ToolMessage(
        content=model_message(verdict),
        name=call["name"],
        tool_call_id=call["id"],
        status="error",
    )


def _exception_status(exc: BaseException) -> tuple[ResultStatus, str | None]:
    # An interrupt inside the tool pauses it; on resume the tool runs again as a new action.
    if isinstance(exc, GraphBubbleUp):
        return ResultStatus.CANCELLED, None
    return failure(exc)


def _result_status(result: Result) -> tuple[ResultStatus, str | None]:
    # An error message in place of a result comes from a `ToolException` that the tool (its
    # `handle_tool_error`) or the tool node (bad arguments) turned into a message.
    if isinstance(result, ToolMessage) and result.status == "error":
        return ResultStatus.ERROR, "ToolException"
    return ResultStatus.OK, None


def _output(result: Result) -> Any:
    return result.content if isinstance(result, ToolMessage) else result
