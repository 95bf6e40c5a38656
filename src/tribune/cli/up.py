"""`tribune up`: the HTTP API on a home, created on first run."""

from __future__ import annotations

from typing import Annotated

import typer

from tribune.cli.common import HomeOption, console, err_console, errors


def up(
    home: HomeOption = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=1, max=65535)] = 8700,
    workers: Annotated[
        int, typer.Option(help="Worker processes (decisions scale with processes).", min=1, max=64)
    ] = 1,
    private_metrics: Annotated[
        bool,
        typer.Option("--private-metrics", help="Require an admin/auditor key for /metrics."),
    ] = False,
    log_format: Annotated[str, typer.Option(help="json or text.")] = "json",
    log_level: Annotated[
        str, typer.Option(help="info logs every request; warning only problems.")
    ] = "info",
    otel: Annotated[
        bool, typer.Option("--otel", help="OpenTelemetry traces (needs tribune[otel]).")
    ] = False,
) -> None:
    """Start Tribune's HTTP API (creating the home, its keys, the default policy pack and a
    first admin API key on first run). Stop with Ctrl-C or SIGTERM: in-flight requests finish."""
    from tribune.bootstrap import open_tribune, resolve_home
    from tribune.http.server import ServeOptions, serve

    if log_format not in ("json", "text"):
        raise typer.BadParameter("--log-format must be json or text")
    if log_level.lower() not in ("debug", "info", "warning", "error"):
        raise typer.BadParameter("--log-level must be debug, info, warning or error")
    path = resolve_home(home)
    with errors(), open_tribune(path, create=True) as tr:
        token = tr.access.ensure_admin()
        store = "PostgreSQL" if tr.settings.store_url else "SQLite"
    console.print(f"Tribune on http://{host}:{port}  (home {path}, {store}, {workers} worker(s))")
    if token:
        err_console.print("[bold]admin API key[/] (shown once; keep it safe):", highlight=False)
        console.print(token, highlight=False, soft_wrap=True)
    serve(
        ServeOptions(
            home=path,
            host=host,
            port=port,
            workers=workers,
            public_metrics=not private_metrics,
            log_format=log_format,
            log_level=log_level.lower(),
            tracing=otel,
        )
    )
