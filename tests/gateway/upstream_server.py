"""A small MCP server for the gateway's tests, run as its own process (stdio or HTTP).

Tools: ``echo`` (read-only), ``delete`` (destructive), ``fail`` (answers with an error result),
``hang`` (never answers), ``crash`` (the process exits mid-call), ``environment`` (read-only:
the names of its environment variables) and ``grow`` (adds a tool ``extra`` and announces the
change). Every call it receives is
appended to the file named by ``CALL_LOG``, so tests can see what reached it.

    python tests/gateway/upstream_server.py             # stdio
    python tests/gateway/upstream_server.py --http PORT # streamable HTTP at /mcp
"""

from __future__ import annotations

import os
import sys
import time

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations

server = MCPServer("test-upstream", version="1.0")
READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)
DESTRUCTIVE = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False)
WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)


def _seen(name: str, detail: str = "") -> None:
    path = os.environ.get("CALL_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{time.time():.3f} {name} {detail}\n")


@server.tool(annotations=READ)
def echo(text: str) -> str:
    """Return the text."""
    _seen("echo", text)
    return text


@server.tool(annotations=DESTRUCTIVE)
def delete(path: str) -> str:
    """Delete a path (pretend)."""
    _seen("delete", path)
    return f"deleted {path}"


@server.tool(annotations=READ)
def fail(reason: str = "broken") -> str:
    """Always fails."""
    _seen("fail", reason)
    raise ToolError(f"failed on purpose: {reason}")


@server.tool(annotations=READ)
async def hang(seconds: float = 3600) -> str:
    """Sleep (for ever, by default)."""
    _seen("hang")
    try:
        await anyio.sleep(seconds)
    except anyio.get_cancelled_exc_class():
        _seen("hang-cancelled")
        raise
    return "woke"


@server.tool(annotations=WRITE)
def crash() -> str:
    """Exit the process in the middle of the call."""
    _seen("crash")
    os._exit(3)


@server.tool(annotations=READ)
def environment() -> list[str]:
    """The names of this process's environment variables, and any value holding `token`."""
    _seen("environment")
    names = sorted(os.environ)
    leaked = [k for k, v in os.environ.items() if "eyJ" in v]  # a JWT in any variable
    return [*names, *(f"LEAKED:{k}" for k in leaked)]


def extra(n: int) -> int:
    """A tool that appears later."""
    _seen("extra", str(n))
    return n + 1


@server.tool(annotations=WRITE)
async def grow(ctx: Context) -> str:
    """Add the tool `extra` and tell listeners the list changed."""
    _seen("grow")
    server.add_tool(extra, annotations=READ)
    await ctx.notify_tools_changed()
    return "grown"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
