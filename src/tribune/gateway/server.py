"""The gateway as an MCP server: the SDK's low-level ``Server`` over Tribune and the upstreams.

``tools/list`` answers with the namespaced upstream tools the caller's task could ever be
allowed to call (``visibility``), with the effective risk facts as annotations. ``tools/call``
is governed by ``calls.govern``. Upstream tool changes are applied to the catalog, registered
and re-announced: a ``tools/list_changed`` notification to handshake-era sessions, an event on
``subscriptions/listen`` streams for 2026-07-28 clients.

The transport decides who calls: ``stdio.serve`` and ``http.create_app`` pass ``identify``.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, nullcontext
from typing import Any, Protocol

import anyio
import mcp.types as types
from mcp.server import Server, ServerRequestContext
from mcp.server.connection import Connection
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.models import InitializationOptions
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ToolsListChanged
from mcp.shared.exceptions import MCPError
from mcp.types.version import MODERN_PROTOCOL_VERSIONS

import tribune
from tribune.config import Settings
from tribune.core.model import Agent
from tribune.gateway import calls
from tribune.gateway.approval import KEY_LABEL, Asking, Waiting, request_state_boundary
from tribune.gateway.catalog import Catalog, Route, annotations_of
from tribune.gateway.config import GatewaySettings
from tribune.gateway.lending import Lending
from tribune.gateway.replies import refusal
from tribune.gateway.runners import Results, runner_for
from tribune.gateway.upstreams import Upstreams
from tribune.gateway.visibility import Visibility
from tribune.ports import Clock, Store
from tribune.services.approvals import ApprovalService
from tribune.services.governor import Governor
from tribune.services.identity import Principal
from tribune.services.leases import LeaseService
from tribune.services.policies import PolicyService
from tribune.services.registry import Events, RegistryService
from tribune.services.secrets import SecretService

log = logging.getLogger(__name__)
NAME = "tribune-gateway"
INSTRUCTIONS = (
    "Tools of several MCP servers, named `<server>.<tool>`. Tribune decides every call: a call "
    "that policy denies, or that waits for human approval, returns an error saying why."
)

Identify = Callable[[ServerRequestContext[Any, Any]], Awaitable[Principal | None]]
"""Who sent this request (a verified task token), or None."""


class _Server(Server[None]):
    """The SDK's server, announcing ``tools.listChanged`` to handshake-era clients on every
    transport (the HTTP session manager builds its options without asking)."""

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        return super().create_initialization_options(
            notification_options or NotificationOptions(tools_changed=True),
            experimental_capabilities,
            extensions,
        )


class Services(Protocol):
    """What the gateway needs of an open Tribune."""

    store: Store
    clock: Clock
    settings: Settings
    governor: Governor
    policies: PolicyService
    registry: RegistryService
    approvals: ApprovalService
    secrets: SecretService
    leases: LeaseService

    @property
    def audit(self) -> Events: ...


class Gateway:
    """The catalog, the upstream connections and the MCP server that serves them."""

    def __init__(
        self,
        tr: Services,
        settings: GatewaySettings,
        identify: Identify,
        *,
        defer_results: bool = False,
    ) -> None:
        """``defer_results``: record results after the reply (see ``runners.Results``)."""
        self.tr = tr
        self.settings = settings
        self.identify = identify
        self.run = runner_for(tr.settings)
        self.results = Results(self.run)
        self._defer = defer_results
        self.catalog = Catalog()
        self.visibility = Visibility()
        # a credential source that does not exist stops the gateway here (ConfigError)
        self.upstreams = Upstreams(settings, self._on_tools, lending=Lending(tr.leases, self.run))
        self.bus = InMemorySubscriptionBus()
        # handshake-era connections, told when the tool list changes
        self._legacy: weakref.WeakSet[Connection] = weakref.WeakSet()
        self.server = _Server(
            NAME,
            version=tribune.__version__,
            instructions=INSTRUCTIONS,
            lifespan=self._lifespan,
            # P8: validating `Mcp-Param-*` headers must not run (and leak) the caller-scoped list
            get_tool_input_schema=self._input_schema,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            on_subscriptions_listen=ListenHandler(self.bus),
        )
        # P4: the 2026-07-28 request_state of an approval prompt is sealed and bound
        keys = tr.secrets.sealer.derived(KEY_LABEL)
        audience = f"spiffe://{tr.settings.trust_domain}/tribune/gateway"
        self.server.middleware.append(request_state_boundary(keys, audience))
        self.waiting = Waiting(tr.approvals, settings.approval_hold, settings.elicit)

    @asynccontextmanager
    async def _lifespan(self, _: Server[None]) -> AsyncIterator[None]:
        """Upstreams connect once per gateway process, whatever the number of agent sessions."""
        async with anyio.create_task_group() as tg:
            await self.upstreams.run(tg)
            try:
                # on exit, waits for the results still to be written
                async with self.results.deferring() if self._defer else nullcontext():
                    yield None
            finally:
                tg.cancel_scope.cancel()

    # ----------------------------------------------------------------- upstream tools

    async def _on_tools(self, upstream: str, tools: list[types.Tool] | None) -> None:
        before = [r.tool for r in self.catalog.of(upstream)]
        self.catalog = self.catalog.replaced(upstream, tools or [])
        routes = self.catalog.of(upstream)
        if routes:
            await anyio.to_thread.run_sync(self._register, routes)
        if [r.tool for r in routes] != before:
            await self._announce()

    def _register(self, routes: list[Route]) -> None:
        """Register each tool the registry does not hold yet, from its annotations; a
        ``[tools."name"]`` table applies on top of it at every decision (the facts it sets
        win, the others stay the annotations')."""
        for route in routes:
            try:
                if self.tr.store.get_tool(route.name) is not None:
                    continue
                self.tr.registry.register_tool(route.registered())
            except Exception as exc:  # the tool stays unregistered: its calls are denied
                log.warning("tool `%s` not registered: %s", route.name, type(exc).__name__)

    async def _announce(self) -> None:
        await self.bus.publish(ToolsListChanged())
        for connection in list(self._legacy):
            try:
                await connection.send_tool_list_changed()
            except Exception:  # a closed connection; it drops out of the weak set
                self._legacy.discard(connection)

    def _input_schema(self, name: str) -> dict[str, Any] | None:
        found = self.catalog.get(name)
        return dict(found.tool.input_schema) if found is not None else None

    # ----------------------------------------------------------------- handlers

    async def _caller(self, ctx: ServerRequestContext[Any, Any]) -> Principal | None:
        if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            # mcp 2.3 has no public accessor; the per-request session object does not outlive
            # the request, the connection does
            connection = getattr(ctx.session, "_connection", None)
            if isinstance(connection, Connection):
                self._legacy.add(connection)
        return await self.identify(ctx)

    async def _list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        if params is not None and params.cursor is not None:
            raise MCPError(types.INVALID_PARAMS, "unknown cursor: the whole list is one page")
        principal = await self._caller(ctx)
        if principal is None:
            return types.ListToolsResult(tools=[])
        catalog = self.catalog
        # a thread whatever the store: a first listing may evaluate many tools
        tools = await anyio.to_thread.run_sync(self._visible, principal, catalog)
        return types.ListToolsResult(tools=tools)

    def _visible(self, principal: Principal, catalog: Catalog) -> list[types.Tool]:
        """The tools ``principal``'s task could ever be allowed to call (see ``visibility``)."""
        tr = self.tr
        task = tr.store.get_task(principal.task_id or "")
        agent = tr.store.get_agent(principal.agent_id)
        if task is None or agent is None or task.agent_id != agent.id:
            return []
        if not task.is_active(tr.clock.now()):
            return []
        compiled = tr.policies.active()
        owner = _owner(tr.store, agent)
        shown: list[types.Tool] = []
        for route in catalog.routes.values():
            tool = tr.governor.effective_tool(route.name)
            if tool is None:
                continue  # unregistered: every call would be denied
            if not self.visibility.could_allow(compiled, task, agent, owner, tool):
                continue
            title = route.tool.annotations.title if route.tool.annotations else None
            shown.append(
                route.tool.model_copy(
                    update={"name": route.name, "annotations": annotations_of(tool.risk, title)}
                )
            )
        return shown

    async def _call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult | types.InputRequiredResult:
        principal = await self._caller(ctx)
        if principal is None or not principal.task_id:
            return refusal("no valid task token; nothing was run")

        async def relay(progress: float, total: float | None, message: str | None) -> None:
            await ctx.session.report_progress(progress, total, message)

        async def elicit(message: str, schema: dict[str, Any]) -> types.ElicitResult:
            return await ctx.session.elicit_form(message, schema, related_request_id=ctx.request_id)

        modern = ctx.protocol_version in MODERN_PROTOCOL_VERSIONS

        return await calls.govern(
            self.tr.governor,
            self.catalog,
            self.upstreams,
            principal,
            params.name,
            params.arguments,
            results=self.results,
            run=self.run,
            progress=relay,
            waiting=self.waiting,
            events=self.tr.audit,
            asking=Asking(
                modern=modern,
                can_elicit=_can_elicit(ctx, modern),
                progress=relay,
                elicit=None if modern else elicit,
                state=params.request_state,
                responses=dict(params.input_responses) if params.input_responses else None,
            ),
        )


def _owner(store: Store, agent: Agent) -> tuple[tuple[str, ...], str]:
    """The owner's groups and e-mail, as the governor gives them to policy."""
    if agent.owner.kind != "user":
        return (), ""
    user = store.get_user(agent.owner.name)
    return (user.groups, user.email) if user else ((), "")


def _can_elicit(ctx: ServerRequestContext[Any, Any], modern: bool) -> bool:
    """Whether the client declared form elicitation (and, handshake era, can be asked now)."""
    caps = ctx.session.client_capabilities
    found = caps.elicitation if caps is not None else None
    if found is None or (found.form is None and found.url is not None):
        return False
    return modern or ctx.session.can_send_request
