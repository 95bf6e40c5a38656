"""The gateway over stdio: one agent, one task, the token from the environment.

The MCP host starts ``python -m tribune.gateway`` (later ``tribune gateway``) with the task's
token in ``TRIBUNE_TASK_TOKEN``. The token is read once and removed from this process's
environment (no child ever inherits it); it is checked before serving and again on every
request, so the gateway stops working for a task that ended or a token that was revoked.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

import anyio
from mcp.server import ServerRequestContext
from mcp.server.stdio import stdio_server

from tribune.errors import TribuneError
from tribune.gateway.auth import TOKEN_ENV, task_principal
from tribune.gateway.config import GatewaySettings
from tribune.gateway.server import Gateway, Services
from tribune.services.identity import IdentityService, Principal


class StdioServices(Services, Protocol):
    identity: IdentityService


class Unauthenticated(TribuneError):
    code = "unauthenticated"


def take_token() -> str | None:
    """The task token from the environment, removed from it."""
    return os.environ.pop(TOKEN_ENV, None) or None


def gateway(tr: StdioServices, settings: GatewaySettings, token: str | None) -> Gateway:
    """A gateway whose every request is made with ``token``."""

    async def identify(_: ServerRequestContext[Any, Any]) -> Principal | None:
        return await anyio.to_thread.run_sync(task_principal, tr.identity, token)

    return Gateway(tr, settings, identify)


async def serve_async(tr: StdioServices, settings: GatewaySettings, token: str | None) -> None:
    if await anyio.to_thread.run_sync(task_principal, tr.identity, token) is None:
        # one opaque answer; why is in the audit log (auth_refused)
        raise Unauthenticated(
            f"no valid task token in `{TOKEN_ENV}`",
            hint="start a task and pass its token in the MCP server's environment",
        )
    gw = gateway(tr, settings, token)
    async with stdio_server() as (read, write):
        await gw.server.run(read, write, gw.server.create_initialization_options())


def serve(tr: StdioServices, settings: GatewaySettings, *, token: str | None = None) -> None:
    """Serve MCP on stdin/stdout until the host closes it. Raises ``Unauthenticated`` before
    serving when the token (``token``, else ``TRIBUNE_TASK_TOKEN``) is not a valid task token."""
    anyio.run(serve_async, tr, settings, token if token is not None else take_token())
