"""`tribune up`: the HTTP API on a home, created on first run, and the MCP gateway at `/mcp`
when the home configures upstreams."""

from __future__ import annotations

from typing import Annotated, Any

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
        bool, typer.Option("--otel", help=r"OpenTelemetry traces (needs tribune\[otel]).")
    ] = False,
    no_gateway: Annotated[
        bool,
        typer.Option("--no-gateway", help="Do not serve the MCP gateway at /mcp."),
    ] = False,
) -> None:
    r"""Start Tribune's HTTP API (creating the home, its keys, the default policy pack and a
    first admin API key on first run). When tribune.toml lists `\[\[gateway.upstreams]]`, the
    MCP gateway is served too, at /mcp on the same port (agents send their task token as a
    bearer token; needs tribune\[gateway]). Stop with Ctrl-C or SIGTERM: in-flight requests
    finish."""
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
        gateway = None if no_gateway else _gateway(tr, host, port)
    console.print(f"Tribune on http://{host}:{port}  (home {path}, {store}, {workers} worker(s))")
    if gateway:
        console.print(f"MCP gateway on {gateway}")
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
            gateway=gateway is not None,
        )
    )


def _gateway(tr: Any, host: str, port: int) -> str | None:
    """What ``tribune up`` says of the gateway it will serve at ``/mcp``, or None: no upstreams,
    or no MCP SDK (a warning). Mounting it here, once, reports a bad ``url`` before any worker
    starts."""
    upstreams = tr.settings.gateway.upstreams
    if not upstreams:
        return None
    try:
        from tribune.gateway.mount import mount, served
    except ImportError:
        err_console.print(
            "[bold yellow]warning[/]: tribune.toml lists gateway upstreams but the MCP SDK is not"
            " installed; serving the API alone (pip install 'tribune\\[gateway]')",
            highlight=False,
            soft_wrap=True,
        )
        return None
    from tribune.http.app import create_app

    settings = served(tr.settings.gateway, host, port)
    mount(create_app(tr).router.routes, tr, settings, host=host)  # nothing connects yet
    return f"{settings.url}  ({len(upstreams)} upstream(s))"
