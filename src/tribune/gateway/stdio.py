"""The gateway over stdio: one agent, one task, the token from the environment.

The MCP host starts ``python -m tribune.gateway`` (later ``tribune gateway``) with the task's
token in ``TRIBUNE_TASK_TOKEN``. The token is read once and removed from this process's
environment (no child ever inherits it); it is checked before serving and again on every
request, so the gateway stops working for a task that ended or a token that was revoked.

A line that is not a JSON-RPC message gets a JSON-RPC error with a null id (``Answering``): the
SDK's stdio transport drops such lines, and a client would wait for an answer for ever.
"""

from __future__ import annotations

import os
from contextlib import suppress
from types import TracebackType
from typing import Any, Protocol

import anyio
import mcp.types as types
from mcp.server import ServerRequestContext
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

from tribune.errors import TribuneError
from tribune.gateway.auth import TOKEN_ENV, task_principal
from tribune.gateway.config import GatewaySettings
from tribune.gateway.pipes import stdio
from tribune.gateway.server import Gateway, Services
from tribune.services.identity import IdentityService, Principal


class StdioServices(Services, Protocol):
    identity: IdentityService


class Unauthenticated(TribuneError):
    code = "unauthenticated"


class _Inbound(Protocol):
    async def receive(self) -> SessionMessage | Exception: ...
    async def aclose(self) -> None: ...


class _Outbound(Protocol):
    async def send(self, item: SessionMessage, /) -> None: ...


class Answering:
    """The transport's read stream without its errors: each line that is not a JSON-RPC message
    is answered here, with a parse error (not JSON) or an invalid request (not a message), and
    never reaches the server."""

    def __init__(self, read: _Inbound, write: _Outbound) -> None:
        self._read = read
        self._write = write
        self.last_context: Any = None  # the sender's context, as the SDK's streams carry it

    async def receive(self) -> SessionMessage:
        while True:
            item = await self._read.receive()
            if not isinstance(item, Exception):
                self.last_context = getattr(self._read, "last_context", None)
                return item
            with suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
                await self._write.send(SessionMessage(_refusal(item)))

    async def aclose(self) -> None:
        await self._read.aclose()

    def __aiter__(self) -> Answering:
        return self

    async def __anext__(self) -> SessionMessage:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> Answering:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _refusal(exc: Exception) -> types.JSONRPCError:
    """JSON-RPC 2.0's answer to a line it cannot read: the id is null, as it cannot be known."""
    not_json = isinstance(exc, ValidationError) and any(
        e["type"] == "json_invalid" for e in exc.errors()
    )
    error = (
        types.ErrorData(code=types.PARSE_ERROR, message="Parse error")
        if not_json
        else types.ErrorData(code=types.INVALID_REQUEST, message="Invalid Request")
    )
    return types.JSONRPCError(jsonrpc="2.0", id=None, error=error)


def take_token() -> str | None:
    """The task token from the environment, removed from it."""
    return os.environ.pop(TOKEN_ENV, None) or None


def gateway(tr: StdioServices, settings: GatewaySettings, token: str | None) -> Gateway:
    """A gateway whose every request is made with ``token``."""

    async def identify(_: ServerRequestContext[Any, Any]) -> Principal | None:
        return await gw.run(lambda: task_principal(tr.identity, token))

    # One agent, one task per process: its results can follow the replies (runners.Results),
    # and the process writes every one before it exits.
    gw = Gateway(tr, settings, identify, defer_results=True)
    return gw


async def serve_async(tr: StdioServices, settings: GatewaySettings, token: str | None) -> None:
    if await anyio.to_thread.run_sync(task_principal, tr.identity, token) is None:
        # one opaque answer; why is in the audit log (auth_refused)
        raise Unauthenticated(
            f"no valid task token in `{TOKEN_ENV}`",
            hint="start a task and pass its token in the MCP server's environment",
        )
    gw = gateway(tr, settings, token)
    async with stdio() as (read, write):
        await gw.server.run(
            Answering(read, write), write, gw.server.create_initialization_options()
        )


def serve(tr: StdioServices, settings: GatewaySettings, *, token: str | None = None) -> None:
    """Serve MCP on stdin/stdout until the host closes it. Raises ``Unauthenticated`` before
    serving when the token (``token``, else ``TRIBUNE_TASK_TOKEN``) is not a valid task token."""
    anyio.run(serve_async, tr, settings, token if token is not None else take_token())
