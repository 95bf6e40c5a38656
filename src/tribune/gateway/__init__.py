"""The MCP gateway: govern any MCP client's tool calls to admin-configured MCP servers.

``parse_gateway`` reads the ``[gateway]`` settings; ``stdio.serve`` and ``http_app.create_app``
serve the gateway over an open Tribune. Built on the official ``mcp`` SDK (an optional
dependency: nothing outside this package imports it).
"""

from __future__ import annotations

from tribune.gateway.config import GatewaySettings, UpstreamSettings, parse_gateway

__all__ = ["GatewaySettings", "UpstreamSettings", "parse_gateway"]
