"""Connections to the upstream MCP servers, with the official SDK client.

Each upstream runs in its own task for the gateway's lifetime: it connects (spawning a stdio
command or opening streamable HTTP, either protocol era), lists the tools, then re-lists when
the upstream says they changed (``notifications/tools/list_changed`` on a handshake-era
connection, a ``subscriptions/listen`` stream on a 2026-07-28 one). When the connection breaks
(the process died, the stream was lost) it reconnects with a growing pause; its tools leave the
catalog while it is down.

Calls go through the low-level ``client.session.call_tool`` so the upstream's result comes back
unchanged (``Client.call_tool`` would answer upstream elicitations itself). The upstream gets
only what its configuration gives it: a stdio command inherits the SDK's short list of safe
environment variables (PATH, HOME, ...) plus its configured ``env``, never the gateway's own
environment, and an HTTP upstream gets a fresh HTTP client with none of the agent's headers.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import mcp.types as types
from mcp import Client, StdioServerParameters
from mcp.client.subscriptions import ListenNotSupportedError, SubscriptionLost
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError
from mcp.types.version import MODERN_PROTOCOL_VERSIONS

from tribune.gateway.config import GatewaySettings, UpstreamSettings

log = logging.getLogger(__name__)
MAX_PAGES = 100  # a paginator that never ends cannot hang a listing
FIRST_PAUSE, MAX_PAUSE = 0.5, 30.0  # seconds between reconnection attempts

OnTools = Callable[[str, list[types.Tool] | None], Awaitable[None]]
"""Called with an upstream's full tool list after each listing, or None when it went down."""

CallResult = types.CallToolResult | types.InputRequiredResult | types.Result
BROKEN = (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream)


class UpstreamUnavailable(Exception):
    """The upstream is not connected (yet, or any more): nothing was sent."""


class UpstreamLost(Exception):
    """The connection broke while a call was under way: its outcome is unknown."""


class _Wake:
    """A level-triggered wake-up: ``relist`` and ``broken`` requests coalesce."""

    def __init__(self) -> None:
        self.relist = False
        self.broken = False
        self._event = anyio.Event()

    def set(self, *, broken: bool = False) -> None:
        if broken:
            self.broken = True
        else:
            self.relist = True
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        self._event = anyio.Event()


def target(up: UpstreamSettings) -> StdioServerParameters | str:
    """What ``mcp.Client`` connects to for ``up``."""
    if up.command is not None:
        return StdioServerParameters(command=up.command, args=list(up.args), env=dict(up.env))
    assert up.url is not None
    return up.url


