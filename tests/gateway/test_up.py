"""The gateway served by ``tribune up``: the API and MCP at ``/mcp`` on one host and port.

In-process, the worker app (``http.server.factory``) is served by uvicorn on a thread, exactly
as a ``tribune up`` worker builds it; ``tribune up`` itself runs as a subprocess for the
command's choices (upstreams configured or not, ``--no-gateway``, several workers).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import anyio
import httpx2
import pytest
from typer.testing import CliRunner

from tribune.cli.main import app as cli
from tribune.errors import ConfigError
from tribune.gateway.mount import mount
from tribune.http import server
from tribune.http.app import create_app

from .conftest import ERAS, SRC, Home, free_port, gateway_toml, http_client, served, text_of
from .test_http import post


def configure(home: Home) -> None:
    """Give the home's own tribune.toml the test upstream (``url`` left at its default). A
    worker starts once the upstream is connected or its timeout passed: allow for a slow host."""
    config = home.path / "tribune.toml"
    config.write_text(config.read_text() + gateway_toml(home.calls, timeout=30))


@contextmanager
def worker(home: Home, monkeypatch: pytest.MonkeyPatch, *, gateway: bool) -> Iterator[str]:
    """A ``tribune up`` worker in this process; yields its base URL."""
    port = free_port()
    monkeypatch.setenv(server.HOME_ENV, str(home.path))
    monkeypatch.delenv(server.LOG_ENV, raising=False)
    monkeypatch.delenv(server.STATELESS_ENV, raising=False)
    if gateway:
        monkeypatch.setenv(server.GATEWAY_ENV, f"127.0.0.1:{port}")
    else:
        monkeypatch.delenv(server.GATEWAY_ENV, raising=False)
    with served(server.factory(), port):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def up(home: Home, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    configure(home)
    with worker(home, monkeypatch, gateway=True) as base:
        yield base


@pytest.mark.parametrize("mode", ERAS)
def test_the_api_and_governed_calls_on_one_port(home: Home, up: str, mode: str) -> None:
    assert httpx2.get(f"{up}/healthz", timeout=30).json()["status"] == "ok"
    task_id, token = home.task(tools=["up.echo"])

    async def body() -> None:
        async with http_client(f"{up}/mcp", token, mode) as client:
            assert [t.name for t in (await client.list_tools()).tools] == ["up.echo"]
            assert text_of(await client.call_tool("up.echo", {"text": "via up"})) == "via up"
            denied = await client.call_tool("up.delete", {"path": "/"})
            assert denied.is_error and "intent-tool-not-in-scope" in text_of(denied)

    anyio.run(body)
    assert home.seen() == ["echo"]
    assert [d["effect"] for d in home.decisions(task_id)] == ["allow", "deny"]
    assert [r["status"] for r in home.results(task_id)] == ["ok"]
    # the API still answers for the same task, with the same token
    task = httpx2.get(
        f"{up}/v1/tasks/{task_id}", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert task.status_code == 200 and task.json()["id"] == task_id


def test_mcp_takes_task_tokens_only(home: Home, up: str) -> None:
    missing = post(f"{up}/mcp", None)
    assert missing.status_code == 401
    metadata_url = f"{up}/.well-known/oauth-protected-resource/mcp"
    assert f'resource_metadata="{metadata_url}"' in missing.headers["www-authenticate"]
    doc = httpx2.get(metadata_url, timeout=30).json()
    assert doc["resource"] == f"{up}/mcp"  # `url` left at its default: where up listens
    assert doc["authorization_servers"] == [f"{up}/"]

    admin = home.tr.access.ensure_admin()
    assert admin is not None
    as_admin = {"Authorization": f"Bearer {admin}"}
    assert httpx2.get(f"{up}/v1/agents", headers=as_admin, timeout=30).is_success
    assert post(f"{up}/mcp", admin).status_code == 401  # an API key is not a task token
    _, token = home.task(tools=["up.echo"])
    assert post(f"{up}/mcp", token).status_code == 200


def test_the_api_keeps_its_routes_and_answers(up: str) -> None:
    assert httpx2.get(f"{up}/v1/agents", timeout=30).json()["code"] == "unauthenticated"
    unknown = httpx2.get(f"{up}/nothing-here", timeout=30)
    assert unknown.status_code == 404 and unknown.json()["code"] == "not_found"
    paths = httpx2.get(f"{up}/openapi.json", timeout=30).json()["paths"]
    assert "/mcp" not in paths and "/healthz" in paths
    post(f"{up}/mcp", None)  # measured under its own route, like the API's
    assert 'route="/mcp",status="401"' in httpx2.get(f"{up}/metrics", timeout=30).text


def test_a_worker_without_the_gateway_serves_no_mcp(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(home)
    with worker(home, monkeypatch, gateway=False) as base:
        assert httpx2.get(f"{base}/healthz", timeout=30).status_code == 200
        assert post(f"{base}/mcp", None).status_code == 404
        well_known = httpx2.get(f"{base}/.well-known/oauth-protected-resource/mcp", timeout=30)
        assert well_known.status_code == 404
    assert home.seen() == []


# --------------------------------------------------------------------------- tribune up


UP = (sys.executable, "-m", "tribune.cli.main", "up")


@contextmanager
def tribune_up(home: Home, *args: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``tribune up`` on a free port; yields its base URL once /healthz answers."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIBUNE_")}
    env["PYTHONPATH"] = str(SRC)
    proc = subprocess.Popen(
        [*UP, "--home", str(home.path), "--port", str(port), "--log-level", "warning", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx2.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("tribune up did not start")
            time.sleep(0.1)
        yield base, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_tribune_up_serves_the_gateway_with_several_workers(home: Home) -> None:
    configure(home)
    task_id, token = home.task(tools=["up.echo"])
    with tribune_up(home, "--workers", "2") as (base, proc):

        async def body() -> None:
            # New connections, any worker answers; handshake-era sessions too (stateless then).
            for mode in ERAS * 2:
                async with http_client(f"{base}/mcp", token, mode) as client:
                    assert [t.name for t in (await client.list_tools()).tools] == ["up.echo"]
                    assert text_of(await client.call_tool("up.echo", {"text": "w"})) == "w"

        anyio.run(body)
        assert post(f"{base}/mcp", None).status_code == 401
    out = proc.stdout.read() if proc.stdout else ""
    assert f"MCP gateway on {base}/mcp  (1 upstream(s))" in out
    assert [r["status"] for r in home.results(task_id)] == ["ok"] * 4


def test_no_gateway_turns_it_off(home: Home) -> None:
    configure(home)
    with tribune_up(home, "--no-gateway") as (base, proc):
        assert post(f"{base}/mcp", None).status_code == 404
    assert "MCP gateway" not in (proc.stdout.read() if proc.stdout else "")
    assert home.seen() == []


def test_no_upstreams_no_gateway(home: Home) -> None:
    with tribune_up(home) as (base, _):
        assert post(f"{base}/mcp", None).status_code == 404
        assert httpx2.get(f"{base}/.well-known/oauth-protected-resource/mcp").status_code == 404


def test_without_the_sdk_up_warns_and_serves_the_api(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(home)
    served: list[Any] = []
    monkeypatch.setattr(server, "serve", served.append)
    monkeypatch.setitem(sys.modules, "tribune.gateway.mount", None)  # import fails
    result = CliRunner().invoke(cli, ["up", "--home", str(home.path)])
    assert result.exit_code == 0, result.output
    assert "MCP SDK is not installed; serving the API alone" in result.output
    assert "pip install 'tribune[gateway]'" in result.output
    assert [options.gateway for options in served] == [False]


def test_up_asks_for_the_gateway_only_with_upstreams(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: list[Any] = []
    monkeypatch.setattr(server, "serve", served.append)
    runner = CliRunner()
    assert runner.invoke(cli, ["up", "--home", str(home.path)]).exit_code == 0
    configure(home)
    assert runner.invoke(cli, ["up", "--home", str(home.path)]).exit_code == 0
    assert runner.invoke(cli, ["up", "--home", str(home.path), "--no-gateway"]).exit_code == 0
    assert [options.gateway for options in served] == [False, True, False]


def test_the_gateway_path_must_be_free(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    config = home.path / "tribune.toml"
    toml = gateway_toml(home.calls).replace("8710/mcp", "8700/healthz")
    config.write_text(config.read_text() + toml)
    served: list[Any] = []
    monkeypatch.setattr(server, "serve", served.append)
    result = CliRunner().invoke(cli, ["up", "--home", str(home.path)])
    assert result.exit_code != 0 and not served
    assert "the gateway's path `/healthz` is taken by the API" in result.output
    # the same check, where a worker mounts it
    with pytest.raises(ConfigError, match="taken by the API"):
        settings = replace(home.settings, url="http://127.0.0.1:8700/v1/tasks/mcp")
        mount(create_app(home.tr).router.routes, home.tr, settings, host="127.0.0.1")
