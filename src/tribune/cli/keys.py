"""`tribune keys …`: API keys for Tribune's own API (create, list, revoke)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Column, Table

from tribune.cli.common import HomeOption, console, emit_json, err_console, opened
from tribune.core.model import ApiKey

keys = typer.Typer(
    help="API keys for Tribune's HTTP API, held by users or agents.", no_args_is_help=True
)


def key_status(key: ApiKey, now: datetime) -> str:
    if key.revoked_at is not None:
        return "revoked"
    return "active" if key.active(now) else "expired"


def key_dict(key: ApiKey, now: datetime) -> dict[str, Any]:
    """A key as shown to people: never its secret hash."""
    return {
        "id": key.id,
        "principal": key.principal,
        "role": key.role.value,
        "status": key_status(key, now),
        "created_at": key.created_at.isoformat(),
        "expires_at": key.expires_at.isoformat() if key.expires_at else None,
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
        "note": key.note,
    }


@keys.command("create")
def key_create(
    principal: Annotated[
        str,
        typer.Argument(help="`user:NAME`, `agent:NAME` (or SPIFFE id) or `service:NAME`."),
    ],
    role: Annotated[
        str,
        typer.Option(
            help="admin, approver or auditor (users); agent (agents); resource (services)."
        ),
    ],
    note: Annotated[str, typer.Option(help="What the key is for.")] = "",
    ttl: Annotated[
        int | None, typer.Option(help="Seconds until it expires (default: never).")
    ] = None,
    home: HomeOption = None,
) -> None:
    """Create an API key. The token goes to standard output once: it is never shown again."""
    with opened(home) as tr:
        key, token = tr.access.create_key(principal, role, note=note, ttl=ttl)
    expires = f", expires {key.expires_at.isoformat()}" if key.expires_at else ""
    err_console.print(
        escape(
            f"api key `{key.id}` created for `{key.principal}` (role {key.role.value}{expires})"
        ),
        highlight=False,
        soft_wrap=True,
    )
    err_console.print(
        "[bold yellow]warning:[/] this token will not be shown again; store it now",
        highlight=False,
        soft_wrap=True,
    )
    # The token alone on stdout, so `TOKEN=$(tribune keys create …)` captures just it.
    sys.stdout.write(token + "\n")


@keys.command("list")
def key_list(
    as_json: Annotated[bool, typer.Option("--json")] = False, home: HomeOption = None
) -> None:
    """List API keys (ids, holders, roles, status; never secrets or their hashes)."""
    with opened(home) as tr:
        found = tr.access.list()
        now = tr.clock.now()
    if as_json:
        emit_json([key_dict(k, now) for k in found])
        return
    table = Table(
        Column("id", no_wrap=True, min_width=16),
        Column("principal", overflow="fold"),
        "role",
        "status",
        Column("expires (UTC)", no_wrap=True),
        Column("note", overflow="fold"),
    )
    for k in found:
        table.add_row(
            k.id,
            escape(k.principal),
            k.role.value,
            key_status(k, now),
            _short(k.expires_at) if k.expires_at else "never",
            escape(k.note),
        )
    console.print(table)


def _short(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


@keys.command("revoke")
def key_revoke(key_id: str, home: HomeOption = None) -> None:
    """Revoke an API key: it stops working at once. Revoking twice is harmless."""
    with opened(home) as tr:
        before = tr.store.get_api_key(key_id)
        key = tr.access.revoke(key_id)
    if key.revoked_at is None:
        said = "had expired: nothing to revoke"
    elif before is not None and before.revoked_at is not None:
        said = "was already revoked"
    else:
        said = "revoked"
    console.print(f"api key [bold]{escape(key.id)}[/] {said}", highlight=False)