class Upstreams:
    """The connected upstreams of one gateway process."""

    def __init__(self, settings: GatewaySettings, on_tools: OnTools) -> None:
        self.settings = {u.name: u for u in settings.upstreams}
        self._on_tools = on_tools
        self._clients: dict[str, Client] = {}
        self._wakes: dict[str, _Wake] = {}
        self._tried: dict[str, anyio.Event] = {n: anyio.Event() for n in self.settings}

    def connected(self, name: str) -> bool:
        return name in self._clients

    async def run(self, task_group: anyio.abc.TaskGroup, *, wait: float | None = None) -> None:
        """Start every upstream's task in ``task_group``; return once each has made its first
        attempt to connect (or after ``wait`` seconds, default the longest upstream timeout)."""
        for name in self.settings:
            task_group.start_soon(self._keep, name, name=f"upstream {name}")
        bound = (
            wait
            if wait is not None
            else max((u.timeout for u in self.settings.values()), default=0.0)
        )
        with anyio.move_on_after(bound):
            for event in self._tried.values():
                await event.wait()

    async def call(
        self,
        upstream: str,
        tool: str,
        arguments: dict[str, Any],
        *,
        progress: ProgressFnT | None = None,
    ) -> CallResult:
        """Call ``tool`` on ``upstream`` and return its result as it came. Raises
        ``UpstreamUnavailable``, ``UpstreamLost``, ``MCPError`` (an error response, the
        timeout, a lost connection) or ``RuntimeError`` (a result failing its output schema)."""
        client = self._clients.get(upstream)
        if client is None:
            raise UpstreamUnavailable(f"upstream `{upstream}` is not connected")
        try:
            return await client.session.call_tool(
                tool,
                arguments,
                read_timeout_seconds=self.settings[upstream].timeout,
                progress_callback=progress,
                allow_input_required=True,
                allow_claimed=True,
            )
        except MCPError as exc:
            if exc.error.code == types.CONNECTION_CLOSED:
                self._broken(upstream)
            raise
        except BROKEN:
            self._broken(upstream)
            raise UpstreamLost(f"upstream `{upstream}` closed the connection") from None

    def _broken(self, upstream: str) -> None:
        wake = self._wakes.get(upstream)
        if wake is not None:
            wake.set(broken=True)

    # ----------------------------------------------------------------- one upstream

    async def _keep(self, name: str) -> None:
        """Connect, serve, and reconnect after a pause whenever the connection ends."""
        pause = FIRST_PAUSE
        while True:
            served = False
            try:
                async with anyio.create_task_group() as tg:
                    up = anyio.Event()
                    tg.start_soon(self._watchdog, name, tg.cancel_scope, up)
                    served = await self._session(name, up)
                    tg.cancel_scope.cancel()
            except Exception as exc:  # the gateway stays up whatever one upstream does
                log.warning("upstream `%s`: %s", name, _describe(exc))
            finally:
                self._tried[name].set()
                with anyio.CancelScope(shield=True):
                    await self._tools(name, None)
            pause = FIRST_PAUSE if served else min(pause * 2, MAX_PAUSE)
            await anyio.sleep(pause)

    async def _watchdog(self, name: str, scope: anyio.CancelScope, up: anyio.Event) -> None:
        """Give up on a connection that is not up within the upstream's timeout."""
        with anyio.move_on_after(self.settings[name].timeout):
            await up.wait()
            return
        log.warning("upstream `%s`: not connected within its timeout", name)
        scope.cancel()

    async def _session(self, name: str, up: anyio.Event) -> bool:
        """One connection's life; True once it was up and listed."""
        wake = _Wake()

        async def on_message(message: Any) -> None:
            if isinstance(message, types.ToolListChangedNotification):
                wake.set()
            elif isinstance(message, BROKEN):
                wake.set(broken=True)
            await anyio.lowlevel.checkpoint()

        client = Client(
            target(self.settings[name]),
            mode="auto",
            cache=None,  # listings are per upstream and refetched on change
            message_handler=on_message,
        )
        try:
            async with client:
                self._wakes[name] = wake
                await self._relist(name, client)
                self._clients[name] = client
                up.set()
                self._tried[name].set()
                log.info("upstream `%s` connected (%s)", name, client.protocol_version)
                async with anyio.create_task_group() as tg:
                    if _announces_changes(client):
                        tg.start_soon(self._listen, name, client, wake)
                    while True:
                        await wake.wait()
                        if wake.broken:
                            log.warning("upstream `%s`: connection lost", name)
                            tg.cancel_scope.cancel()
                            break
                        if wake.relist:
                            wake.relist = False
                            await self._relist(name, client)
            return True
        finally:
            self._wakes.pop(name, None)
            self._clients.pop(name, None)

    async def _listen(self, name: str, client: Client, wake: _Wake) -> None:
        """A 2026-07-28 upstream announces tool changes on a listen stream."""
        try:
            async with client.listen(tools_list_changed=True) as sub:
                async for _ in sub:
                    wake.set()
        except (ListenNotSupportedError, MCPError) as exc:
            log.info("upstream `%s`: no change stream (%s)", name, _describe(exc))
        except (SubscriptionLost, *BROKEN):
            wake.set(broken=True)

    async def _relist(self, name: str, client: Client) -> None:
        tools: list[types.Tool] = []
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            page = await client.session.list_tools(
                params=types.PaginatedRequestParams(cursor=cursor) if cursor else None
            )
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        await self._tools(name, tools)

    async def _tools(self, name: str, tools: list[types.Tool] | None) -> None:
        try:
            await self._on_tools(name, tools)
        except Exception as exc:
            log.warning("upstream `%s`: tool list not applied: %s", name, _describe(exc))


def _announces_changes(client: Client) -> bool:
    if client.protocol_version not in MODERN_PROTOCOL_VERSIONS:
        return False  # handshake era: the change notification reaches on_message
    tools = client.server_capabilities.tools
    return bool(tools and tools.list_changed)


def _describe(exc: BaseException) -> str:
    """A short line for the log: the type, and the message without secrets we could know of."""
    if isinstance(exc, BaseExceptionGroup):
        inner = exc.exceptions[0] if exc.exceptions else exc
        return _describe(inner)
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
