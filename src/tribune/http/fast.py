"""The decision route as a plain ASGI handler, ahead of FastAPI's router.

``POST /v1/decisions`` is the one hot route: under load FastAPI's routing, dependency solving
and response handling cost more CPU than the governed decision itself (bench/RESULTS.md, "HTTP
decisions"). This handler does the same steps with the same parts — the body limit, the API
key check, the role rule, the ``DecisionIn`` model, ``own_task``, the governor, the error
mapping — without the framework around them. The FastAPI route stays: it is what the OpenAPI
document describes, and it serves when tracing is on. ``tests/api`` runs every decision test
through this handler and compares both on the same requests.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from pydantic import ValidationError

from tribune.core.model import Role
from tribune.errors import Forbidden, StoreError, TribuneError, Unauthenticated
from tribune.http import metrics, waiting
from tribune.http.convert import verdict_out
from tribune.http.errors import log, status_of, validation_message
from tribune.http.models import DecisionIn
from tribune.http.security import caller_for, own_task

PATH = "/v1/decisions"
ACTORS = frozenset({Role.ADMIN, Role.AGENT})
Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]
Receive = Callable[[], Awaitable[Message]]


class TooLarge(Exception):
    pass


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None when the client left; ``TooLarge`` past ``limit``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def decide(
    tr: Any, scope: MutableMapping[str, Any], receive: Receive, send: Send, limit: int
) -> int:
    """Serve one decision; returns the status sent."""
    started = time.perf_counter()
    try:
        caller = caller_for(tr, _bearer(scope))
        scope.setdefault("state", {})["caller"] = caller
        if caller.role not in ACTORS:
            raise Forbidden(f"role `{caller.role.value}` may not do this")
        body = await read_body(receive, limit)
        if body is None:
            return 499
        problem, parsed = _parse(body)
        if problem is not None:
            return await _send(send, 422, problem)
        try:
            request = DecisionIn.model_validate(parsed)
        except ValidationError as exc:
            return await _send(send, 422, _invalid(exc.errors()))
        own_task(tr, caller, request.task)
        verdict, ticket = await waiting.decide(tr, request)
    except TooLarge:
        return await _send(send, 413, _problem("request_too_large", "request body over 2 MiB"))
    except TribuneError as exc:
        if isinstance(exc, StoreError):
            log.warning("store unavailable: %s", exc.detail or exc.message)
        return await _send(send, status_of(exc), exc.to_dict())
    except Exception as exc:  # fail closed, as the framework's handler would
        log.error("unexpected %s", type(exc).__name__)
        return await _send(send, 500, _problem("internal_error", "internal error"))
    effect = verdict.decision.effect.value
    metrics.observe_decision(effect, "decisions", time.perf_counter() - started)
    return await _send(send, 200, verdict_out(verdict, ticket))


def _bearer(scope: MutableMapping[str, Any]) -> str:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = bytes(value).decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            break
    raise Unauthenticated("invalid or missing credential", hint="send Authorization: Bearer")


def _parse(body: bytes) -> tuple[dict[str, Any] | None, Any]:
    """(problem, value): the body as JSON, with FastAPI's wording when it is not."""
    if not body:
        return _invalid([{"loc": ("body",), "msg": "Field required"}]), None
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        try:  # the standard library's position, as the framework reports it
            json.loads(body)
        except ValueError as exc:
            pos = getattr(exc, "pos", 0)
            return _invalid([{"loc": ("body", pos), "msg": "JSON decode error"}]), None
        return _invalid([{"loc": ("body",), "msg": "JSON decode error"}]), None
    if not isinstance(value, dict):
        message = "Input should be a valid dictionary or object to extract fields from"
        return _invalid([{"loc": ("body",), "msg": message}]), None
    return None, value


def _invalid(errors: Any) -> dict[str, Any]:
    return {"code": "invalid_request", "message": validation_message(errors),
            "hint": "see /openapi.json"}  # fmt: skip


def _problem(code: str, message: str) -> dict[str, Any]:
    return {"code": code, "message": message}


async def _send(send: Send, status: int, body: dict[str, Any]) -> int:
    payload = orjson.dumps(body)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    if status >= 400:
        metrics.ERRORS.labels(str(body.get("code"))).inc()
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="tribune"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
    return status
