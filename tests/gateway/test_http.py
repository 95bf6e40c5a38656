"""The gateway over streamable HTTP (uvicorn on a thread, the official client over httpx2): the
task token as a bearer token on every request, RFC 9728 metadata, both protocol eras, and an
upstream that itself speaks streamable HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import jwt
import pytest

from tribune.core.model import Entitlements, RecordKind

from .conftest import (
    ERAS,
    SRC,
    UPSTREAM,
    Home,
    HttpGateway,
    free_port,
    http_client,
    stdio_gateway,
    text_of,
)

INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "probe", "version": "0"},
    },
}
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def post(url: str, token: str | None) -> httpx2.Response:
    headers = dict(HEADERS)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx2.post(url, headers=headers, content=json.dumps(INIT), timeout=30)


def refusals(home: Home) -> list[dict[str, Any]]:
    found = home.tr.store.find_records(kinds=[RecordKind.EVENT], limit=1000)
    bodies = [json.loads(r.body)["data"] for r in found]
    return [b for b in bodies if b.get("event") == "auth_refused"]


def test_requests_without_a_valid_task_token_get_401(home: Home, http_gateway: HttpGateway) -> None:
    url = http_gateway.url
    base = url.removesuffix("/mcp")
    missing = post(url, None)
    assert missing.status_code == 401
    challenge = missing.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert f'resource_metadata="{base}/.well-known/oauth-protected-resource/mcp"' in challenge

    metadata = httpx2.get(f"{base}/.well-known/oauth-protected-resource/mcp", timeout=30)
    assert metadata.status_code == 200
    doc = metadata.json()
    assert doc["resource"] == url
    assert doc["authorization_servers"] == [home.settings.issuer_url + "/"]

    task_id, token = home.task(tools=["up.echo"])
    claims = jwt.decode(token, options={"verify_signature": False})
    elsewhere = home.tr.token_keys.sign({**claims, "aud": url})  # signed, but not for Tribune
    agent = home.tr.registry.resolve_agent("helper")
    ended_id, ended = home.task(tools=["up.echo"])
    home.tr.tasks.end(ended_id)
    for bad in ("garbage", token[:-4] + "AAAA", elsewhere, ended):
        response = post(url, bad)
        assert response.status_code == 401, bad
        assert bad not in response.text
    reasons = [r["reason"] for r in refusals(home)]
    assert reasons == ["malformed", "bad_signature", "wrong_audience", "task_inactive"]
    assert agent.id in {r.get("sub") for r in refusals(home)}
    assert post(url, token).status_code == 200
    assert home.seen() == []
    assert task_id


@pytest.mark.parametrize("mode", ERAS)
def test_governed_calls_over_http(home: Home, http_gateway: HttpGateway, mode: str) -> None:
    task_id, token = home.task(tools=["up.echo", "up.environment"])

    async def body() -> None:
        async with http_client(http_gateway.url, token, mode) as client:
            listed = sorted(t.name for t in (await client.list_tools()).tools)
            assert listed == ["up.echo", "up.environment"]
            assert text_of(await client.call_tool("up.echo", {"text": "over http"})) == "over http"
            denied = await client.call_tool("up.delete", {"path": "/"})
            assert denied.is_error and "intent-tool-not-in-scope" in text_of(denied)
            env = text_of(await client.call_tool("up.environment", {}))
            assert "LEAKED" not in env and "TRIBUNE_TASK_TOKEN" not in env

    anyio.run(body)
    assert home.seen() == ["echo", "environment"]
    assert [d["effect"] for d in home.decisions(task_id)] == ["allow", "deny", "allow"]
    assert [r["status"] for r in home.results(task_id)] == ["ok", "ok"]
    assert {r.agent_id for r in home.tr.store.find_records(task_id=task_id, limit=100)} == {
        home.tr.registry.resolve_agent("helper").id
    }


def test_each_request_is_decided_for_its_own_token(home: Home, http_gateway: HttpGateway) -> None:
    helper_task, helper = home.task(tool_groups=["up"])
    reader_task, reader = home.task("reader", tools=["up.echo"])

    async def body() -> None:
        async with (
            http_client(http_gateway.url, helper, "auto") as first,
            http_client(http_gateway.url, reader, "auto") as second,
        ):
            assert len((await first.list_tools()).tools) == 7
            assert [t.name for t in (await second.list_tools()).tools] == ["up.echo"]
            assert not (await second.call_tool("up.echo", {"text": "r"})).is_error
            assert not (await first.call_tool("up.echo", {"text": "h"})).is_error
            refused = await second.call_tool("up.fail", {})
            assert refused.is_error and "intent-tool-not-in-scope" in text_of(refused)

    anyio.run(body)
    assert [d["effect"] for d in home.decisions(reader_task)] == ["allow", "deny"]
    assert [d["effect"] for d in home.decisions(helper_task)] == ["allow"]


@pytest.fixture
def http_upstream(tmp_path: Path) -> Iterator[str]:
    """``upstream_server.py`` serving streamable HTTP in its own process."""
    port = free_port()
    calls = tmp_path / "http-calls.log"
    proc = subprocess.Popen(
        [sys.executable, str(UPSTREAM), "--http", str(port)],
        env={"CALL_LOG": str(calls), "PYTHONPATH": str(SRC), "PATH": ""},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx2.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx2.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the HTTP upstream did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_an_http_upstream(home: Home, http_upstream: str) -> None:
    home.config.write_text(f'[[gateway.upstreams]]\nname = "web"\nurl = "{http_upstream}"\n')
    home.tr.registry.register_agent(
        "web-agent",
        owner="user:alice",
        purpose="web",
        environment="development",
        entitlements=Entitlements(tools=frozenset({"web.echo", "web.delete"})),
    )
    web_task, web_token = home.task("web-agent", tools=["web.echo"])

    async def body() -> None:
        async with stdio_gateway(home, web_token, "auto") as client:
            assert [t.name for t in (await client.list_tools()).tools] == ["web.echo"]
            assert text_of(await client.call_tool("web.echo", {"text": "via http"})) == "via http"
            denied = await client.call_tool("web.delete", {"path": "/"})
            assert denied.is_error

    anyio.run(body)
    assert [r["status"] for r in home.results(web_task)] == ["ok"]


def test_the_entry_point_serves_http(home: Home) -> None:
    port = free_port()
    served = ["--home", str(home.path), "--config", str(home.config), "--http", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tribune.gateway", *served],
        env={"PYTHONPATH": str(SRC), "PATH": ""},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                doc = httpx2.get(f"{base}/.well-known/oauth-protected-resource/mcp", timeout=1)
                break
            except httpx2.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the gateway did not start") from None
                time.sleep(0.1)
        assert doc.json()["resource"] == f"{base}/mcp"  # no `url` configured: where it listens
        assert post(f"{base}/mcp", None).status_code == 401
        _, token = home.task(tools=["up.echo"])
        assert post(f"{base}/mcp", token).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=15)
