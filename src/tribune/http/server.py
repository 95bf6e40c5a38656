"""Serving the API: uvicorn over one or more worker processes, each with its own open Tribune.

``tribune up`` prepares the home once in the parent (init, first admin key), then starts
uvicorn with ``factory`` so every worker opens the home itself (SQLite serialises the workers'
appends with ``BEGIN IMMEDIATE``; PostgreSQL with an advisory lock). SIGTERM/SIGINT drain
in-flight requests; each worker then signs a final checkpoint and closes its store.

With ``ServeOptions.gateway`` each worker also serves the MCP gateway at ``/mcp`` (see
``tribune.gateway.mount``): its own ``Gateway``, whose upstreams connect when the worker starts.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import FastAPI

if TYPE_CHECKING:
    from tribune.gateway.mount import Lifespan

HOME_ENV = "TRIBUNE_HOME"
PRIVATE_METRICS_ENV = "TRIBUNE_PRIVATE_METRICS"
TRACING_ENV = "TRIBUNE_OTEL"
FAST_PATHS_ENV = "TRIBUNE_FAST_PATHS"
LOG_ENV = "TRIBUNE_LOG"  # "<format>:<level>", set by serve() for the worker processes
GATEWAY_ENV = "TRIBUNE_GATEWAY"  # "<host>:<port>" where serve() listens, when serving /mcp
STATELESS_ENV = "TRIBUNE_GATEWAY_STATELESS"  # "1": several workers, no handshake-era sessions


@dataclass(frozen=True, slots=True)
class ServeOptions:
    home: Path
    host: str = "127.0.0.1"
    port: int = 8700
    workers: int = 1
    public_metrics: bool = True
    log_format: str = "json"  # json | text
    log_level: str = "info"
    tracing: bool = False
    gateway: bool = False  # also the MCP gateway at /mcp (needs the `mcp` SDK)


def factory() -> FastAPI:
    """The app for one worker process: opens the home named by ``TRIBUNE_HOME``."""
    from tribune.bootstrap import open_tribune
    from tribune.http.app import create_app

    if LOG_ENV in os.environ:  # a spawned worker starts with logging unconfigured
        fmt, _, level = os.environ[LOG_ENV].partition(":")
        configure_logging(fmt, level or "info")
    tr = open_tribune(os.environ[HOME_ENV])
    app = create_app(
        tr,
        public_metrics=os.environ.get(PRIVATE_METRICS_ENV) != "1",
        # "0" serves decisions through the framework route (benchmarks compare the two)
        fast_paths=os.environ.get(FAST_PATHS_ENV) != "0",
    )
    provider = None
    if os.environ.get(TRACING_ENV) == "1":
        from tribune.http.tracing import instrument

        provider = instrument(app)
    gateway = _gateway(app, tr, os.environ[GATEWAY_ENV]) if GATEWAY_ENV in os.environ else None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        tr.leases.start_sweeper()  # each worker sweeps; ending a lease is compare-and-set
        try:
            # INVARIANT: the gateway stops (its last results written) before the store closes.
            async with gateway() if gateway is not None else nullcontext():
                yield
        finally:
            if provider is not None:
                provider.shutdown()
            tr.close()

    app.router.lifespan_context = lifespan
    return app


def _gateway(app: FastAPI, tr: Any, listen: str) -> Lifespan:
    """Serve the home's gateway at ``/mcp`` of ``app``; the lifespan for ``app``'s to enter."""
    from tribune.gateway.mount import mount, served

    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    settings = served(tr.settings.gateway, host, int(port))
    stateless = os.environ.get(STATELESS_ENV) == "1"
    return mount(app.router.routes, tr, settings, host=host, stateless=stateless)


def serve(options: ServeOptions) -> None:
    import uvicorn

    os.environ[HOME_ENV] = str(options.home)
    if not options.public_metrics:
        os.environ[PRIVATE_METRICS_ENV] = "1"
    if options.tracing:
        from tribune.http.tracing import require_otel

        require_otel()  # fail here, once, rather than in every worker
        os.environ[TRACING_ENV] = "1"
    if options.workers > 1:
        metrics_dir = options.home / "run" / "metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)  # counters restart with the service
        metrics_dir.mkdir(parents=True, mode=0o700)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    if options.gateway:
        host = f"[{options.host}]" if ":" in options.host else options.host
        os.environ[GATEWAY_ENV] = f"{host}:{options.port}"
        # a handshake-era session lives in one worker; the next request may reach another
        os.environ[STATELESS_ENV] = "1" if options.workers > 1 else "0"
    else:
        os.environ.pop(GATEWAY_ENV, None)
    os.environ[LOG_ENV] = f"{options.log_format}:{options.log_level}"
    configure_logging(options.log_format, options.log_level)
    uvicorn.run(
        "tribune.http.server:factory",
        factory=True,
        host=options.host,
        port=options.port,
        workers=options.workers,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
        server_header=False,
    )


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's extras."""

    SKIP = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "color_message"}

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in self.SKIP:
                out[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            out["error"] = record.exc_info[0].__name__  # the type only: messages may hold data
        return orjson.dumps(out, default=str).decode()


def configure_logging(fmt: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        formatter: logging.Formatter = JsonFormatter()
        formatter.converter = time.gmtime
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
