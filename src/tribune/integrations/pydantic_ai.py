"""Tribune for Pydantic AI: every tool call an agent makes is decided, then recorded.

    import tribune
    from pydantic_ai import Agent
    from tribune.integrations.pydantic_ai import TribuneCapability

    tr = tribune.open()
    agent = Agent(model, tools=[read_customer], capabilities=[TribuneCapability(tr)])
    with tr.task("support-bot", purpose="answer ticket 42", tools=["read_customer"]):
        agent.run_sync("What does customer 42 owe?")

The capability wraps the agent's tools (``get_wrapper_toolset``) in the innermost position, so
Tribune decides on the arguments the tool will really get (after every hook has shaped them),
sees the body's own exception before any hook recovers from it, and never decides a call that
a hook skipped. A call Tribune does not allow never runs: the model gets ``model_message`` as a
failed tool result (``ToolFailed``): it sees the message, no retry budget is spent and the run
goes on. ``ModelRetry`` is not used: it asks the model to fix and repeat the call, and with the
default ``retries=1`` a second denial of the same tool would end the run.

A call that needs approval raises Pydantic AI's own ``ApprovalRequired`` with the Tribune ticket
in its metadata (``{"tribune": {"ticket": ..., "action_id": ..., "tool": ...}}``): the run ends
with ``DeferredToolRequests`` (the agent's output types must include it). The application
resumes with ``DeferredToolResults``; ``resolve_deferred`` builds them from the tickets (approved
only for an approved ticket, otherwise ``ToolDenied`` with a Tribune message). A resumed call
that Pydantic AI marks approved is decided again with its ticket and runs only if Tribune allows
it, once; an approval given without Tribune's is refused as a failed tool result. With
``defer=False`` the model is told the call is pending instead.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic_ai import (
    ApprovalRequired,
    DeferredToolRequests,
    DeferredToolResults,
    RunContext,
    ToolApproved,
    ToolDenied,
    ToolFailed,
)
from pydantic_ai.capabilities import AbstractCapability, CapabilityOrdering
from pydantic_ai.toolsets import AbstractToolset, ToolsetTool, WrapperToolset
from pydantic_core import to_jsonable_python

from tribune.core.model import ResultStatus, Verdict
from tribune.integrations._paused import (
    Remembered,
    asked_in,
    asks_approval,
    ticket_fields,
    time_left,
    unapproved_text,
)
from tribune.sdk.governed import Governed, current_task, elapsed_ms, failure, model_message

__all__ = ["TribuneCapability", "aresolve_deferred", "resolve_deferred"]


class TribuneCapability(AbstractCapability[Any]):
    """Governs every function tool of the agent it is given to.

    ``task``: the task id to act in (default: the current one, ``with tr.task(...)``).
    ``names``: Tribune tool names by framework tool name, for tools whose Tribune name a model
    API would not accept (``{"crm_read": "crm.read"}``); unlisted names are used as they are.
    ``defer``: end the run with ``DeferredToolRequests`` when a call needs approval (default),
    or tell the model the call is pending.
    """

    def __init__(
        self,
        gov: Governed,
        *,
        task: str | None = None,
        names: Mapping[str, str] | None = None,
        defer: bool = True,
    ) -> None:
        self.gov = gov
        self.task = task
        self.names = dict(names or {})
        self.defer = defer
        self.paused = Remembered()  # calls deferred for approval, by tool call id

    @classmethod
    def get_serialization_name(cls) -> str | None:
        return None  # built in code with a live Tribune, never from an agent spec

    def get_ordering(self) -> CapabilityOrdering:
        return CapabilityOrdering(position="innermost")

    def get_wrapper_toolset(self, toolset: AbstractToolset[Any]) -> AbstractToolset[Any]:
        return _GovernedToolset(toolset, self)


@dataclass
class _GovernedToolset(WrapperToolset[Any]):
    capability: TribuneCapability

    async def call_tool(
        self, name: str, tool_args: dict[str, Any], ctx: RunContext[Any], tool: ToolsetTool[Any]
    ) -> Any:
        cap = self.capability
        # validated arguments may hold models or dates: decide on their JSON form
        arguments = to_jsonable_python(tool_args)
        # a Tribune error (no task, store down) propagates: the tool does not run
        verdict = await self._decide(cap.names.get(name, name), arguments, ctx)
        if not verdict.allowed:
            raise ToolFailed(model_message(verdict))
        started = time.perf_counter()
        try:
            value = await self.wrapped.call_tool(name, tool_args, ctx, tool)
        except BaseException as exc:
            status, error = failure(exc)
            await cap.gov.arecord(verdict, status, duration_ms=elapsed_ms(started), error=error)
            raise
        await cap.gov.arecord(
            verdict, ResultStatus.OK, output=value, duration_ms=elapsed_ms(started)
        )
        return value

    async def _decide(self, name: str, arguments: Any, ctx: RunContext[Any]) -> Verdict:
        """The verdict for this call; raises ``ApprovalRequired`` to defer it for approval."""
        cap = self.capability
        call_id = ctx.tool_call_id
        ticket: str | None = None
        if ctx.tool_call_approved:
            # resumed as approved by the application: only Tribune's ticket lets it run
            task = cap.task or current_task.get()
            paused = cap.paused.take(call_id, task, arguments) if call_id else None
            ticket = paused.ticket_id if paused else asked_in(ctx.tool_call_metadata).get("ticket")
        verdict = await cap.gov.adecide_call(name, arguments, task=cap.task, ticket=ticket)
        if cap.defer and call_id and asks_approval(verdict):
            cap.paused.put(call_id, arguments, verdict)
            raise ApprovalRequired(metadata={"tribune": ticket_fields(verdict)})
        return verdict


def resolve_deferred(
    gov: Governed, requests: DeferredToolRequests, *, timeout: float
) -> DeferredToolResults:
    """Results for the approvals Tribune asked for, to pass as ``deferred_tool_results``:
    ``ToolApproved`` (with the ticket in its metadata) when the ticket is approved within
    ``timeout`` seconds (all together), otherwise ``ToolDenied`` with a Tribune message the
    model reads. Other deferred calls are left out, for the application to answer
    (``results.update(...)``)."""
    deadline = time.monotonic() + max(0.0, timeout)
    results = DeferredToolResults()
    for call in requests.approvals:
        asked = asked_in(requests.metadata.get(call.tool_call_id))
        if asked:
            state = gov.wait_for_approval(asked["ticket"], time_left(deadline))
            _answer(results, call.tool_call_id, asked, state)
    return results


async def aresolve_deferred(
    gov: Governed, requests: DeferredToolRequests, *, timeout: float
) -> DeferredToolResults:
    """``resolve_deferred`` without holding the event loop while it waits."""
    deadline = time.monotonic() + max(0.0, timeout)
    results = DeferredToolResults()
    for call in requests.approvals:
        asked = asked_in(requests.metadata.get(call.tool_call_id))
        if asked:
            state = await gov.await_approval(asked["ticket"], time_left(deadline))
            _answer(results, call.tool_call_id, asked, state)
    return results


def _answer(results: DeferredToolResults, call_id: str, asked: dict[str, str], state: str) -> None:
    if state == "approved":
        results.approvals[call_id] = ToolApproved()
        results.metadata[call_id] = {"tribune": asked}
    else:
        text = unapproved_text(asked["tool"], asked["action_id"], asked["ticket"], state)
        results.approvals[call_id] = ToolDenied(text)
