"""`tribune agent key …`, `tribune tokens …`, `tribune leases …` and `tribune revoke`: agents'
keys, the task-token signing keys, credential leases and the kill switch."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from tribune.cli.common import (
    HomeOption,
    console,
    emit_json,
    err_console,
    opened,
    write_private,
)
from tribune.core.model import AgentKey, Lease
from tribune.errors import InvalidInput

agent_keys = typer.Typer(
    help="An agent's own keys: it signs assertions (RFC 7523) with them.", no_args_is_help=True
)
tokens = typer.Typer(help="The keys that sign task and downstream tokens.", no_args_is_help=True)
leases = typer.Typer(help="Credentials lent to tasks.", no_args_is_help=True)


def _say(text: str) -> None:
    err_console.print(escape(text), highlight=False, soft_wrap=True)


def key_dict(key: AgentKey) -> dict[str, Any]:
    return {
        "kid": key.kid,
        "agent": key.agent_id,
        "alg": key.jwk.get("alg"),
        "source": key.source,
        "status": "active" if key.active() else "revoked",
        "created_at": key.created_at.isoformat(),
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }


# --------------------------------------------------------------------------- agent keys


@agent_keys.command("create")
def key_create(
    agent: Annotated[str, typer.Argument(help="The agent's name or SPIFFE id.")],
    out: Annotated[
        Path | None, typer.Option(help="Write the private key here (mode 0600), not to stdout.")
    ] = None,
    home: HomeOption = None,
) -> None:
    """Make a key pair for an agent. Tribune keeps only the public key; the private key is
    shown once."""
    with opened(home) as tr:
        if out is not None and out.exists():
            raise InvalidInput(f"`{out}` exists", hint="choose a new file")
        key, private_pem = tr.identity.create_key(agent)
    _say(f"key `{key.kid}` created for `{key.agent_id}`")
    if out is None:
        _say("warning: the private key will not be shown again; store it now")
        sys.stdout.write(private_pem)
        return
    write_private(out, private_pem)
    _say(f"private key written to `{out}`")


@agent_keys.command("add")
def key_add(
    agent: Annotated[str, typer.Argument(help="The agent's name or SPIFFE id.")],
    public_key: Annotated[
        Path, typer.Argument(help="A public key: PEM, a JWK or a JWKS document (JSON).")
    ],
    home: HomeOption = None,
) -> None:
    """Register a public key the agent holds the private half of (or every key of a JWKS)."""
    with opened(home) as tr:
        try:
            text = public_key.read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidInput(f"cannot read `{public_key}`: {exc.strerror}") from None
        if text.lstrip().startswith("{"):
            try:
                doc = json.loads(text)
            except ValueError:
                raise InvalidInput(f"`{public_key}` is not valid JSON") from None
            added = (
                tr.identity.add_jwks(agent, doc)
                if "keys" in doc
                else [tr.identity.add_key(agent, doc)]
            )
        else:
            added = [tr.identity.add_key(agent, text)]
    for key in added:
        _say(f"key `{key.kid}` added for `{key.agent_id}`")


@agent_keys.command("list")
def key_list(
    agent: str, as_json: Annotated[bool, typer.Option("--json")] = False, home: HomeOption = None
) -> None:
    """An agent's keys, revoked ones included (never key material)."""
    with opened(home) as tr:
        found = [key_dict(k) for k in tr.identity.list_keys(agent)]
    if as_json:
        emit_json(found)
        return
    for k in found:
        console.print(
            escape(f"{k['kid']}  {k['alg']}  {k['source']}  {k['status']}  {k['created_at']}"),
            highlight=False,
        )


@agent_keys.command("revoke")
def key_revoke(agent: str, kid: str, home: HomeOption = None) -> None:
    """Revoke one of an agent's keys: its assertions are refused from now on."""
    with opened(home) as tr:
        tr.identity.revoke_key(agent, kid)
    _say(f"key `{kid}` revoked")


# --------------------------------------------------------------------------- token keys


