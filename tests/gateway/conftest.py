"""A Tribune home with agents and the default policy pack, a gateway configuration naming real
upstream processes (``upstream_server.py`` and, when installed, ``mcp-server-time``), and
helpers to start the gateway over stdio or streamable HTTP and talk to it with the official
``mcp`` client. Nothing is faked: upstreams are processes, the store is SQLite on disk, or
PostgreSQL where a module overrides ``home_store_url`` (``test_postgres.py``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
import uvicorn
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from tribune.bootstrap import Tribune, init_home, open_tribune
from tribune.core.model import Entitlements, RecordKind
from tribune.gateway.config import GatewaySettings, parse_gateway

HERE = Path(__file__).parent
UPSTREAM = HERE / "upstream_server.py"
SRC = HERE.parent.parent / "src"
HAS_TIME = importlib.util.find_spec("mcp_server_time") is not None
UP_TOOLS = ("echo", "delete", "fail", "hang", "crash", "environment", "grow", "extra")
TIME_TOOLS = ("get_current_time", "convert_time")
ERAS = ["auto", "legacy"]  # 2026-07-28 (the SDK's default) and the handshake era


def gateway_toml(calls: Path, *, time_server: bool = False, timeout: float = 3) -> str:
    out = f"""
[gateway]
url = "http://127.0.0.1:8710/mcp"

[[gateway.upstreams]]
name = "up"
command = {json.dumps(sys.executable)}
args = [{json.dumps(str(UPSTREAM))}]
env = {{ CALL_LOG = {json.dumps(str(calls))}, PYTHONPATH = {json.dumps(str(SRC))} }}
timeout = {timeout}
"""
    if time_server:
        out += f"""
[[gateway.upstreams]]
name = "time"
command = {json.dumps(sys.executable)}
args = ["-m", "mcp_server_time", "--local-timezone", "UTC"]
timeout = 10
"""
    return out


@dataclass
class Home:
    tr: Tribune
    path: Path
    config: Path
    calls: Path
    settings: GatewaySettings = field(init=False)

    def __post_init__(self) -> None:
        import tomllib

        self.settings = parse_gateway(tomllib.loads(self.config.read_text()))

    def task(self, agent: str = "helper", **scope: Any) -> tuple[str, str]:
        """(task id, task token) of a new task."""
        scope.setdefault("purpose", "gateway test")
        task = self.tr.start_task(agent, **scope)
        found = self.tr.registry.resolve_agent(agent)
        return task.id, self.tr.tokens.issue(task, found, str(found.owner))

    def seen(self) -> list[str]:
        """The tool names the test upstream received calls for, in order."""
        if not self.calls.exists():
            return []
        return [line.split()[1] for line in self.calls.read_text().splitlines() if line.strip()]

    def records(self, task_id: str) -> list[tuple[RecordKind, str | None, dict[str, Any]]]:
        """(kind, action id, data) of the task's audit records, in order."""
        found = self.tr.store.find_records(task_id=task_id, limit=1000)
        return [(r.kind, r.action_id, json.loads(r.body)["data"]) for r in found]

    def results(self, task_id: str) -> list[dict[str, Any]]:
        return [d for k, _, d in self.records(task_id) if k is RecordKind.RESULT]

    def decisions(self, task_id: str) -> list[dict[str, Any]]:
        return [d for k, _, d in self.records(task_id) if k is RecordKind.DECISION]


def _populate(tr: Tribune) -> None:
    reg = tr.registry
    reg.add_group("approvers")
    reg.add_user("alice", email="alice@acme.com")
    reg.add_user("bob", email="bob@acme.com", groups=("approvers",))
    reg.add_user("carol", email="carol@acme.com", groups=("approvers",))
    names = {f"up.{t}" for t in UP_TOOLS} | {f"time.{t}" for t in TIME_TOOLS}
    reg.register_agent(
        "helper",
        owner="user:alice",
        purpose="testing the gateway",
        environment="development",
        entitlements=Entitlements(
            tools=frozenset(names),
            tool_groups=frozenset({"up", "time"}),
            environments=frozenset({"development", "production"}),
            open_scope=True,
        ),
    )
    reg.register_agent(
        "reader",
        owner="user:alice",
        purpose="reads only",
        environment="development",
        entitlements=Entitlements(tools=frozenset({"up.echo"})),
    )


@pytest.fixture
def home_store_url() -> str:
    """The store of ``home``: "" for SQLite in the home; a module overrides this fixture to
    name another (``test_postgres.py`` gives each test a PostgreSQL schema of its own)."""
    return ""


@pytest.fixture
def home(tmp_path: Path, home_store_url: str) -> Iterator[Home]:
    path = tmp_path / "home"
    if home_store_url:  # written before init, so the home is created in that store
        path.mkdir(mode=0o700)
        (path / "tribune.toml").write_text(f"[store]\nurl = {json.dumps(home_store_url)}\n")
    init_home(path)
    tr = open_tribune(path)
    _populate(tr)
    calls = tmp_path / "calls.log"
    config = tmp_path / "gateway.toml"
    config.write_text(gateway_toml(calls))
    yield Home(tr, path, config, calls)
    tr.close()


# --------------------------------------------------------------------------- stdio


def stdio_params(home: Home, token: str | None) -> StdioServerParameters:
    env = {"PYTHONPATH": str(SRC), "PATH": os.environ.get("PATH", "")}
    if token is not None:
        env["TRIBUNE_TASK_TOKEN"] = token
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "tribune.gateway", "--home", str(home.path), "--config", str(home.config)],
        env=env,
    )


@asynccontextmanager
async def stdio_gateway(
    home: Home, token: str | None, mode: str, **kw: Any
) -> AsyncIterator[Client]:
    async with Client(stdio_params(home, token), mode=mode, cache=None, **kw) as client:
        yield client


# --------------------------------------------------------------------------- HTTP


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class HttpGateway:
    url: str
    server: uvicorn.Server
    thread: threading.Thread


@contextmanager
def served(app: Any, port: int) -> Iterator[tuple[uvicorn.Server, threading.Thread]]:
    """``app`` served by uvicorn on a thread of this process at 127.0.0.1:``port``."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the HTTP server did not start")
        time.sleep(0.05)
    try:
        yield server, thread
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture
def http_gateway(home: Home) -> Iterator[HttpGateway]:
    """The gateway app in this process, served by uvicorn on a thread."""
    from dataclasses import replace

    from tribune.gateway.http_app import create_app

    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    app = create_app(home.tr, replace(home.settings, url=url))
    with served(app, port) as (server, thread):
        yield HttpGateway(url, server, thread)


@asynccontextmanager
async def http_client(url: str, token: str | None, mode: str, **kw: Any) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode=mode, cache=None, **kw) as client:
            yield client


def text_of(result: Any) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)
