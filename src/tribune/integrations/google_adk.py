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
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from google.adk.agents.invocation_context import InvocationContext
from google.adk.plugins.base_plugin import BasePlugin
from google.adk.tools.base_tool import BaseTool
from google.adk.tools.tool_context import ToolContext

from tribune.core.model import ResultStatus, Verdict
from tribune.sdk.governed import Governed, elapsed_ms, failure, model_message

__all__ = ["TribunePlugin"]

_Key = tuple[str, str]


class TribunePlugin(BasePlugin):
    """Governs every tool call of the runner it is registered with (register it last, so
    it decides on the arguments earlier plugins may have changed).

    ``task``: the task id to act in (default: the current one, ``async with tr.atask(...)``).
    ``names``: Tribune tool names by ADK tool name (``{"crm_read": "crm.read"}``); unlisted
    names are used as they are.
    """

    def __init__(
        self,
        gov: Governed,
        *,
        task: str | None = None,
        names: Mapping[str, str] | None = None,
        name: str = "tribune",
    ) -> None:
        super().__init__(name)
        self.gov = gov
        self.task = task
        self.names = dict(names or {})
        self._running: dict[_Key, tuple[Verdict, float]] = {}  # allowed, outcome not recorded

    async def before_tool_callback(
        self, *, tool: BaseTool, tool_args: dict[str, Any], tool_context: ToolContext
    ) -> dict[str, Any] | None:
        # a Tribune error (no task, store down) propagates: the tool does not run
        verdict = await self.gov.adecide_call(
            self.names.get(tool.name, tool.name), tool_args, task=self.task
        )
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


def _key(tool_context: ToolContext) -> _Key:
    # ADK gives every model call an id; the context object is shared by one call's callbacks
    call_id = tool_context.function_call_id or f"context-{id(tool_context)}"
    return tool_context.invocation_id, call_id


def _held_for_confirmation(tool_context: ToolContext) -> bool:
    """ADK answered the call itself: confirmation asked for, or refused."""
    confirmation = tool_context.tool_confirmation
    asked = tool_context.function_call_id in tool_context.actions.requested_tool_confirmations
    return asked or (confirmation is not None and not confirmation.confirmed)
