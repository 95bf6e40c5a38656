"""`tribune approvals list|show|approve|deny`: the approvers' queue from a terminal.

Voting needs the voter's own API key (`--key`, or `TRIBUNE_API_KEY`): the person recorded is
the key's user, never a name typed on the command line. Access to the home alone is not an
identity.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer
from rich.markup import escape

from tribune.cli.common import HomeOption, console, emit_json, err_console, opened
from tribune.core.model import ApprovalTicket, Role, TicketState
from tribune.errors import Forbidden, InvalidInput, Unauthenticated
from tribune.services.approvals import approving

approvals = typer.Typer(help="Approval tickets: list, show, approve, deny.", no_args_is_help=True)
KEY_ENV = "TRIBUNE_API_KEY"
KeyOption = Annotated[
    str | None,
    typer.Option("--key", help=f"Your API key (default: ${KEY_ENV}); it says who you are."),
]
ReasonOption = Annotated[str, typer.Option(help="Why, for the record.")]


def ticket_dict(ticket: ApprovalTicket) -> dict[str, Any]:
    req = ticket.requirement
    return {
        "id": ticket.id,
        "state": ticket.state.value,
        "tool": ticket.tool,
        "agent": ticket.agent_id,
        "owner": ticket.owner,
        "task": ticket.task_id,
        "action_id": ticket.action_id,
        "quorum": req.quorum,
        "approvers": list(req.approvers),
        "owner_may_approve": req.owner_may_approve,
        "approvals": approving(ticket),
        "reasons": list(ticket.reasons),
        "shown": ticket.shown,
        "created_at": ticket.created_at.isoformat(),
        "expires_at": ticket.expires_at.isoformat(),
        "votes": [
            {"user": v.user, "approve": v.approve, "at": v.at.isoformat(), "reason": v.reason}
            for v in ticket.votes
        ],
    }


@approvals.command("list")
def approvals_list(
    state: Annotated[
        str | None, typer.Option(help="pending, approved, denied, expired or consumed.")
    ] = "pending",
    task: Annotated[str | None, typer.Option(help="Only this task's tickets.")] = None,
    all_states: Annotated[bool, typer.Option("--all", help="Every state.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    home: HomeOption = None,
) -> None:
    """Tickets, newest first (by default the pending queue)."""
    with opened(home) as tr:
        wanted = None if all_states or state is None else _state(state)
        found = [ticket_dict(t) for t in tr.approvals.list(state=wanted, task_id=task)]
    if as_json:
        emit_json(found)
        return
    for t in found:
        console.print(
            escape(
                f"{t['id']}  {t['state']:<8}  {t['tool']}  {t['approvals']}/{t['quorum']}"
                f"  {t['agent']}  until {t['expires_at']}"
            ),
            highlight=False,
        )


@approvals.command("show")
def approvals_show(ticket: str, home: HomeOption = None) -> None:
    """One ticket: the exact action (as recorded), the rule and the votes."""
    with opened(home) as tr:
        emit_json(ticket_dict(tr.approvals.settle(ticket)))


@approvals.command("approve")
def approvals_approve(
    ticket: str, reason: ReasonOption = "", key: KeyOption = None, home: HomeOption = None
) -> None:
    """Approve a ticket as the key's user."""
    _vote(ticket, True, reason, key, home)


@approvals.command("deny")
def approvals_deny(
    ticket: str, reason: ReasonOption = "", key: KeyOption = None, home: HomeOption = None
) -> None:
    """Deny a ticket as the key's user: one denial closes it."""
    _vote(ticket, False, reason, key, home)


def _vote(ticket_id: str, approve: bool, reason: str, key: str | None, home: Any) -> None:
    with opened(home) as tr:
        token = key or os.environ.get(KEY_ENV)
        if not token:
            raise Unauthenticated("voting needs your API key", hint=f"pass --key or set {KEY_ENV}")
        caller = tr.access.authenticate(token)
        if caller.user is None or caller.role not in (Role.ADMIN, Role.APPROVER):
            raise Forbidden("only a person with the admin or approver role may vote")
        done = tr.approvals.vote(
            ticket_id, caller.user, approve, reason=reason, via="cli", key_id=caller.key_id
        )
    verb = "approved" if approve else "denied"
    err_console.print(
        escape(
            f"{caller.user} {verb} ticket {done.id}: now {done.state.value} "
            f"({approving(done)}/{done.requirement.quorum} approvals)"
        ),
        highlight=False,
        soft_wrap=True,
    )


def _state(text: str) -> TicketState:
    try:
        return TicketState(text)
    except ValueError:
        raise InvalidInput(
            f"unknown state `{text}`", hint="pending, approved, denied, expired or consumed"
        ) from None
