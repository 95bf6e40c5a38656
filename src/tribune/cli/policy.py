"""`tribune policy validate|test|activate|list|rollback`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Column, Table

from tribune.cli.common import EXIT_FAILURE, HomeOption, console, errors, opened

policy = typer.Typer(help="Policy versions: validate, test, activate.", no_args_is_help=True)

Dir = Annotated[Path, typer.Argument(help="Policy directory: *.cedar, schema, tests/*.yaml.")]


@policy.command("validate")
def validate(directory: Dir) -> None:
    """Parse DIRECTORY and validate it against the schema. Changes nothing."""
    from tribune.policy.bundle import compile_bundle, load_bundle

    with errors():
        compiled = compile_bundle(load_bundle(directory).files)
    console.print(f"[green]valid[/]: {len(compiled.policy_ids)} policies")


@policy.command("test")
def test(directory: Dir) -> None:
    """Validate DIRECTORY and run its policy tests. Changes nothing."""
    from tribune.policy.bundle import compile_bundle, load_bundle
    from tribune.policy.testing import load_cases, run_policy_tests

    with errors():
        files = load_bundle(directory).files
        results = run_policy_tests(compile_bundle(files), load_cases(files))
    failed = [r for r in results if not r.passed]
    for r in failed:
        console.print(f"[red]FAIL[/] {escape(r.describe())}", highlight=False, soft_wrap=True)
    console.print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        raise typer.Exit(EXIT_FAILURE)


@policy.command("activate")
def activate(
    directory: Dir,
    note: str = "",
    allow_untested: Annotated[
        bool, typer.Option(help="Activate even with no policy tests (not recommended).")
    ] = False,
    home: HomeOption = None,
) -> None:
    """Validate and test DIRECTORY, store it as a new immutable version and activate it.

    A version that fails (or has no tests) is refused and the active one stays.
    """
    with opened(home) as tr:
        version = tr.policies.activate_dir(directory, note=note, allow_untested=allow_untested)
    console.print(f"[green]activated[/] policy version {version.id} ({version.digest[:19]}…)")


@policy.command("list")
def list_versions(home: HomeOption = None) -> None:
    """List stored policy versions."""
    with opened(home) as tr:
        # Ids are never cut: `policy rollback` takes one copied from here.
        table = Table(
            Column("id", no_wrap=True, min_width=36), "active", "created", "files", "note"
        )
        for v in tr.store.list_policy_versions():
            table.add_row(
                v.id,
                "*" if v.active else "",
                v.created_at.strftime("%Y-%m-%d %H:%M"),
                str(len(v.files)),
                v.note,
            )
    console.print(table)


@policy.command("rollback")
def rollback(version_id: str, home: HomeOption = None) -> None:
    """Re-activate a stored version."""
    with opened(home) as tr:
        tr.policies.rollback(version_id)
    console.print(f"[green]activated[/] policy version {version_id}")


@policy.command("replay")
def replay_cmd(
    directory: Dir,
    last: Annotated[int, typer.Option(help="Replay at most the last N records of the log.")] = 0,
    show: Annotated[bool, typer.Option(help="List every changed decision.")] = True,
    fail_on_change: Annotated[
        bool, typer.Option(help="Exit 1 when any decision would change.")
    ] = False,
    home: HomeOption = None,
) -> None:
    """Decide recorded calls again with the policies in DIRECTORY (not activated) and report
    which decisions would change."""
    from tribune.policy.bundle import compile_bundle, load_bundle
    from tribune.services.replay import replay

    with errors():
        candidate = compile_bundle(load_bundle(directory).files, version_id="candidate")
    changed: dict[tuple[str, str], int] = {}
    total = 0
    with opened(home) as tr:
        after = max(0, tr.store.count() - last) if last else 0
        for r in replay(candidate, tr.store.records(after_seq=after), tr.store):
            total += 1
            if not r.changed:
                continue
            changed[(r.was, r.now.effect.value)] = changed.get((r.was, r.now.effect.value), 0) + 1
            if show:
                why = ", ".join(r.now.policy_ids) or "no policy permits it"
                console.print(
                    f"record {r.seq} `{r.tool}`: {r.was} -> {r.now.effect.value} ({why})",
                    highlight=False,
                    markup=False,
                )
    summary = ", ".join(f"{n} {a} -> {b}" for (a, b), n in sorted(changed.items()))
    console.print(
        f"{total} decision(s) replayed, {sum(changed.values())} would change"
        + (f": {summary}" if summary else ""),
        highlight=False,
        markup=False,
    )
    if fail_on_change and changed:
        raise typer.Exit(EXIT_FAILURE)
