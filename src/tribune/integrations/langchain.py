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
result, error or cancellation. A denied call does not run; the model reads
``model_message(verdict)`` in an error ``ToolMessage``. Errors from Tribune itself (no current
task, a store that does not answer) are raised out of ``invoke`` and the tool does not run.

A call that needs approval interrupts the graph the way ``HumanInTheLoopMiddleware`` does in
its ``per_call`` mode: ``langgraph.types.interrupt`` with a ``tool_approval`` request that also
carries the Tribune ``ticket``, answered by ``Command(resume={interrupt_id: {"type":
"approve"}})`` or ``{"type": "reject", "message": ...}`` (``resolve_interrupts`` builds those
answers from the tickets). On resume the call is decided again with its ticket: it runs only if
Tribune approved it, once; a ``reject`` never runs it. The graph needs a checkpointer to be
resumed; with ``interrupt=False`` the model reads the pending approval instead.

Put it last in ``middleware=[...]`` (innermost): it then decides exactly the call that runs, each
retry of an outer retry middleware is its own action, and it sees a tool's exception before an
outer error middleware turns it into a message.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Annotated, Any, cast

from langchain.agents.middleware import AgentMiddleware, AgentState
from langchain.agents.middleware.human_in_the_loop import ApproveDecision, RejectDecision
from langchain_core.messages import ToolMessage
from langgraph.errors import GraphBubbleUp
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import Command, Interrupt, interrupt
from pydantic import Discriminator

from tribune.core.model import ResultStatus, Verdict
from tribune.errors import ApprovalRequired
from tribune.integrations._paused import (
    Remembered,
    asked_in,
    asks_approval,
    ticket_fields,
    time_left,
    unapproved_text,
)
from tribune.sdk.governed import Governed, current_task, elapsed_ms, failure, model_message

__all__ = ["TribuneMiddleware", "aresolve_interrupts", "resolve_interrupts"]

Result = ToolMessage | Command[Any]
Answer = ApproveDecision | RejectDecision
# what a resume may say: approve, or reject (an edit would be another action: another ticket)
ANSWER: Any = Annotated[ApproveDecision | RejectDecision, Discriminator("type")]


