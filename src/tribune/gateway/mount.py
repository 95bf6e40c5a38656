"""The gateway inside ``tribune up``: MCP over streamable HTTP on the API's host and port.

Each worker process builds its own ``Gateway`` (``http_app.create_gateway_app``) and routes the
gateway app's paths to it (``/mcp`` and its RFC 9728 metadata,
``/.well-known/oauth-protected-resource/mcp``); every other path stays the API's. The whole
gateway app answers those paths, so its bearer task-token auth applies there and the API's
keys do not. A mounted app's lifespan does not run by itself: ``mount`` returns it for the
API's lifespan to enter, so upstreams connect when the worker starts and close before its store.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from typing import Any

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Scope

from tribune.errors import ConfigError
from tribune.gateway.config import DEFAULT_ISSUER_URL, DEFAULT_URL, GatewaySettings
from tribune.gateway.http_app import HttpServices, create_gateway_app

Lifespan = Callable[[], AbstractAsyncContextManager[Any]]


def served(settings: GatewaySettings, host: str, port: int) -> GatewaySettings:
    """``settings`` with the URLs left at their defaults pointing where ``tribune up`` listens:
    the gateway at ``/mcp``, the token issuer (Tribune's API) at the root."""
    base = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    if settings.url == DEFAULT_URL:
        settings = replace(settings, url=f"{base}/mcp")
    if settings.issuer_url == DEFAULT_ISSUER_URL:
        settings = replace(settings, issuer_url=base)
    return settings


class GatewayRoute(Route):
    """One of the gateway's paths on the API's router, handed to the whole gateway app. It
    names itself in the scope, so the API's request metrics and logs show its path."""

    def __init__(self, path: str, app: Starlette) -> None:
        super().__init__(path, app, include_in_schema=False)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is not Match.NONE:
            child["route"] = self
        return match, child


def mount(
    routes: list[BaseRoute],
    tr: HttpServices,
    settings: GatewaySettings,
    *,
    host: str,
    stateless: bool = False,
) -> Lifespan:
    """Add the gateway's paths to ``routes`` (an API router's); return the gateway's lifespan.
    ``stateless`` when several worker processes share the port (see ``create_gateway_app``).
    A gateway path that an API route would answer is a configuration error."""
    _, app = create_gateway_app(tr, settings, host=host, stateless=stateless)
    for route in app.routes:
        path = getattr(route, "path", "")
        probe = {"type": "http", "path": path, "root_path": "", "method": "POST"}
        if any(r.matches(probe)[0] is not Match.NONE for r in routes):
            raise ConfigError(
                f"the gateway's path `{path}` is taken by the API",
                hint="set `gateway.url` to a URL whose path is free, e.g. `.../mcp`",
            )
        routes.append(GatewayRoute(path, app))
    return lambda: app.router.lifespan_context(app)
