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

An upstream with a ``credential`` (see ``lending``) gets it only on calls: over HTTP the call's
own lease in a header of that call's request (the shared connection, listings included, carries
none); over stdio the call goes to the task's own process (``processes``), and the shared
connection, started without the credential, only lists tools.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from typing import Any

import anyio
import httpx2
import mcp.types as types
from mcp import Client, StdioServerParameters
from mcp.client import Transport
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ListenNotSupportedError, SubscriptionLost
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError
from mcp.types.version import MODERN_PROTOCOL_VERSIONS

from tribune.core.model import Verdict
from tribune.errors import ConfigError
from tribune.gateway.config import GatewaySettings, UpstreamSettings
from tribune.gateway.lending import (
    CredentialUnavailable,
    Lending,
    check_sources,
    describe,
    header_hook,
    lent,
)
from tribune.gateway.processes import BROKEN, NoProcess, TaskProcesses, UpstreamBusy

__all__ = [
    "BROKEN",
    "CallResult",
    "CredentialUnavailable",
    "UpstreamBusy",
    "UpstreamLost",
    "UpstreamUnavailable",
    "Upstreams",
]

log = logging.getLogger(__name__)
MAX_PAGES = 100  # a paginator that never ends cannot hang a listing
FIRST_PAUSE, MAX_PAUSE = 0.5, 30.0  # seconds between reconnection attempts
HTTP_TIMEOUT = httpx2.Timeout(30.0, read=300.0)  # the SDK's own: a stream may stay open long

OnTools = Callable[[str, list[types.Tool] | None], Awaitable[None]]
"""Called with an upstream's full tool list after each listing, or None when it went down."""

CallResult = types.CallToolResult | types.InputRequiredResult | types.Result


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


def target(
    up: UpstreamSettings, http: httpx2.AsyncClient | None = None
) -> StdioServerParameters | str | Transport:
    """What ``mcp.Client`` connects to for ``up`` (never with ``up``'s credential): its command,
    or its URL, over ``http`` when given."""
    if up.command is not None:
        return StdioServerParameters(command=up.command, args=list(up.args), env=dict(up.env))
    assert up.url is not None
    return up.url if http is None else streamable_http_client(up.url, http_client=http)


def http_client(up: UpstreamSettings) -> httpx2.AsyncClient:
    """The HTTP upstream's own client: no header of the agent's; with a credential, the hook
    that adds the call's lease to the call's request."""
    hooks = {"request": [header_hook(up.name)]} if up.credential is not None else {}
    return httpx2.AsyncClient(timeout=HTTP_TIMEOUT, event_hooks=hooks)


