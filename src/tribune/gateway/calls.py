"""One governed ``tools/call`` through the gateway: check, decide, forward, record.

    unknown tool, oversized or schema-failing arguments → a tool error; nothing stored or sent
    decide (INTENT and DECISION durable)                 → denied / approval required: a tool
                                                           error with the reason; nothing sent
    forward to the upstream                              → its result, unchanged
    finish: RESULT record                                → OK, ERROR (an error result, an error
                                                           response), UNKNOWN (timed out, the
                                                           connection was lost mid-call) or
                                                           CANCELLED (the agent cancelled)

Every failure of an allowed call is recorded and answered as a tool error: the gateway stays
up. Audit records name what went wrong by kind, never by the upstream's message (it may hold
data); the agent sees the upstream's own message.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Protocol

import anyio
import mcp.types as types
import orjson
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError

from tribune.core.model import ResultStatus, Verdict
from tribune.errors import TribuneError
from tribune.gateway.catalog import Catalog
from tribune.gateway.upstreams import CallResult, UpstreamLost, Upstreams, UpstreamUnavailable
from tribune.sdk.governed import model_message
from tribune.services.governor import MAX_ARGUMENT_BYTES
from tribune.services.identity import Principal

MAX_MESSAGE = 300


class Decider(Protocol):
    """What a call needs of the governor."""

    def decide(
        self,
        task_id: str,
        tool_name: str,
        arguments: Mapping[str, Any],
        *,
        expects_result: bool = True,
    ) -> Verdict: ...

    def finish(
        self,
        verdict: Verdict,
        status: ResultStatus,
        *,
        output: Any = None,
        duration_ms: float = 0.0,
        error: str | None = None,
    ) -> Any: ...


def refusal(text: str) -> types.CallToolResult:
    """A tool error the model can read; every text the gateway writes starts `Tribune:`."""
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=f"Tribune: {text}")], is_error=True
    )


def unknown_tool(name: str, upstreams: Upstreams) -> types.CallToolResult:
    upstream = name.partition(".")[0] if isinstance(name, str) else ""
    if upstream in upstreams.settings and not upstreams.connected(upstream):
        return refusal(
            f"unknown tool `{name:.200}`: upstream `{upstream}` is not connected; nothing was run"
        )
    return refusal(f"unknown tool `{name:.200}`; nothing was run")


async def govern(
    governor: Decider,
    catalog: Catalog,
    upstreams: Upstreams,
    principal: Principal,
    name: str,
    arguments: dict[str, Any] | None,
    *,
    progress: ProgressFnT | None = None,
) -> types.CallToolResult:
    """Run one call of the agent ``principal`` through Tribune and, if allowed, upstream."""
    route = catalog.get(name)
    if route is None:
        return unknown_tool(name, upstreams)
    args = arguments or {}
    try:
        size = len(orjson.dumps(args))
    except TypeError:
        return refusal("arguments must be JSON values; nothing was run")
    if size > MAX_ARGUMENT_BYTES:
        return refusal(f"the arguments exceed {MAX_ARGUMENT_BYTES} bytes; nothing was run")
    why = route.check(args)
    if why is not None:
        return refusal(
            f"the arguments do not match `{name}`'s input schema: {why}; nothing was run"
        )
    assert principal.task_id is not None
    task_id = principal.task_id
    # Shielded: once decided, the verdict must reach finish() even if the agent cancels now.
    with anyio.CancelScope(shield=True):
        try:
            verdict = await anyio.to_thread.run_sync(
                lambda: governor.decide(task_id, name, args, expects_result=True)
            )
        except TribuneError as exc:
            return refusal(f"{exc.message}; nothing was run")
    if not verdict.allowed:
        return refusal(model_message(verdict).removeprefix("Tribune: "))
    return await _forward(
        governor, upstreams, verdict, route.upstream, route.original, args, progress
    )


async def _forward(
    governor: Decider,
    upstreams: Upstreams,
    verdict: Verdict,
    upstream: str,
    tool: str,
    args: dict[str, Any],
    progress: ProgressFnT | None,
) -> types.CallToolResult:
    started = time.perf_counter()
    action = verdict.action_id

    async def finish(status: ResultStatus, error: str | None = None, output: Any = None) -> None:
        elapsed = (time.perf_counter() - started) * 1000.0
        with anyio.CancelScope(shield=True):  # P9: the result record survives cancellation
            await anyio.to_thread.run_sync(
                lambda: governor.finish(
                    verdict, status, output=output, duration_ms=elapsed, error=error
                )
            )

    try:
        result: CallResult = await upstreams.call(upstream, tool, args, progress=progress)
    except anyio.get_cancelled_exc_class():
        await finish(ResultStatus.CANCELLED)
        raise
    except UpstreamUnavailable:
        await finish(ResultStatus.ERROR, "upstream_unavailable")
        return refusal(
            f"upstream `{upstream}` is not connected; the call did not run (action {action})"
        )
    except UpstreamLost:
        await finish(ResultStatus.UNKNOWN, "connection_lost")
        return refusal(
            f"the connection to upstream `{upstream}` was lost during the call; its outcome "
            f"is unknown (action {action})"
        )
    except MCPError as exc:
        code = exc.error.code
        if code in (types.REQUEST_TIMEOUT, types.CONNECTION_CLOSED):
            what = "timeout" if code == types.REQUEST_TIMEOUT else "connection_lost"
            await finish(ResultStatus.UNKNOWN, what)
            reason = (
                f"did not answer within {upstreams.settings[upstream].timeout:g} s"
                if code == types.REQUEST_TIMEOUT
                else "lost the connection during the call"
            )
            return refusal(
                f"upstream `{upstream}` {reason}; its outcome is unknown (action {action})"
            )
        await finish(ResultStatus.ERROR, f"mcp_error {code}")
        return refusal(
            f"upstream `{upstream}` refused the call: {exc.error.message[:MAX_MESSAGE]} "
            f"(action {action})"
        )
    except RuntimeError:  # the SDK's check of structured content against the output schema
        await finish(ResultStatus.ERROR, "invalid_result")
        return refusal(
            f"upstream `{upstream}` returned a result that fails its own output schema; it is "
            f"withheld (action {action})"
        )
    except Exception as exc:
        await finish(ResultStatus.ERROR, type(exc).__name__)
        return refusal(f"the call to upstream `{upstream}` failed (action {action})")
    if isinstance(result, types.CallToolResult):
        output = result.model_dump(mode="json", by_alias=True, exclude_none=True)
        if result.is_error:
            await finish(ResultStatus.ERROR, "error_result", output)
        else:
            await finish(ResultStatus.OK, None, output)
        return result
    # An InputRequiredResult would need the upstream's request state sealed into the gateway's
    # own (research note P10); an extension's result has no meaning to the agent's client.
    kind = "input_required" if isinstance(result, types.InputRequiredResult) else "unsupported"
    await finish(ResultStatus.ERROR, f"{kind}_result")
    return refusal(
        f"upstream `{upstream}` answered with a result the gateway cannot relay ({kind}); the "
        f"call did not complete (action {action})"
    )
