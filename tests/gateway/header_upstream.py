"""An MCP server over streamable HTTP that shows what credential reached it, for the gateway's
credential tests, run as its own process:

    python tests/gateway/header_upstream.py PORT LOG

Tools (all read-only): ``whoami`` answers with the value of the request header its argument
names (default ``authorization``) that the call came with, or ``-`` without one; ``echo``
answers with its text and nothing else; ``sleep`` answers after a while. Every HTTP request it
receives is appended to ``LOG`` as a JSON line: the HTTP method, the JSON-RPC method (if any)
and every header, so tests see what each request carried.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio
import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations

READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)
server = MCPServer("header-upstream", version="1.0")


@server.tool(annotations=READ)
def whoami(ctx: Context, header: str = "authorization") -> str:
    """The value of the request header ``header`` this call came with, or `-`."""
    request = ctx.request_context.request
    headers = getattr(request, "headers", None)
    return (headers.get(header) if headers is not None else None) or "-"


@server.tool(annotations=READ)
async def sleep(seconds: float) -> str:
    """Answer after ``seconds``."""
    await anyio.sleep(seconds)
    return "woke"


@server.tool(annotations=READ)
def echo(text: str) -> str:
    """Return the text."""
    return text


class Logged:
    """ASGI middleware: one JSON line per HTTP request, then the request as it came."""

    def __init__(self, app: Any, log: str) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = b""
        more = True
        messages = []
        while more:
            message = await receive()
            messages.append(message)
            body += message.get("body", b"")
            more = message.get("more_body", False)
        try:
            rpc = json.loads(body).get("method") if body else None
        except (ValueError, AttributeError):
            rpc = None
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        line = {"http": scope["method"], "rpc": rpc, "headers": headers}
        with open(self.log, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")

        async def replay() -> Any:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


if __name__ == "__main__":
    port, log = int(sys.argv[1]), sys.argv[2]
    app = Logged(server.streamable_http_app(), log)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