class Upstreams:
    """The connected upstreams of one gateway process."""

    def __init__(
        self, settings: GatewaySettings, on_tools: OnTools, *, lending: Lending | None = None
    ) -> None:
        """``lending``: credentials for the upstreams that have one; their sources are checked
        here, so a bad name stops the gateway at start (``ConfigError``)."""
        self.settings = {u.name: u for u in settings.upstreams}
        lent_to = [u for u in settings.upstreams if u.credential is not None]
        if lent_to and lending is None:
            raise ConfigError(f"upstream `{lent_to[0].name}` has a credential; nothing lends it")
        if lending is not None:
            check_sources(settings, lending.sources)
        self._lending = lending
        self.processes = {
            u.name: TaskProcesses(u, lending)
            for u in lent_to
            if u.command is not None and lending is not None
        }
        self._on_tools = on_tools
        self._clients: dict[str, Client] = {}
        self._wakes: dict[str, _Wake] = {}
        self._tried: dict[str, anyio.Event] = {n: anyio.Event() for n in self.settings}

    def connected(self, name: str) -> bool:
        return name in self._clients

    async def run(self, task_group: anyio.abc.TaskGroup, *, wait: float | None = None) -> None:
        """Start every upstream's task in ``task_group``; return once each has made its first
        attempt to connect (or after ``wait`` seconds, default the longest connect timeout)."""
        for name in self.settings:
            task_group.start_soon(self._keep, name, name=f"upstream {name}")
        for processes in self.processes.values():
            processes.start(task_group)
        bound = (
            wait
            if wait is not None
            else max((u.connect_timeout for u in self.settings.values()), default=0.0)
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
        verdict: Verdict | None = None,
    ) -> CallResult:
        """Call ``tool`` on ``upstream`` and return its result as it came; ``verdict`` is the
        call's decision (an upstream with a credential needs it). Raises
        ``CredentialUnavailable``, ``UpstreamBusy``, ``UpstreamUnavailable`` (nothing was sent),
        ``UpstreamLost``, ``MCPError`` (an error response, the timeout, a lost connection) or
        ``RuntimeError`` (a result failing its output schema)."""
        up = self.settings[upstream]

        def lost() -> None:
            self._broken(upstream)

        if up.credential is None:
            client = self._connected(upstream)
            return await self._send(client, up, tool, arguments, progress, lost)
        if verdict is None or self._lending is None:  # fail closed
            raise CredentialUnavailable(f"no credential for upstream `{upstream}`")
        processes = self.processes.get(upstream)
        if processes is not None:
            try:
                async with processes.use(verdict.task_id) as process:
                    assert process.client is not None
                    return await self._send(
                        process.client, up, tool, arguments, progress, process.lose
                    )
            except NoProcess:
                raise UpstreamUnavailable(f"upstream `{upstream}` is not connected") from None
        client = self._connected(upstream)  # before lending: nothing is issued in vain
        async with self._lending.for_call(up, verdict) as credential:
            with lent(credential):
                return await self._send(client, up, tool, arguments, progress, lost)

    def _connected(self, upstream: str) -> Client:
        client = self._clients.get(upstream)
        if client is None:
            raise UpstreamUnavailable(f"upstream `{upstream}` is not connected")
        return client

    async def _send(
        self,
        client: Client,
        up: UpstreamSettings,
        tool: str,
        arguments: dict[str, Any],
        progress: ProgressFnT | None,
        lost: Callable[[], None],
    ) -> CallResult:
        try:
            return await client.session.call_tool(
                tool,
                arguments,
                read_timeout_seconds=up.timeout,
                progress_callback=progress,
                allow_input_required=True,
                allow_claimed=True,
            )
        except MCPError as exc:
            if exc.error.code == types.CONNECTION_CLOSED:
                lost()
            raise
        except BROKEN:
            lost()
            raise UpstreamLost(f"upstream `{up.name}` closed the connection") from None

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
                log.warning("upstream `%s`: %s", name, describe(exc))
            finally:
                self._tried[name].set()
                with anyio.CancelScope(shield=True):
                    await self._tools(name, None)
            pause = FIRST_PAUSE if served else min(pause * 2, MAX_PAUSE)
            await anyio.sleep(pause)

    async def _watchdog(self, name: str, scope: anyio.CancelScope, up: anyio.Event) -> None:
        """Give up on a connection that is not up within the upstream's connect timeout."""
        with anyio.move_on_after(self.settings[name].connect_timeout):
            await up.wait()
            return
        log.warning("upstream `%s`: not connected within its connect timeout", name)
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

        config = self.settings[name]
        http = http_client(config) if config.url is not None else None
        client = Client(
            target(config, http),
            mode="auto",
            cache=None,  # listings are per upstream and refetched on change
            message_handler=on_message,
        )
        try:
            async with http if http is not None else nullcontext(), client:
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
            log.info("upstream `%s`: no change stream (%s)", name, describe(exc))
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
            log.warning("upstream `%s`: tool list not applied: %s", name, describe(exc))


def _announces_changes(client: Client) -> bool:
    if client.protocol_version not in MODERN_PROTOCOL_VERSIONS:
        return False  # handshake era: the change notification reaches on_message
    tools = client.server_capabilities.tools
    return bool(tools and tools.list_changed)
