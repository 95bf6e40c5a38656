"""Tribune for Google ADK: every tool call a runner's agents make is decided, then recorded.

    import tribune
    from google.adk.apps import App
    from google.adk.runners import InMemoryRunner
    from tribune.integrations.google_adk import TribunePlugin

    tr = tribune.open()
    app = App(name="support", root_agent=agent, plugins=[TribunePlugin(tr)])
    runner = InMemoryRunner(app=app)
    async with tr.atask("support-bot", purpose="answer ticket 42", tools=["read_customer"]):
        async for event in runner.run_async(user_id="u", session_id=sid, new_message=msg):
            ...

ADK has no wrap hook for tools, so the plugin pairs its callbacks by (invocation, tool call
id): ``before_tool_callback`` decides, and on a denial or a pending approval answers the call
with ``{"error": model_message(verdict)}`` (the tool is skipped and the model reads that);
``after_tool_callback`` records the result, ``on_tool_error_callback`` the failure or the
cancellation. An allowed call whose outcome no callback reported (a later callback raised) is
recorded ``unknown`` when the run ends. A call ADK holds back for its own confirmation did not
run: it is recorded ``cancelled``, and the confirmed re-run is decided again.

A call that needs approval asks ADK's own tool confirmation
(``tool_context.request_confirmation``) with the Tribune ticket in its payload
(``{"tribune": {"ticket": ..., "action_id": ..., "tool": ...}}``): the run yields an
``adk_request_confirmation`` function call and stops. The application answers with a
``FunctionResponse`` of that name (``resolve_confirmations`` builds the message from the
tickets). On the confirmed re-run the call is decided again with its ticket and runs only if
Tribune allows it, once; a confirmation without Tribune's approval is refused. With
``confirm=False`` the model is told the call is pending instead.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from google.adk.agents.invocation_context import InvocationContext
from google.adk.events.event import Event
from google.adk.plugins.base_plugin import BasePlugin
from google.adk.tools.base_tool import BaseTool
from google.adk.tools.tool_confirmation import ToolConfirmation
from google.adk.tools.tool_context import ToolContext
from google.genai import types

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

__all__ = ["TribunePlugin", "aresolve_confirmations", "resolve_confirmations"]

CONFIRMATION = "adk_request_confirmation"  # ADK's name for its confirmation call

_Key = tuple[str, str]


class TribunePlugin(BasePlugin):
    """Governs every tool call of the runner it is registered with (register it last, so
    it decides on the arguments earlier plugins may have changed).

    ``task``: the task id to act in (default: the current one, ``async with tr.atask(...)``).
    ``names``: Tribune tool names by ADK tool name (``{"crm_read": "crm.read"}``); unlisted
    names are used as they are.
    ``confirm``: ask ADK's tool confirmation when a call needs approval (default), or tell the
    model the call is pending.
    """

    def __init__(
        self,
        gov: Governed,
        *,
        task: str | None = None,
        names: Mapping[str, str] | None = None,
        name: str = "tribune",
        confirm: bool = True,
    ) -> None:
        super().__init__(name)
        self.gov = gov
        self.task = task
        self.names = dict(names or {})
        self.confirm = confirm
        self._running: dict[_Key, tuple[Verdict, float]] = {}  # allowed, outcome not recorded
        self.paused = Remembered()  # calls held for confirmation, by function call id

    async def before_tool_callback(
        self, *, tool: BaseTool, tool_args: dict[str, Any], tool_context: ToolContext
    ) -> dict[str, Any] | None:
        call_id = tool_context.function_call_id
        confirmation = tool_context.tool_confirmation
        ticket: str | None = None
        if confirmation is not None and call_id:
            # the re-run after a confirmation: only Tribune's ticket lets it run
            paused = self.paused.take(call_id, self.task or current_task.get(), tool_args)
            asked = asked_in(confirmation.payload)
            ticket = paused.ticket_id if paused else asked.get("ticket")
            if ticket and not confirmation.confirmed:
                return {"error": asked.get("message") or _REFUSED.format(tool=tool.name)}
        # a Tribune error (no task, store down) propagates: the tool does not run
        verdict = await self.gov.adecide_call(
            self.names.get(tool.name, tool.name), tool_args, task=self.task, ticket=ticket
        )
        # ADK asks once per call: a re-run that still needs approval is refused as pending
        if self.confirm and call_id and confirmation is None and asks_approval(verdict):
            self.paused.put(call_id, tool_args, verdict)
            tool_context.request_confirmation(
                hint=model_message(verdict), payload={"tribune": ticket_fields(verdict)}
            )
            tool_context.actions.skip_summarization = True  # the pause is no result to read
            return {"error": model_message(verdict)}
        if not verdict.allowed:
            return {"error": model_message(verdict)}
        self._running[_key(tool_context)] = (verdict, time.perf_counter())
        return None

    async def after_tool_callback(
        self,
        *,
        tool: BaseTool,
        tool_args: dict[str, Any],
        tool_context: ToolContext,
        result: dict[str, Any],
    ) -> dict[str, Any] | None:
        running = self._running.pop(_key(tool_context), None)
        if running is None:  # denied here, or answered before it reached this plugin
            return None
        verdict, started = running
        if _held_for_confirmation(tool_context):
            await self.gov.arecord(verdict, ResultStatus.CANCELLED, duration_ms=elapsed_ms(started))
        else:
            await self.gov.arecord(
                verdict, ResultStatus.OK, output=result, duration_ms=elapsed_ms(started)
            )
        return None

    async def on_tool_error_callback(
        self,
        *,
        tool: BaseTool,
        tool_args: dict[str, Any],
        tool_context: ToolContext,
        error: Exception,
    ) -> dict[str, Any] | None:
        running = self._running.pop(_key(tool_context), None)
        if running is not None:
            verdict, started = running
            status, name = failure(error)
            await self.gov.arecord(verdict, status, duration_ms=elapsed_ms(started), error=name)
        return None  # the error goes on as ADK would handle it without this plugin

    async def after_run_callback(self, *, invocation_context: InvocationContext) -> None:
        await self._unknown(invocation_context.invocation_id)

    async def on_run_error_callback(
        self, *, invocation_context: InvocationContext, error: Exception
    ) -> None:
        await self._unknown(invocation_context.invocation_id)

    async def _unknown(self, invocation_id: str) -> None:
        """Record as unknown the allowed calls of a finished run that no callback reported."""
        # list() copies the keys at once: runs on other threads (Runner.run) share the dict
        for key in [k for k in list(self._running) if k[0] == invocation_id]:
            running = self._running.pop(key, None)
            if running is not None:
                verdict, started = running
                await self.gov.arecord(
                    verdict, ResultStatus.UNKNOWN, duration_ms=elapsed_ms(started)
                )


def resolve_confirmations(
    gov: Governed, events: Iterable[Event], *, timeout: float
) -> types.Content | None:
    """The user message answering the confirmations Tribune asked for in ``events`` (a run's
    events): confirmed when the ticket is approved within ``timeout`` seconds (all together),
    otherwise refused with a Tribune message the model reads. None when Tribune asked none;
    other confirmations are left out, for the application to answer in its own parts."""
    deadline = time.monotonic() + max(0.0, timeout)
    parts = []
    for call_id, asked in _confirmations(events):
        state = gov.wait_for_approval(asked["ticket"], time_left(deadline))
        parts.append(_answer(call_id, asked, state))
    return types.Content(role="user", parts=parts) if parts else None


async def aresolve_confirmations(
    gov: Governed, events: Iterable[Event], *, timeout: float
) -> types.Content | None:
    """``resolve_confirmations`` without holding the event loop while it waits."""
    deadline = time.monotonic() + max(0.0, timeout)
    parts = []
    for call_id, asked in _confirmations(events):
        state = await gov.await_approval(asked["ticket"], time_left(deadline))
        parts.append(_answer(call_id, asked, state))
    return types.Content(role="user", parts=parts) if parts else None


_REFUSED = "Tribune: the confirmation of `{tool}` was refused; the call did not run"


def _confirmations(events: Iterable[Event]) -> list[tuple[str, dict[str, str]]]:
    """(confirmation call id, Tribune payload) for each confirmation Tribune asked for."""
    found = []
    for event in events:
        for call in event.get_function_calls():
            if call.name != CONFIRMATION or not call.id:
                continue
            asked = (call.args or {}).get("toolConfirmation")
            fields = asked_in(asked.get("payload") if isinstance(asked, dict) else None)
            if fields:
                found.append((call.id, fields))
    return found


def _answer(call_id: str, asked: dict[str, str], state: str) -> types.Part:
    approved = state == "approved"
    payload: dict[str, Any] = {"tribune": dict(asked)}
    if not approved:
        text = unapproved_text(asked["tool"], asked["action_id"], asked["ticket"], state)
        payload["tribune"]["message"] = text
    confirmation = ToolConfirmation(confirmed=approved, payload=payload)
    response = types.FunctionResponse(
        name=CONFIRMATION, id=call_id, response=confirmation.model_dump(by_alias=True)
    )
    return types.Part(function_response=response)


def _key(tool_context: ToolContext) -> _Key:
    # ADK gives every model call an id; the context object is shared by one call's callbacks
    call_id = tool_context.function_call_id or f"context-{id(tool_context)}"
    return tool_context.invocation_id, call_id


def _held_for_confirmation(tool_context: ToolContext) -> bool:
    """ADK answered the call itself: confirmation asked for, or refused."""
    confirmation = tool_context.tool_confirmation
    asked = tool_context.function_call_id in tool_context.actions.requested_tool_confirmations
    return asked or (confirmation is not None and not confirmation.confirmed)
