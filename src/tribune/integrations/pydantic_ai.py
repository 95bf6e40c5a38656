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
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic_ai import RunContext, ToolFailed
from pydantic_ai.capabilities import AbstractCapability, CapabilityOrdering
from pydantic_ai.toolsets import AbstractToolset, ToolsetTool, WrapperToolset
from pydantic_core import to_jsonable_python

from tribune.core.model import ResultStatus
from tribune.sdk.governed import Governed, elapsed_ms, failure, model_message

__all__ = ["TribuneCapability"]


class TribuneCapability(AbstractCapability[Any]):
    """Governs every function tool of the agent it is given to.

    ``task``: the task id to act in (default: the current one, ``with tr.task(...)``).
    ``names``: Tribune tool names by framework tool name, for tools whose Tribune name a model
    API would not accept (``{"crm_read": "crm.read"}``); unlisted names are used as they are.
    """

    def __init__(
        self,
        gov: Governed,
        *,
        task: str | None = None,
        names: Mapping[str, str] | None = None,
    ) -> None:
        self.gov = gov
        self.task = task
        self.names = dict(names or {})

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
        verdict = await cap.gov.adecide_call(cap.names.get(name, name), arguments, task=cap.task)
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
