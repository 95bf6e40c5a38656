"""Errors on the wire: JSON ``{code, message, hint?}`` with a status chosen by the code.

Nothing below the edges knows HTTP; this is the one mapping. Unexpected exceptions become a
500 ``internal_error`` without a trace or message (the log has the type, never the request).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tribune.errors import (
    AgentInactive,
    Conflict,
    CredentialBackendUnavailable,
    Forbidden,
    InvalidInput,
    NotFound,
    PolicyInvalid,
    ScopeExceedsEntitlements,
    StoreError,
    TaskInactive,
    TribuneError,
    Unauthenticated,
)
from tribune.http.metrics import ERRORS

log = logging.getLogger("tribune.http")

STATUS: tuple[tuple[type[TribuneError], int], ...] = (
    (Unauthenticated, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (AgentInactive, 409),
    (TaskInactive, 409),
    (ScopeExceedsEntitlements, 403),
    (PolicyInvalid, 422),
    (InvalidInput, 400),
    (StoreError, 503),
    (CredentialBackendUnavailable, 503),
)

HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "request_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


def status_of(exc: TribuneError) -> int:
    for kind, status in STATUS:
        if isinstance(exc, kind):
            return status
    return 400


def problem(
    status: int,
    code: str,
    message: str,
    hint: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if hint:
        body["hint"] = hint
    return respond(status, body, headers)


def respond(
    status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None
) -> JSONResponse:
    ERRORS.labels(str(body.get("code"))).inc()
    out = dict(headers or {})
    if status == 401:
        out["WWW-Authenticate"] = 'Bearer realm="tribune"'
    return JSONResponse(body, status_code=status, headers=out or None)


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """The methods the OpenAPI document lists for ``path`` (matched against its templates)."""
    table: list[tuple[re.Pattern[str], list[str]]] | None = getattr(app.state, "allow", None)
    if table is None:
        table = [
            (
                re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(t)) + "$"),
                [m.upper() for m in ops],
            )
            for t, ops in app.openapi()["paths"].items()
        ]
        app.state.allow = table
    return sorted({m for pattern, ops in table if pattern.match(path) for m in ops})


def validation_message(errors: Sequence[Any]) -> str:
    """The first schema error as ```where`: what``, lowercase, bounded."""
    first = errors[0] if errors else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    return f"`{where}`: {first.get('msg', 'invalid')}".lower()[:300]


def install(app: FastAPI) -> None:
    @app.exception_handler(TribuneError)
    async def tribune_error(_: Request, exc: TribuneError) -> JSONResponse:
        if isinstance(exc, StoreError):
            log.warning("store unavailable: %s", exc.detail or exc.message)
        return respond(status_of(exc), exc.to_dict())

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        message = validation_message(exc.errors())
        return problem(422, "invalid_request", message, "see /openapi.json")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # every method of the path, not just the first route's
            headers["Allow"] = ", ".join(allowed_methods(app, request.url.path))
        return problem(exc.status_code, code, str(exc.detail).lower(), headers=headers)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected %s", type(exc).__name__)
        return problem(500, "internal_error", "internal error")
