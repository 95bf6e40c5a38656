"""Tool-list changes through the gateway, in the handshake era on either side.

``test_stdio.py`` covers a 2026-07-28 upstream (the gateway hears of changes on a
``subscriptions/listen`` stream) announcing to agents of both eras. Here the upstream itself
speaks only the handshake era: a low-level SDK server driven by ``serve_loop`` (the SDK's
handshake-only loop), so the gateway's ``mode="auto"`` client falls back to ``initialize`` and
hears of changes by ``notifications/tools/list_changed``. And over HTTP, a handshake-era agent
session is told of a change that another agent's call caused.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import mcp.types as types
import pytest

from tribune.core.model import Entitlements

from .conftest import ERAS, Home, HttpGateway, http_client, stdio_gateway, text_of

# Written to a file and run as the upstream: mcp.server.runner.serve_loop serves the
# handshake era only (a `server/discover` probe is refused, so clients fall back).
LEGACY_UPSTREAM = """
import os
import time

import anyio
import mcp.types as types
from mcp.server import Server
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.runner import serve_loop
from mcp.server.stdio import stdio_server

WRITE = types.ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
READ = types.ToolAnnotations(read_only_hint=True, open_world_hint=False)
NUMBER = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
tools = {"grow": types.Tool(name="grow", input_schema={"type": "object"}, annotations=WRITE)}


def seen(name, version):
    with open(os.environ["CALL_LOG"], "a", encoding="utf-8") as f:
        f.write(f"{time.time():.3f} {name} {version}\\n")


def text(value):
    return types.CallToolResult(content=[types.TextContent(type="text", text=value)])


async def list_tools(ctx, params):
    return types.ListToolsResult(tools=list(tools.values()))


async def call_tool(ctx, params):
    seen(params.name, ctx.protocol_version)
    if params.name == "grow":
        tools["extra"] = types.Tool(name="extra", input_schema=NUMBER, annotations=READ)
        await ctx.session.send_tool_list_changed()
        return text("grown")
    if params.name == "extra" and "extra" in tools:
        return text(str(params.arguments["n"] + 1))
    return types.CallToolResult(content=[], is_error=True)


server = Server("legacy-upstream", on_list_tools=list_tools, on_call_tool=call_tool)


async def main():
    options = server.create_initialization_options(NotificationOptions(tools_changed=True))
    async with server.lifespan(server) as state, stdio_server() as (read, write):
        await serve_loop(server, read, write, lifespan_state=state, init_options=options)


anyio.run(main)
"""


@pytest.fixture
def legacy_home(home: Home, tmp_path: Path) -> Home:
    """The home with one upstream `old` that speaks only the handshake era."""
    script = tmp_path / "legacy_upstream.py"
    script.write_text(LEGACY_UPSTREAM)
    home.config.write_text(
        f"""
[[gateway.upstreams]]
name = "old"
command = {json.dumps(sys.executable)}
args = [{json.dumps(str(script))}]
env = {{ CALL_LOG = {json.dumps(str(home.calls))} }}
timeout = 30
"""
    )
    home.tr.registry.register_agent(
        "grower",
        owner="user:alice",
        purpose="grows tool lists",
        environment="development",
        entitlements=Entitlements(tool_groups=frozenset({"old"})),
    )
    return home


@pytest.mark.parametrize("mode", ERAS)
def test_a_handshake_era_upstream_announces_a_change_to_agents(
    legacy_home: Home, mode: str
) -> None:
    home = legacy_home
    task_id, token = home.task("grower", tool_groups=["old"])
    announced = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            announced.set()

    async def body() -> None:
        async with stdio_gateway(home, token, mode, message_handler=on_message) as client:
            assert [t.name for t in (await client.list_tools()).tools] == ["old.grow"]
            if mode == "auto":
                async with client.listen(tools_list_changed=True) as sub:
                    assert text_of(await client.call_tool("old.grow", {})) == "grown"
                    with anyio.fail_after(15):
                        async for _ in sub:
                            break
            else:
                assert text_of(await client.call_tool("old.grow", {})) == "grown"
                with anyio.fail_after(15):
                    await announced.wait()
            listed = {t.name: t for t in (await client.list_tools()).tools}
            assert sorted(listed) == ["old.extra", "old.grow"]
            extra = listed["old.extra"].annotations
            assert extra is not None and extra.read_only_hint is True
            assert text_of(await client.call_tool("old.extra", {"n": 41})) == "42"

    anyio.run(body)
    lines = [line.split() for line in home.calls.read_text().splitlines()]
    assert [(name, version) for _, name, version in lines] == [
        ("grow", "2025-11-25"),  # the gateway's connection to it is in the handshake era
        ("extra", "2025-11-25"),
    ]
    extra = home.tr.store.get_tool("old.extra")
    assert extra is not None and extra.risk.read_only and extra.groups == ("old",)
    assert [r["status"] for r in home.results(task_id)] == ["ok", "ok"]


def test_a_handshake_era_http_session_is_told_of_anothers_change(
    home: Home, http_gateway: HttpGateway
) -> None:
    _, watcher = home.task(tool_groups=["up"])
    _, grower = home.task(tools=["up.grow"])
    announced = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            announced.set()

    async def body() -> None:
        async with http_client(
            http_gateway.url, watcher, "legacy", message_handler=on_message
        ) as watching:
            assert watching.protocol_version == "2025-11-25"
            assert "up.extra" not in [t.name for t in (await watching.list_tools()).tools]
            async with http_client(http_gateway.url, grower, "auto") as growing:
                assert text_of(await growing.call_tool("up.grow", {})) == "grown"
            with anyio.fail_after(15):
                await announced.wait()
            assert "up.extra" in [t.name for t in (await watching.list_tools()).tools]
            assert text_of(await watching.call_tool("up.extra", {"n": 1})) == "2"

    anyio.run(body)
    assert home.seen() == ["grow", "extra"]
