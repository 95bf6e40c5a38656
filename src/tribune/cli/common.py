"""Shared CLI plumbing: the home option, opening Tribune, output and error → exit-code mapping."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from tribune.core.model import Limits
from tribune.errors import InvalidInput, NotFound, PolicyInvalid, TribuneError

console = Console()
err_console = Console(stderr=True)

HomeOption = Annotated[
    Path | None,
    typer.Option(
        "--home",
        envvar="TRIBUNE_HOME",
        help="Tribune home directory (default: ~/.tribune).",
        show_default=False,
    ),
]

# Exit codes: 0 ok/allow, 1 failure, 2 bad input, 3 deny, 4 approval required.
EXIT_FAILURE, EXIT_INPUT, EXIT_DENY, EXIT_APPROVAL = 1, 2, 3, 4


def exit_code_for(error: TribuneError) -> int:
    if isinstance(error, InvalidInput | NotFound | PolicyInvalid):
        return EXIT_INPUT
    return EXIT_FAILURE


def fail(error: TribuneError) -> typer.Exit:
    """Print ``error[code]: message`` (problems, hint) on stderr; return the exit to raise."""
    # The code and message go through escape(): `[code]` would otherwise be read as markup
    # and vanish, and user input in a message must never style the output. No hard wrap, so
    # paths and `file:line` stay whole.
    err_console.print(
        f"[bold red]error[/]{escape(f'[{error.code}]')}: {escape(error.message)}",
        highlight=False,
        soft_wrap=True,
    )
    problems = getattr(error, "problems", None)
    for problem in problems or []:
        err_console.print(f"  {problem}", highlight=False, markup=False, soft_wrap=True)
    if error.hint:
        err_console.print(f"  hint: {error.hint}", highlight=False, markup=False, soft_wrap=True)
    detail = getattr(error, "detail", "")
    if detail:
        err_console.print(f"  detail: {detail}", highlight=False, markup=False, soft_wrap=True)
    return typer.Exit(exit_code_for(error))


@contextmanager
def errors() -> Iterator[None]:
    """Turn Tribune errors into a message and an exit code; never a traceback."""
    try:
        yield
    except TribuneError as exc:
        raise fail(exc) from None


@contextmanager
def opened(home: Path | None) -> Iterator[Any]:
    from tribune.bootstrap import open_tribune

    with errors():
        tr = open_tribune(home)
        try:
            yield tr
        finally:
            try:
                tr.close()
            except TribuneError as exc:
                # What the command did is committed; say loudly that the chain could not be
                # signed (tampering found) instead of hiding the command's own result.
                err_console.print(escape(f"warning[{exc.code}]: {exc.message}"), highlight=False)
                if exc.hint:
                    err_console.print(escape(f"  hint: {exc.hint}"), highlight=False)


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=False, default=str) + "\n")


def read_json_arg(text: str, what: str) -> Any:
    """Parse JSON given inline, as ``@file``, or ``-`` for standard input."""
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidInput(f"cannot read `{text[1:]}`: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise InvalidInput(f"`{text[1:]}` is not UTF-8 text") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno}") from None


def limits(max_amount: int | None, max_count: int | None, max_calls: int | None) -> Limits:
    """Limits from command-line options; a negative one is bad input."""
    for option, value in (
        ("--max-amount", max_amount),
        ("--max-count", max_count),
        ("--max-calls", max_calls),
    ):
        if value is not None and value < 0:
            raise InvalidInput(f"`{option}` must be 0 or more, not `{value}`")
    return Limits(max_amount, max_count, max_calls)


def write_private(path: Path, pem: str) -> None:
    """Write a private key to a new file, mode 0600 from its first byte."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(pem)