class TribuneMiddleware(AgentMiddleware[AgentState[Any], Any, Any]):
    """Decides each tool call in ``task`` (default: the current task at call time) as the
    Tribune tool named by ``names`` (default: the tool's own name). ``interrupt``: pause the
    graph for approval (default), or tell the model the call is pending (graphs without a
    checkpointer cannot resume)."""

    def __init__(
        self,
        gov: Governed,
        *,
        task: str | None = None,
        environment: str | None = None,
        names: Mapping[str, str] | None = None,
        interrupt: bool = True,
    ) -> None:
        super().__init__()
        self.gov = gov
        self.task = task
        self.environment = environment
        self.names = dict(names or {})
        self.interrupt = interrupt
        self.paused = Remembered()  # calls interrupted for approval, by tool call id

    def wrap_tool_call(
        self, request: ToolCallRequest, handler: Callable[[ToolCallRequest], Result]
    ) -> Result:
        call = request.tool_call
        name = self.names.get(call["name"], call["name"])
        verdict = self._interrupted(request) or self.gov.decide_call(
            name, call["args"], task=self.task, environment=self.environment
        )
        if self.interrupt and _pausable(request, verdict):
            answer = self._ask(request, verdict)
            if answer["type"] == "reject":
                return _rejected(request, verdict, answer)
            verdict = self.gov.decide_call(
                name,
                call["args"],
                task=self.task,
                environment=self.environment,
                ticket=verdict.ticket_id,
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
        name = self.names.get(call["name"], call["name"])
        verdict = self._interrupted(request) or await self.gov.adecide_call(
            name, call["args"], task=self.task, environment=self.environment
        )
        if self.interrupt and _pausable(request, verdict):
            answer = self._ask(request, verdict)
            if answer["type"] == "reject":
                return _rejected(request, verdict, answer)
            verdict = await self.gov.adecide_call(
                name,
                call["args"],
                task=self.task,
                environment=self.environment,
                ticket=verdict.ticket_id,
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

    def _interrupted(self, request: ToolCallRequest) -> Verdict | None:
        """The verdict that interrupted this very call before (LangGraph runs the node again
        from its start on resume), so it is not decided as a new action."""
        call = request.tool_call
        if not self.interrupt or not call["id"]:
            return None
        return self.paused.find(call["id"], self.task or current_task.get(), call["args"])

    def _ask(self, request: ToolCallRequest, verdict: Verdict) -> Answer:
        """Interrupt the graph (the first time); on resume, the answer it was given."""
        call = request.tool_call
        call_id = call["id"] or ""
        self.paused.put(call_id, call["args"], verdict)
        # INVARIANT: the first time this raises GraphInterrupt and the verdict stays
        # remembered for the resume; an answer that fails validation may be given again.
        answer = cast(
            Answer, interrupt(_approval_request(request, verdict), response_schema=ANSWER)
        )
        self.paused.forget(call_id)
        return answer


def resolve_interrupts(
    gov: Governed, interrupts: Iterable[Interrupt], *, timeout: float
) -> dict[str, Answer]:
    """Answers for the interrupts Tribune raised, by interrupt id, for
    ``Command(resume=...)``: approve when the ticket is approved within ``timeout`` seconds
    (all together), otherwise reject with a Tribune message the model reads. Other interrupts
    are left out, for the application to answer."""
    deadline = time.monotonic() + max(0.0, timeout)
    answers: dict[str, Answer] = {}
    for item in interrupts:
        asked = asked_in(item.value)
        if asked:
            state = gov.wait_for_approval(asked["ticket"], time_left(deadline))
            answers[item.id] = _answer(asked, state)
    return answers


async def aresolve_interrupts(
    gov: Governed, interrupts: Iterable[Interrupt], *, timeout: float
) -> dict[str, Answer]:
    """``resolve_interrupts`` without holding the event loop while it waits."""
    deadline = time.monotonic() + max(0.0, timeout)
    answers: dict[str, Answer] = {}
    for item in interrupts:
        asked = asked_in(item.value)
        if asked:
            state = await gov.await_approval(asked["ticket"], time_left(deadline))
            answers[item.id] = _answer(asked, state)
    return answers


def _pausable(request: ToolCallRequest, verdict: Verdict) -> bool:
    # a call without an id cannot be matched to its answer; it is refused as pending
    return asks_approval(verdict) and bool(request.tool_call["id"])


def _approval_request(request: ToolCallRequest, verdict: Verdict) -> dict[str, Any]:
    """The interrupt's value: ``HumanInTheLoopMiddleware``'s per-call request, with the
    Tribune ticket to vote on."""
    call = request.tool_call
    pending = ApprovalRequired(verdict.decision, verdict.action_id, verdict.ticket_id)
    return {
        "type": "tool_approval",
        "tool_call_id": call["id"],
        "name": call["name"],
        "args": call["args"],
        "description": f"Tribune: {pending.message}; vote on ticket {verdict.ticket_id}",
        "tribune": ticket_fields(verdict),
    }


def _answer(asked: Mapping[str, str], state: str) -> Answer:
    if state == "approved":
        return ApproveDecision(type="approve")
    text = unapproved_text(asked["tool"], asked["action_id"], asked["ticket"], state)
    return RejectDecision(type="reject", message=text)


def _rejected(request: ToolCallRequest, verdict: Verdict, answer: Answer) -> ToolMessage:
    call = request.tool_call
    text = answer.get("message")
    if not isinstance(text, str) or not text:
        text = (
            f"Tribune: `{verdict.tool}` was rejected on resume; the call did not run "
            f"(action {verdict.action_id}, ticket {verdict.ticket_id})"
        )
    return ToolMessage(content=text, name=call["name"], tool_call_id=call["id"], status="error")


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
