"""`tribune audit tail|verify|export`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from tribune.cli.common import EXIT_FAILURE, HomeOption, console, err_console, fail, opened
from tribune.core.audit import envelope
from tribune.errors import InvalidInput

audit = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)


def _progress(total: int) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,}"),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal or total < 50_000,
    )


@audit.command("tail")
def tail(
    n: Annotated[int, typer.Option("-n", help="How many records.")] = 20,
    home: HomeOption = None,
) -> None:
    """Print the last N records as JSON lines."""
    with opened(home) as tr:
        for record in tr.audit.tail(n):
            sys.stdout.write(json.dumps(envelope(record) | {"hash": record.hash}) + "\n")


@audit.command("verify")
def verify(
    strict: Annotated[bool, typer.Option(help="Also check every body is canonical.")] = False,
    home: HomeOption = None,
) -> None:
    """Verify the hash chain and signed checkpoints; name the first bad record."""
    with opened(home) as tr:
        total = tr.store.count()
        with _progress(total) as bar:
            job = bar.add_task("verifying", total=total)
            report = tr.audit.verify(progress=lambda n: bar.update(job, completed=n), strict=strict)
        # Printed before closing: closing signs a checkpoint, which a tampered head refuses.
        if report.ok:
            console.print(
                f"[green]ok[/]: {report.checked:,} records, "
                f"{report.checkpoints_verified} signed checkpoint(s) verified"
            )
        else:
            console.print(
                f"[red]TAMPERED[/] at record {report.first_bad_seq}: {escape(str(report.problem))}",
                highlight=False,
            )
            if report.message:
                console.print(f"  {report.message}", highlight=False, markup=False)
    if not report.ok:
        raise typer.Exit(EXIT_FAILURE)


@audit.command("export")
def export(
    fmt: Annotated[str, typer.Option("--format", help="Only `jsonl` for now.")] = "jsonl",
    out: Annotated[
        Path | None, typer.Option("-o", "--output", help="File (default stdout).")
    ] = None,
    after: Annotated[int, typer.Option(help="Only records after this seq.")] = 0,
    home: HomeOption = None,
) -> None:
    """Export records (and checkpoints) as JSON lines that verify offline."""
    if fmt != "jsonl":
        raise fail(InvalidInput(f"unknown format `{fmt}`", hint="use --format jsonl"))
    with opened(home) as tr:
        total = tr.store.count()
        try:
            stream = out.open("w", encoding="utf-8") if out else sys.stdout
        except OSError as exc:
            raise InvalidInput(f"cannot write `{out}`: {exc.strerror}") from None
        try:
            with _progress(total) as bar:
                job = bar.add_task("exporting", total=total)
                n = tr.audit.export_jsonl(
                    stream, after_seq=after, progress=lambda k: bar.update(job, completed=k)
                )
        finally:
            if out:
                stream.close()
    if out:
        console.print(f"exported {n:,} records to {out}")


@audit.command("reconcile")
def reconcile(
    older_than: Annotated[
        int, typer.Option(help="Only calls allowed at least this many seconds ago.")
    ] = 3600,
    home: HomeOption = None,
) -> None:
    """Record status `unknown` for allowed calls that never got a result (the process died
    mid-call). Run it when no process may still be running those calls."""
    from datetime import timedelta

    with opened(home) as tr:
        n = tr.audit.reconcile(before=tr.clock.now() - timedelta(seconds=older_than))
    console.print(f"{n} call(s) recorded as unknown")
