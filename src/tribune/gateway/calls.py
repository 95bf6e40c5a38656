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

Store calls go through a ``Runner``: ``inline`` on the event loop, or ``in_thread``. The
gateway picks one per store (``runner_for``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import anyio
import mcp.types as types
import orjson
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError

from tribune.config import Settings
from tribune.core.model import RecordKind, ResultStatus, TicketState, Verdict
from tribune.errors import TribuneError
from tribune.gateway.approval import (
    SCHEMA,
    STATE_TTL,
    Asking,
    Tickets,
    hold,
    input_required,
    message,
    still_pending,
)
from tribune.gateway.catalog import Catalog, Route
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
T = TypeVar("T")
# Scheduling steps from a handler's return to its reply's write: the dispatcher hands the
# response to the transport's writer task (stdio: one step; HTTP: a few through the ASGI app).
REPLY_STEPS = 8


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


class Runner(Protocol):
    """Runs a short blocking call of Tribune's services from the event loop."""

    def __call__(self, fn: Callable[[], T], /) -> Awaitable[T]: ...


async def inline(fn: Callable[[], T]) -> T:
    """On the event loop itself: no thread hop, and the loop waits while ``fn`` runs."""
    return fn()


async def in_thread(fn: Callable[[], T]) -> T:
    """In a worker thread: the loop serves others while ``fn`` waits on I/O."""
    return await anyio.to_thread.run_sync(fn)


def runner_for(settings: Settings) -> Runner:
    """``inline`` for a local SQLite store without an fsync per commit, else ``in_thread``.

    A decision on SQLite (``durability = "normal"``) is ~1 ms of CPU with no waiting, which the
    GIL would serialise in a thread anyway; the hop to a thread and back costs more than it
    saves. A PostgreSQL round trip or an fsync waits, and the loop should serve others then.
    """
    url = settings.store_url
    local = not url or url.startswith("sqlite")
    return inline if local and settings.durability == "normal" else in_thread


class Results:
    """Result records of allowed calls, written after the reply is on its way.

    While ``deferring()`` runs, ``record`` schedules the write in a task of its own and
    returns; that task first yields to the event loop a few times (``REPLY_STEPS``), so the
    reply, a few scheduling steps behind the handler's return, goes out before the write runs
    (with ``run``: inline, or in a thread). Outside ``deferring()``, ``record`` writes at once.

    INVARIANT: a task's next call is decided only after every result of that task this process
    deferred is written (``settled``), so what a result changes in the task's session (taint,
    data read, the call count) is in the store before the next decision, as if written first.
    The intent and decision are durable before forwarding either way; a crash between the
    reply and the write leaves an allowed action without a result, which
    ``tribune audit reconcile`` records as `unknown` (the outcome was not observed).
    """

    def __init__(self, run: Runner) -> None:
        self._run = run
        self._group: anyio.abc.TaskGroup | None = None
        self._pending: dict[str, tuple[int, anyio.Event]] = {}

    @asynccontextmanager
    async def deferring(self) -> AsyncIterator[None]:
        """Defer writes until this exits; on exit, wait for every one still pending."""
        async with anyio.create_task_group() as group:
            self._group = group
            try:
                yield
            finally:
                self._group = None

    async def settled(self, task_id: str) -> None:
        """Return once no result of ``task_id`` is waiting to be written."""
        while (entry := self._pending.get(task_id)) is not None:
            await entry[1].wait()

    async def record(self, task_id: str, write: Callable[[], object]) -> None:
        if self._group is None:
            with anyio.CancelScope(shield=True):  # P9: the result record survives cancellation
                await self._run(write)
            return
        count, done = self._pending.get(task_id, (0, anyio.Event()))
        self._pending[task_id] = (count + 1, done)
        self._group.start_soon(self._write, task_id, write)

    async def _write(self, task_id: str, write: Callable[[], object]) -> None:
        try:
            with anyio.CancelScope(shield=True):
                # Should the reply still be on its way after these, it waits for one write.
                for _ in range(REPLY_STEPS):
                    await anyio.lowlevel.checkpoint()
                await self._run(write)
        except Exception as exc:  # the action stays without a result: reconcilable
            log.warning("a result was not recorded: %s", type(exc).__name__)
        finally:
            count, done = self._pending[task_id]
            if count > 1:
                self._pending[task_id] = (count - 1, done)
            else:
                del self._pending[task_id]
                done.set()


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


@dataclass(frozen=True, slots=True)
class Waiting:
    """How this gateway lets a call wait for human approval (see ``approval``)."""

    tickets: Tickets
    hold: float = 0.0  # seconds a call is held for its ticket
    elicit: bool = True  # show the request to the agent's user when the client can


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
        named = await _answered(waiting, run, task_id, asked.ticket, asked.answer)
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
        verdict = await _approval(waiting, run, decide, asked, first, again=named is not None)
    if not isinstance(verdict, Verdict):
        return verdict
    if not verdict.allowed:
        return refusal(model_message(verdict).removeprefix("Tribune: "))
    return await _forward(
        governor, upstreams, results, verdict, route.upstream, route.original, args, progress
    )


async def _answered(
    waiting: Waiting, run: Runner, task_id: str, ticket_id: str, answer: str | None
) -> str | None:
    """Act on the user's answer to an elicitation naming ``ticket_id``. Returns the ticket to
    name in the decision ("" to name none: it is still pending, or not this task's), or None
    when the user declined and the ticket was withdrawn."""
    tickets = waiting.tickets
    try:
        ticket = await run(lambda: tickets.settle(ticket_id))
    except TribuneError:
        return ""  # an unknown ticket: decide the call as new
    if ticket.task_id != task_id:
        return ""  # a state sealed for another task (stdio states bind no caller)
    if answer == "decline":  # the call does not run, whatever the approvers did
        await run(lambda: tickets.withdraw(ticket_id, by=ticket.agent_id, via="elicitation"))
        return None
    return ticket_id if ticket.state is not TicketState.PENDING else ""


async def _approval(
    waiting: Waiting,
    run: Runner,
    decide: Callable[[str | None], Awaitable[Verdict | types.CallToolResult]],
    asked: Asking,
    verdict: Verdict,
    *,
    again: bool,
) -> Verdict | types.CallToolResult | types.InputRequiredResult:
    """A call that needs approval: hold it, show it to the user, or say how to retry.
    ``again``: the user has already answered an elicitation for it (no second prompt)."""
    tickets = waiting.tickets
    ticket_id = verdict.ticket_id
    assert ticket_id is not None
    if waiting.hold > 0:
        ticket = await hold(tickets, run, ticket_id, waiting.hold, asked.progress)
        if ticket.state is not TicketState.PENDING:
            return await decide(ticket_id)  # approved: runs; denied or expired: says so
    if again:
        return refusal(still_pending(verdict))
    if not (waiting.elicit and asked.can_elicit):
        return verdict
    ticket = await run(lambda: tickets.settle(ticket_id))
    if asked.modern:
        return input_required(ticket)
    if asked.elicit is None:
        return verdict
    try:
        with anyio.fail_after(STATE_TTL):
            answer = await asked.elicit(message(ticket), SCHEMA)
    except Exception:  # no answer, or the client refused to ask: the call stays pending
        return verdict
    named = await _answered(waiting, run, verdict.task_id, ticket_id, answer.action)
    if named is None:
        return refusal(
            f"the request was declined and withdrawn (ticket {ticket_id}); nothing was run"
        )
    return await decide(named) if named else refusal(still_pending(verdict))


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
