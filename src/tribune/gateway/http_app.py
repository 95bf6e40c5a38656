"""The gateway over streamable HTTP: a Starlette app, Tribune as an OAuth 2.1 resource server.

Every request carries the agent's task token as a bearer token. The SDK's auth middleware runs
``TaskTokenVerifier`` on it (a refusal is ``401`` with ``WWW-Authenticate: Bearer ...
resource_metadata=...``) and serves the RFC 9728 protected-resource metadata at
``/.well-known/oauth-protected-resource<path>``. The token's audience is Tribune's own
(``spiffe://<trust domain>/tribune``), checked by the verifier itself, so the SDK's resource
comparison is off (``validate_token_resource=False``, the SDK's setting for verifiers that check
the audience themselves). Upstreams connect once, when the app starts.

Both protocol eras are served: 2026-07-28 clients (stateless, per-request) and handshake-era
clients (stateful sessions, which the SDK binds to the principal that opened them).
"""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import urlsplit

from mcp.server import ServerRequestContext
from mcp.server.auth.settings import AuthSettings
from pydantic import AnyHttpUrl
from starlette.applications import Starlette

from tribune.gateway.auth import TaskTokenVerifier, bearer_principal
from tribune.gateway.config import GatewaySettings
from tribune.gateway.server import Gateway, Services
from tribune.services.identity import IdentityService, Principal
from tribune.services.tokens import TokenService


class HttpServices(Services, Protocol):
    identity: IdentityService
    tokens: TokenService


def create_app(
    tr: HttpServices, settings: GatewaySettings, *, host: str = "127.0.0.1"
) -> Starlette:
    """The gateway's ASGI app, serving MCP at the path of ``settings.url``. ``host`` is where it
    listens: a localhost name turns the SDK's DNS-rebinding protection on."""
    return create_gateway_app(tr, settings, host=host)[1]


def create_gateway_app(
    tr: HttpServices,
    settings: GatewaySettings,
    *,
    host: str = "127.0.0.1",
    stateless: bool = False,
) -> tuple[Gateway, Starlette]:
    """``create_app``, with the ``Gateway`` behind it (for tests and embedding). ``stateless``
    serves handshake-era clients without sessions too (a session lives in one process: several
    processes behind one port need this), at the cost of ``tools/list_changed`` notifications."""

    async def identify(_: ServerRequestContext[Any, Any]) -> Principal | None:
        return bearer_principal()

    gw = Gateway(tr, settings, identify)
    app = gw.server.streamable_http_app(
        streamable_http_path=urlsplit(settings.url).path or "/mcp",
        host=host,
        stateless_http=stateless,
        auth=AuthSettings(
            issuer_url=AnyHttpUrl(settings.issuer_url),
            resource_server_url=AnyHttpUrl(settings.url),
            validate_token_resource=False,
        ),
        token_verifier=TaskTokenVerifier(tr.identity, tr.tokens.audience, gw.run),
    )
    return gw, app
