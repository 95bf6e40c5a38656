"""`tribune secrets …`: brokered secrets (put, list, delete, rotate-key, reseal).

A value is read from standard input or a file, never from an argument, so it stays out of shell
history and process listings. It is never printed.
"""

from __future__ import annotations

import sys
from datetime import UTC
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Column, Table

from tribune.cli.common import HomeOption, console, emit_json, err_console, errors, opened
from tribune.errors import InvalidInput
from tribune.services.secrets import MAX_VALUE, SecretInfo

secrets = typer.Typer(
    help="Brokered secrets: stored sealed, handed only to governed functions.",
    no_args_is_help=True,
)


def secret_dict(info: SecretInfo) -> dict[str, Any]:
    """A secret as shown to people: never its value."""
    return {
        "name": info.name,
        "key_id": info.key_id,
        "updated_at": info.updated_at.isoformat(),
        "note": info.note,
    }


def read_value(from_file: Path | None) -> str:
    """The value from ``from_file`` or standard input (a hidden prompt on a terminal), without
    its trailing line break. Errors never quote the value."""
    if from_file is not None:
        try:
            with from_file.open("rb") as f:
                data = f.read(MAX_VALUE + 3)
        except OSError as exc:
            raise InvalidInput(f"cannot read `{from_file}`: {exc.strerror}") from None
        if len(data) > MAX_VALUE + 2:
            raise InvalidInput(f"a secret's value is at most {MAX_VALUE} bytes (UTF-8)")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput(f"`{from_file}` is not UTF-8 text") from None
    elif sys.stdin.isatty():
        text = typer.prompt("value", hide_input=True, confirmation_prompt=True, err=True)
    else:
        try:
            text = sys.stdin.read(MAX_VALUE + 3)
        except UnicodeDecodeError:
            raise InvalidInput("standard input is not UTF-8 text") from None
    # One line break from `echo` or an editor is not part of the secret.
    return text.removesuffix("\n").removesuffix("\r")


@secrets.command("put")
def secret_put(
    name: str,
    note: Annotated[str, typer.Option(help="What the secret is for.")] = "",
    from_file: Annotated[
        Path | None,
        typer.Option("--from-file", help="Read the value from this file instead of stdin."),
    ] = None,
    home: HomeOption = None,
) -> None:
    """Store a secret, sealed; the value comes from stdin or --from-file, never an argument.

    A secret of the same name is replaced. One trailing line break is not part of the value.
    """
    with errors():
        value = read_value(from_file)
    with opened(home) as tr:
        info = tr.secrets.put(name, value, note=note)
    console.print(
        f"secret [bold]{escape(info.name)}[/] stored (key {info.key_id})", highlight=False
    )


@secrets.command("list")
def secret_list(
    as_json: Annotated[bool, typer.Option("--json")] = False, home: HomeOption = None
) -> None:
    """List secrets: names, sealing key ids, times and notes; never values."""
    with opened(home) as tr:
        found = tr.secrets.list()
    if as_json:
        emit_json([secret_dict(s) for s in found])
        return
    table = Table(
        Column("name", overflow="fold"),
        Column("key", no_wrap=True),
        Column("updated (UTC)", no_wrap=True),
        Column("note", overflow="fold"),
    )
    for s in found:
        when = s.updated_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
        table.add_row(escape(s.name), s.key_id, when, escape(s.note))
    console.print(table)


@secrets.command("delete")
def secret_delete(name: str, home: HomeOption = None) -> None:
    """Delete a secret."""
    with opened(home) as tr:
        tr.secrets.delete(name)
    console.print(f"secret [bold]{escape(name)}[/] deleted", highlight=False)


@secrets.command("rotate-key")
def secret_rotate_key(home: HomeOption = None) -> None:
    """Make a new sealing key and re-seal every secret with it.

    The old key is kept in keys/sealing.old/, so nothing is unreadable on the way.
    """
    with opened(home) as tr:
        key_id = tr.secrets.sealer.rotate()
        err_console.print(f"new sealing key {key_id}", highlight=False)
        count = tr.secrets.reseal_all()
    console.print(f"{count} secret(s) re-sealed with key {key_id}", highlight=False)


@secrets.command("reseal")
def secret_reseal(home: HomeOption = None) -> None:
    """Re-seal every secret with the current key.

    For a key from TRIBUNE_SEALING_KEY: keep the old key as a file in keys/sealing.old/, set
    the new one, then reseal.
    """
    with opened(home) as tr:
        count = tr.secrets.reseal_all()
        key_id = tr.secrets.sealer.key_id
    console.print(f"{count} secret(s) re-sealed with key {key_id}", highlight=False)
