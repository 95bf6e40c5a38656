"""One governed ``tools/call`` through the gateway: check, decide, forward, record.

    unknown tool, oversized or schema-failing arguments → a tool error; nothing stored or sent
    the task's earlier results written (``Results``)
    a sealed answer to an approval prompt                → declined: the ticket withdrawn
    decide (INTENT and DECISION durable)                 → denied: a tool error with the reason;
                                                           approval required: held, shown to
                                                           the user, or a tool error naming the
                                                           ticket (``approval``); nothing sent
    forward to the upstream                              → its result, unchanged
    finish: RESULT record (stdio: after the reply)       → OK, ERROR (an error result, an error
                                                           response), UNKNOWN (timed out, the
                                                           connection was lost mid-call) or
                                                           CANCELLED (the agent cancelled)

Every failure of an allowed call is recorded and answered as a tool error: the gateway stays
up. Audit records name what went wrong by kind, never by the upstream's message (it may hold
data); the agent sees the upstream's own message.

Store calls go through a ``Runner`` (``runners``); a call that needs approval goes on in
``approval``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import anyio
import mcp.types as types
import orjson
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError

from tribune.core.model import RecordKind, ResultStatus, Verdict
from tribune.errors import TribuneError
from tribune.gateway.approval import Asking, Waiting, answered, pending
from tribune.gateway.catalog import Catalog, Route
from tribune.gateway.replies import refusal
from tribune.gateway.runners import Results, Runner, in_thread
from tribune.gateway.upstreams import (
    CallResult,
    CredentialUnavailable,
    UpstreamBusy,
    UpstreamLost,
    Upstreams,
    UpstreamUnavailable,
)
from tribune.sdk.governed import model_message
from tribune.services.governor import MAX_ARGUMENT_BYTES
from tribune.services.identity import Principal
from tribune.services.registry import Events

log = logging.getLogger(__name__)
MAX_MESSAGE = 300
MAX_NAME = 200  # characters of an unknown tool's name kept in its refusal record
# Arguments nested deeper than this are refused before any decision: every hop (the store's
# canonical JSON, the upstream's parser) has a recursion limit of its own, some near 200.
MAX_DEPTH = 64


class Decider(Protocol):
    """What a call needs of the governor."""

    def decide(
        self,
        task_id: str,
        tool_name: str,
        arguments: Mapping[str, Any],
        *,
        expects_result: bool = True,
        ticket: str | None = None,
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


def unknown_tool(name: str, upstreams: Upstreams) -> types.CallToolResult:
    upstream = name.partition(".")[0] if isinstance(name, str) else ""
    if upstream in upstreams.settings and not upstreams.connected(upstream):
        return refusal(
            f"unknown tool `{name:.200}`: upstream `{upstream}` is not connected; nothing was run"
        )
    return refusal(f"unknown tool `{name:.200}`; nothing was run")


def depth(value: Any, limit: int) -> int:
    """How deeply ``value`` nests lists and objects, counting no further than ``limit + 1``."""
    deepest, level = 0, [value]
    while level and deepest <= limit:
        deepest += 1
        nested: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                nested.extend(item.values())
            elif isinstance(item, list):
                nested.extend(item)
        level = [i for i in nested if isinstance(i, dict | list)]
        if not level:
            break
    return deepest


def _check(
    route: Route | None, name: str, args: dict[str, Any], upstreams: Upstreams
) -> tuple[str, types.CallToolResult] | None:
    """Why a call cannot even be decided (its code and answer), or None."""
    if route is None:
        return "unknown_tool", unknown_tool(name, upstreams)
    try:
        size = len(orjson.dumps(args))
    except TypeError:  # not JSON, or nested past orjson's own limit
        return "arguments_invalid", refusal("arguments must be JSON values; nothing was run")
    if size > MAX_ARGUMENT_BYTES:
        return "arguments_too_large", refusal(
            f"the arguments exceed {MAX_ARGUMENT_BYTES} bytes; nothing was run"
        )
    if depth(args, MAX_DEPTH) > MAX_DEPTH:
        return "arguments_too_deep", refusal(
            f"the arguments nest deeper than {MAX_DEPTH} levels; nothing was run"
        )
    why = route.check(args)
    if why is not None:
        return "arguments_invalid", refusal(
            f"the arguments do not match `{name}`'s input schema: {why}; nothing was run"
        )
    return None


async def _quietly(run: Runner, write: Callable[[], object]) -> None:
    """Record evidence without letting a failure to record change the answer (a refusal)."""
    try:
        with anyio.CancelScope(shield=True):
            await run(write)
    except Exception as exc:
        log.warning("a refusal was not recorded: %s", type(exc).__name__)


async def govern(
    governor: Decider,
    catalog: Catalog,
    upstreams: Upstreams,
    principal: Principal,
    name: str,
    arguments: dict[str, Any] | None,
    *,
    results: Results,
    run: Runner = in_thread,
    progress: ProgressFnT | None = None,
    waiting: Waiting | None = None,
    asking: Asking | None = None,
    events: Events | None = None,
) -> types.CallToolResult | types.InputRequiredResult:
    """Run one call of the agent ``principal`` through Tribune and, if allowed, upstream."""
    assert principal.task_id is not None
    task_id = principal.task_id
    args = arguments or {}
    route = catalog.get(name)
    checked = _check(route, name, args, upstreams)
    if checked is not None:
        code, answer = checked
        if events is not None:  # evidence of probing; never the arguments themselves
            body = {"event": "call_refused", "code": code, "tool": str(name)[:MAX_NAME]}
            await _quietly(
                run,
                lambda: events.record(
                    RecordKind.EVENT, body, task_id=task_id, agent_id=principal.agent_id
                ),
            )
        return answer
    assert route is not None
    asked = asking or Asking(modern=False, can_elicit=False)
    named: str | None = None  # the ticket of a sealed state, when it is this task's
    if waiting is not None and asked.ticket is not None:
        named = await answered(waiting, run, task_id, asked.ticket, asked.answer)
        if named is None:
            return refusal(
                f"the request was declined and withdrawn (ticket {asked.ticket}); nothing was run"
            )
    await results.settled(task_id)

    async def decide(ticket: str | None) -> Verdict | types.CallToolResult:
        # Shielded: once decided, the verdict must reach finish() even if the agent cancels.
        with anyio.CancelScope(shield=True):
            try:
                decided = await run(
                    lambda: governor.decide(task_id, name, args, expects_result=True, ticket=ticket)
                )
            except TribuneError as exc:
                return refusal(f"{exc.message}; nothing was run")
        return decided

    first = await decide(named or None)
    if isinstance(first, types.CallToolResult):
        return first
    verdict: Verdict | types.CallToolResult | types.InputRequiredResult = first
    if not first.allowed and first.ticket_id and waiting is not None:
        verdict = await pending(waiting, run, decide, asked, first, again=named is not None)
    if not isinstance(verdict, Verdict):
        return verdict
    if not verdict.allowed:
        return refusal(model_message(verdict).removeprefix("Tribune: "))
    return await _forward(
        governor, upstreams, results, verdict, route.upstream, route.original, args, progress
    )


async def _forward(
    governor: Decider,
    upstreams: Upstreams,
    results: Results,
    verdict: Verdict,
    upstream: str,
    tool: str,
    args: dict[str, Any],
    progress: ProgressFnT | None,
) -> types.CallToolResult:
    started = time.perf_counter()
    action = verdict.action_id

    async def finish(
        status: ResultStatus, error: str | None = None, result: types.CallToolResult | None = None
    ) -> None:
        elapsed = (time.perf_counter() - started) * 1000.0

        def write() -> object:
            # the result as the agent got it; dumped here, after the reply when deferred
            output = None
            if result is not None:
                output = result.model_dump(mode="json", by_alias=True, exclude_none=True)
            return governor.finish(verdict, status, output=output, duration_ms=elapsed, error=error)

        await results.record(verdict.task_id, write)

    try:
        result: CallResult = await upstreams.call(
            upstream, tool, args, progress=progress, verdict=verdict
        )
    except anyio.get_cancelled_exc_class():
        await finish(ResultStatus.CANCELLED)
        raise
    except CredentialUnavailable:  # fail closed; why is in the log, never the credential
        await finish(ResultStatus.ERROR, "credential_unavailable")
        return refusal(
            f"no credential could be lent to upstream `{upstream}`; the call did not run "
            f"(action {action})"
        )
    except UpstreamBusy as exc:
        await finish(ResultStatus.ERROR, "upstream_busy")
        return refusal(
            f"upstream `{upstream}` serves at most {exc.limit} task(s) at once; the call did not "
            f"run, try again later (action {action})"
        )
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
        if result.is_error:
            await finish(ResultStatus.ERROR, "error_result", result)
        else:
            await finish(ResultStatus.OK, None, result)
        return result
    # An InputRequiredResult would need the upstream's request state sealed into the gateway's
    # own (research note P10); an extension's result has no meaning to the agent's client.
    kind = "input_required" if isinstance(result, types.InputRequiredResult) else "unsupported"
    await finish(ResultStatus.ERROR, f"{kind}_result")
    return refusal(
        f"upstream `{upstream}` answered with a result the gateway cannot relay ({kind}); the "
        f"call did not complete (action {action})"
    )