@tokens.command("rotate")
def tokens_rotate(home: HomeOption = None) -> None:
    """Make a new signing key. Tokens signed by the old one verify until it is pruned."""
    with opened(home) as tr:
        kid = tr.token_keys.rotate()
    _say(f"new token signing key `{kid}`; running servers pick it up by its kid")


@tokens.command("prune")
def tokens_prune(home: HomeOption = None) -> None:
    """Forget rotated-out keys older than the retirement period, and the ids of used and
    revoked tokens that have expired."""
    with opened(home) as tr:
        gone = tr.token_keys.prune()
        ids = tr.store.prune_token_ids(tr.clock.now())
    _say(f"pruned {len(gone)} key(s) and {ids} expired token id(s)")


@tokens.command("jwks")
def tokens_jwks(home: HomeOption = None) -> None:
    """The JWKS document that verifies Tribune's tokens (as served at
    /.well-known/jwks.json)."""
    with opened(home) as tr:
        emit_json(tr.token_keys.jwks())


# --------------------------------------------------------------------------- leases


def lease_dict(lease: Lease) -> dict[str, Any]:
    return {
        "id": lease.id,
        "task": lease.task_id,
        "source": lease.scope.get("source"),
        "backend": lease.backend,
        "handle": lease.handle,
        "state": lease.state.value,
        "expires_at": lease.expires_at.isoformat(),
        "end_reason": lease.end_reason or None,
    }


@leases.command("list")
def leases_list(
    task: Annotated[str, typer.Option(help="The task whose leases to show.")],
    active: Annotated[bool, typer.Option(help="Only active leases.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    home: HomeOption = None,
) -> None:
    """A task's leases (never the credentials)."""
    with opened(home) as tr:
        found = [lease_dict(x) for x in tr.leases.list(task, active_only=active)]
    if as_json:
        emit_json(found)
        return
    for x in found:
        console.print(
            escape(f"{x['id']}  {x['source']}  {x['state']}  until {x['expires_at']}"),
            highlight=False,
        )


@leases.command("revoke")
def leases_revoke(lease: str, home: HomeOption = None) -> None:
    """Revoke one lease now."""
    with opened(home) as tr:
        done = tr.leases.revoke(lease, "requested")
    _say(f"lease `{done.id}` is {done.state.value}")


@leases.command("sweep")
def leases_sweep(home: HomeOption = None) -> None:
    """Expire overdue leases and revoke those of ended tasks (`tribune up` does this every
    few seconds)."""
    with opened(home) as tr:
        count = tr.leases.sweep()
    _say(f"{count} lease(s) ended")


# --------------------------------------------------------------------------- kill switch


def revoke(
    task: Annotated[
        str | None, typer.Option(help="A task, with every task delegated from it.")
    ] = None,
    agent: Annotated[str | None, typer.Option(help="Every task of one agent.")] = None,
    owner: Annotated[
        str | None, typer.Option(help="Every agent of `user:NAME` or `group:NAME`.")
    ] = None,
    everything: Annotated[bool, typer.Option("--all", help="Every task of every agent.")] = False,
    suspend: Annotated[
        bool, typer.Option(help="Also suspend the agents, so they start nothing new.")
    ] = False,
    home: HomeOption = None,
) -> None:
    """The kill switch: end tasks and revoke their tokens and leases at once."""
    actor = f"cli:{os.environ.get('USER', 'unknown')}"
    with opened(home) as tr:
        if sum(x is not None for x in (task, agent, owner)) + everything != 1:
            raise InvalidInput("choose exactly one of --task, --agent, --owner or --all")
        done = tr.killswitch.revoke(
            task=task, agent=agent, owner=owner, everything=everything, suspend=suspend, actor=actor
        )
    _say(
        f"{done.tasks_ended} task(s) ended, {done.leases_revoked} lease(s) revoked"
        + (f", {done.agents_suspended} agent(s) suspended" if suspend else "")
    )
    if done.leases_failed:
        _say(
            f"warning: {done.leases_failed} lease(s) could not be revoked at their backend; "
            "the sweeper retries them (their tasks are over)"
        )
        raise typer.Exit(1)
