"""The FastAPI application over an open Tribune.

    app = create_app(tribune.open(home))

Public routes (no credential): ``/healthz``, ``/readyz``, ``/.well-known/jwks.json``,
``/openapi.json``, ``/metrics`` (unless configured private). Everything else needs an API key
and a role (see ``security``).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse, Response

import tribune as tribune_pkg
from tribune.core.model import Role
from tribune.http import errors, fast, metrics
from tribune.http import models as m
from tribune.http.routes import (
    approvals,
    audit,
    authzen,
    decisions,
    keys,
    leases,
    policies,
    registry,
    tasks,
)
from tribune.http.security import allow

log = logging.getLogger("tribune.access")

MAX_BODY_BYTES = 2 << 20  # arguments may be up to 1 MiB; JSON framing on top
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def create_app(tr: Any, *, public_metrics: bool = True, fast_paths: bool = True) -> FastAPI:
    app = FastAPI(
        title="Tribune",
        version=tribune_pkg.__version__,
        summary="Runtime governance for AI agents: decide, record and audit every tool call",
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.tribune = tr
    errors.install(app)
    for module in (registry, tasks, decisions, approvals, audit, policies, keys, authzen, leases):
        app.include_router(module.router)

    @app.get("/healthz", response_model=m.Health, tags=["system"])
    async def healthz() -> dict[str, Any]:
        """The process is up (it does not touch the store)."""
        return {"status": "ok", "version": tribune_pkg.__version__, "checks": {}}

    @app.get("/.well-known/jwks.json", response_model=m.Jwks, tags=["system"])
    def jwks(response: Response) -> dict[str, Any]:
        """The public keys that verify task tokens, old ones included until they retire."""
        response.headers["Cache-Control"] = "public, max-age=300"
        keys: dict[str, Any] = tr.tokens.keys.jwks()
        return keys

    @app.get(
        "/readyz",
        response_model=m.Health,
        tags=["system"],
        responses={503: {"model": m.Health}},
    )
    def readyz() -> Response:
        """Ready to decide: the store answers and a policy version is active."""
        checks: dict[str, str] = {}
        try:
            tr.store.head()
            checks["store"] = "ok"
        except Exception as exc:
            checks["store"] = type(exc).__name__
        try:
            checks["policy"] = "ok" if tr.policies.active() is not None else "none active"
        except Exception as exc:
            checks["policy"] = type(exc).__name__
        ok = all(v == "ok" for v in checks.values())
        body = {
            "status": "ok" if ok else "unavailable",
            "checks": checks,
            "version": tribune_pkg.__version__,
        }
        return JSONResponse(body, status_code=200 if ok else 503)

    metrics_deps = [] if public_metrics else [Depends(allow(Role.ADMIN, Role.AUDITOR))]

    @app.get(
        "/metrics",
        tags=["system"],
        dependencies=metrics_deps,
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    def metrics_route() -> Response:
        """Prometheus metrics (text exposition format)."""
        body, content_type = metrics.render(tr.store)
        return Response(body, media_type=content_type)

    app.add_middleware(Edge, tr=tr, state=app.state, fast_paths=fast_paths)
    return app


class Edge:
    """Outermost middleware: bounds request bodies, measures and logs each request (route
    template, status, duration, caller key id; never bodies, queries or headers)."""

    def __init__(self, app: ASGIApp, tr: Any, state: Any, fast_paths: bool = True) -> None:
        self.app = app
        self.tr = tr
        self.state = state
        self.fast_paths = fast_paths

    @property
    def fast(self) -> bool:
        """Serve decisions with ``fast.decide`` (not while tracing: spans come from FastAPI)."""
        return self.fast_paths and getattr(self.state, "annotate", None) is None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        seen = 0
        declared = _content_length(scope)
        if declared is not None and declared > MAX_BODY_BYTES:
            await _too_large(send)
            _observe(scope, 413, started)
            return
        if scope["path"] == fast.PATH and scope["method"] == "POST" and self.fast:
            status = await fast.decide(self.tr, scope, receive, send, MAX_BODY_BYTES)
            _observe(scope, status, started, fast.PATH)
            return

        cut = False

        async def bounded_receive() -> Message:
            nonlocal seen, cut, status
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > MAX_BODY_BYTES and not cut:
                    # Answer 413 now and tell the app the client left: it stops reading, its
                    # route never runs, and anything it still sends is dropped.
                    cut, status = True, 413
                    await _too_large(send)
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if cut:
                return
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, bounded_receive, tracking_send)
        finally:
            _observe(scope, status, started)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _too_large(send: Send) -> None:
    metrics.ERRORS.labels("request_too_large").inc()
    body = b'{"code":"request_too_large","message":"request body over 2 MiB"}'
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _observe(scope: Scope, status: int, started: float, route: str | None = None) -> None:
    elapsed = time.perf_counter() - started
    route = route or getattr(scope.get("route"), "path", None) or "unmatched"
    metrics.REQUESTS.labels(route, scope["method"], str(status)).inc()
    metrics.REQUEST_SECONDS.labels(route).observe(elapsed)
    if log.isEnabledFor(logging.INFO):
        caller = getattr(scope.get("state", {}).get("caller"), "key_id", None)
        log.info(
            "request",
            extra={
                "request_id": uuid.uuid4().hex[:16],
                "method": scope["method"],
                "route": route,
                "status": status,
                "duration_ms": round(elapsed * 1000, 3),
                "key_id": caller,
            },
        )
