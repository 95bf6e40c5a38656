"""The gateway's key paths with the Tribune home on PostgreSQL: each test's home lives in a
PostgreSQL schema of its own (``pg_dsn``), the gateway process opens it from ``tribune.toml``.
Skipped when no server answers, failed when ``CI`` is set (see ``tests/conftest.py``).

Only the paths that touch the store differently are repeated here (decide and record, deny,
approve and retry, list): the rest of the gateway's tests run on SQLite.
"""

from __future__ import annotations

from functools import partial

import anyio
import pytest

from tribune.core.model import RecordKind

from .conftest import Home, HttpGateway, http_client, stdio_gateway, text_of

pytestmark = pytest.mark.postgres


@pytest.fixture
def home_store_url(pg_dsn: str) -> str:
    return pg_dsn


def on_postgres(home: Home) -> None:
    assert home.tr.settings.store_url.startswith("postgresql")
    assert not (home.path / "tribune.db").exists()  # nothing fell back to SQLite


def kinds(home: Home, task_id: str) -> list[tuple[RecordKind, str | None, str | None]]:
    return [(k, d.get("effect"), d.get("status")) for k, _, d in home.records(task_id)][1:]


ALLOWED = [
    (RecordKind.INTENT, None, None),
    (RecordKind.DECISION, "allow", None),
    (RecordKind.RESULT, None, "ok"),
]
DENIED = [(RecordKind.INTENT, None, None), (RecordKind.DECISION, "deny", None)]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_stdio_on_postgres(home: Home, mode: str) -> None:
    on_postgres(home)
    task_id, token = home.task(tools=["up.echo"])

    async def body() -> None:
        async with stdio_gateway(home, token, mode) as client:
            # the upstream has seven tools; the task declared one
            assert [t.name for t in (await client.list_tools()).tools] == ["up.echo"]
            result = await client.call_tool("up.echo", {"text": "on postgres"})
            assert not result.is_error and text_of(result) == "on postgres"
            denied = await client.call_tool("up.delete", {"path": "/srv"})
            assert denied.is_error and "intent-tool-not-in-scope" in text_of(denied)

    anyio.run(body)
    assert home.seen() == ["echo"]  # the denied call never reached the upstream
    assert kinds(home, task_id) == ALLOWED + DENIED
    intent = home.records(task_id)[1][2]
    assert intent["tool"] == "up.echo" and intent["arguments"] == {"text": "on postgres"}
    # the gateway registered the upstream's tools in PostgreSQL
    echo = home.tr.store.get_tool("up.echo")
    assert echo is not None and echo.risk.read_only and echo.groups == ("up",)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_http_on_postgres(home: Home, http_gateway: HttpGateway, mode: str) -> None:
    on_postgres(home)
    task_id, token = home.task(tools=["up.echo", "up.delete"])
    _, grouped = home.task(tool_groups=["up"])
    _, reader = home.task("reader", tools=["up.echo"])  # an agent entitled to `up.echo` only

    async def body() -> None:
        async with http_client(http_gateway.url, token, mode) as client:
            listed = sorted(t.name for t in (await client.list_tools()).tools)
            assert listed == ["up.delete", "up.echo"]
            result = await client.call_tool("up.echo", {"text": "over http"})
            assert not result.is_error and text_of(result) == "over http"
            denied = await client.call_tool("up.fail", {})  # not in the task's scope
            assert denied.is_error and "intent-tool-not-in-scope" in text_of(denied)
        async with http_client(http_gateway.url, grouped, mode) as client:
            assert len((await client.list_tools()).tools) == 7  # the whole `up` group
        async with http_client(http_gateway.url, reader, mode) as client:
            assert [t.name for t in (await client.list_tools()).tools] == ["up.echo"]

    anyio.run(body)
    assert home.seen() == ["echo"]
    assert kinds(home, task_id) == ALLOWED + DENIED


def test_an_approved_call_runs_once_on_postgres(home: Home) -> None:
    on_postgres(home)
    task_id, token = home.task(tool_groups=["up"], environment="production")
    args = {"path": "/srv/data"}

    async def body() -> None:
        async with stdio_gateway(home, token, "auto") as client:
            pending = await client.call_tool("up.delete", args)
            assert pending.is_error and "pending human approval" in text_of(pending)
            assert home.seen() == []
            ticket = home.decisions(task_id)[0]["ticket"]
            for approver in ("bob", "carol"):
                await anyio.to_thread.run_sync(
                    partial(home.tr.approvals.vote, ticket, approver, True)
                )
            ran = await client.call_tool("up.delete", args)
            assert not ran.is_error and text_of(ran) == "deleted /srv/data"

    anyio.run(body)
    assert home.seen() == ["delete"]
    first, retried = home.decisions(task_id)
    assert first["effect"] == "approval_required"
    assert retried["effect"] == "allow" and retried["approved_by_ticket"] == first["ticket"]
    assert [r["status"] for r in home.results(task_id)] == ["ok"]
