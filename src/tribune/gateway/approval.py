"""A call that needs human approval, at the gateway.

Only Tribune's own ticket approves a call: approvers vote on it (CLI, API, chat). The gateway
helps the agent's side wait for that, in this order:

1. **Hold** (``[gateway] approval_hold`` seconds, default 0): the call waits for its ticket,
   relaying progress to a client that asked for it. Approved in time, it runs.
2. **Elicitation** (``elicit = true`` and a client that declared form elicitation): the
   request is shown to the agent's user. On 2026-07-28 an ``InputRequiredResult`` carries it,
   with the ticket in ``request_state`` sealed by the SDK's ``RequestStateBoundary`` (bound to
   the tool, the arguments, the caller and this gateway; see ``request_state_boundary``); on
   the handshake era, an ``elicitation/create`` request on the back-channel. The user's answer
   is not an approval: *accept* means "look again now" (the call runs only if its ticket is
   approved by then), *decline* withdraws the ticket, *cancel* leaves it pending.
3. Otherwise a **tool error naming the ticket**: the same call, retried once it is approved,
   runs.

Forged answers count for nothing: ``input_responses`` without a sealed state are ignored (the
call is decided as new), a state the gateway did not seal or sealed for other arguments or
another caller is refused by the boundary, and a state replayed after its call ran names a used
ticket, so the call needs approval again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import mcp.types as types
from mcp.server.request_state import RequestStateBoundary, RequestStateSecurity

from tribune.core.model import ApprovalTicket, TicketState, Verdict
from tribune.errors import TribuneError
from tribune.gateway.replies import refusal
from tribune.gateway.runners import Runner

KEY_LABEL = b"tribune mcp request state v1"
STATE_TTL = 600.0  # seconds a sealed state opens: an answer later than that asks again
POLL = 0.5  # seconds between looks at a held call's ticket
MAX_SHOWN = 600  # characters of the call's (redacted) arguments shown to the user
ANSWER = "approval"  # the key of the elicitation in input_requests / input_responses
SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}

Progress = Callable[[float, float | None, str | None], Awaitable[None]]
Elicit = Callable[[str, dict[str, Any]], Awaitable[types.ElicitResult]]


class Tickets(Protocol):
    """What the gateway needs of the approval service."""

    def settle(self, ticket_id: str) -> ApprovalTicket: ...

    def withdraw(self, ticket_id: str, *, by: str, via: str) -> ApprovalTicket: ...


def request_state_boundary(keys: list[bytes], audience: str) -> RequestStateBoundary:
    """The SDK's sealing of ``request_state`` under keys shared by every gateway process of the
    home (derived from its sealing keys), for ``STATE_TTL`` seconds."""
    security = RequestStateSecurity(keys=keys, ttl=STATE_TTL)
    return RequestStateBoundary(security, default_audience=audience)


@dataclass(frozen=True, slots=True)
class Asking:
    """What the agent's client can do for a call that waits for approval, and what it sent."""

    modern: bool  # 2026-07-28: input_required results; else the handshake era
    can_elicit: bool  # declared form elicitation (and, handshake era, has a back-channel)
    progress: Progress | None = None
    elicit: Elicit | None = None  # the handshake era's back-channel request
    state: str | None = None  # the request_state, as the boundary unsealed it
    responses: dict[str, Any] | None = None  # the client's input_responses

    @property
    def ticket(self) -> str | None:
        """The ticket named by a state this gateway sealed (None if there is none)."""
        if self.state is None:
            return None
        try:
            value = json.loads(self.state).get("ticket")
        except (ValueError, AttributeError):
            return None
        return value if isinstance(value, str) else None

    @property
    def answer(self) -> str | None:
        """The user's answer to the elicitation: accept, decline or cancel (None: none)."""
        raw = (self.responses or {}).get(ANSWER)
        if isinstance(raw, types.ElicitResult):
            return raw.action
        if isinstance(raw, dict) and raw.get("action") in ("accept", "decline", "cancel"):
            return str(raw["action"])
        return None


def message(ticket: ApprovalTicket) -> str:
    """What the agent's user is shown: the call, who must approve, and what answers do."""
    req = ticket.requirement
    who = ", ".join(req.approvers) or "any approver"
    shown = json.dumps(ticket.shown, sort_keys=True, ensure_ascii=False)
    if len(shown) > MAX_SHOWN:
        shown = shown[: MAX_SHOWN - 1] + "…"
    return (
        f"Tribune: the agent asks to run `{ticket.tool}` with {shown}. It needs "
        f"{req.quorum} approval(s) from `{who}` (ticket {ticket.id}); approvers answer in "
        f"Tribune (`tribune approvals approve {ticket.id}`). Accept once it is approved to run "
        "the call; decline to withdraw the request."
    )


def input_required(ticket: ApprovalTicket) -> types.InputRequiredResult:
    """The 2026-07-28 way to show the request: an elicitation, the ticket in sealed state."""
    ask = types.ElicitRequest(
        params=types.ElicitRequestFormParams(message=message(ticket), requested_schema=SCHEMA)
    )
    return types.InputRequiredResult(
        input_requests={ANSWER: ask}, request_state=json.dumps({"ticket": ticket.id})
    )


async def hold(
    tickets: Tickets,
    run: Runner,
    ticket_id: str,
    seconds: float,
    progress: Progress | None,
) -> ApprovalTicket:
    """Wait up to ``seconds`` for the ticket to leave ``pending``, telling the client; return
    it as it is then."""
    deadline = time.monotonic() + seconds
    text = f"waiting for approval (ticket {ticket_id})"
    while True:
        ticket = await run(lambda: tickets.settle(ticket_id))
        left = deadline - time.monotonic()
        if ticket.state is not TicketState.PENDING or left <= 0:
            return ticket
        if progress is not None:
            await progress(round(seconds - left, 1), seconds, text)
        await anyio.sleep(min(POLL, left))


def still_pending(verdict: Verdict) -> str:
    """The text of a call left waiting after the user accepted: no second prompt."""
    return (
        f"the call is still waiting for approval (ticket {verdict.ticket_id}); it did not run "
        f"(action {verdict.action_id}); once approved, the same call with the same arguments "
        "runs"
    )


@dataclass(frozen=True, slots=True)
class Waiting:
    """How this gateway lets a call wait for human approval (see the module)."""

    tickets: Tickets
    hold: float = 0.0  # seconds a call is held for its ticket
    elicit: bool = True  # show the request to the agent's user when the client can


async def answered(
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


async def pending(
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
    named = await answered(waiting, run, verdict.task_id, ticket_id, answer.action)
    if named is None:
        return refusal(
            f"the request was declined and withdrawn (ticket {ticket_id}); nothing was run"
        )
    return await decide(named) if named else refusal(still_pending(verdict))
