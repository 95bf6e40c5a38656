"""The gateway over stdio, driven by the official `mcp` client in both protocol eras, in front of
real upstream processes. Each test spawns `python -m tribune.gateway` as an MCP host would."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import anyio
import mcp.types as types
import pytest
from mcp import Client, StdioServerParameters

from tribune.core.model import RecordKind, RiskFacts, Tool

from .conftest import ERAS, HAS_TIME, SRC, Home, gateway_toml, stdio_gateway, text_of


async def until(check: Callable[[], Any], seconds: float = 15) -> Any:
    """Poll ``check`` until it returns something truthy (records written by another process)."""
    with anyio.fail_after(seconds):
        while not (found := check()):
            await anyio.sleep(0.1)
    return found


@pytest.mark.parametrize("mode", ERAS)
def test_allowed_calls_are_forwarded_and_recorded(home: Home, mode: str) -> None:
    task_id, token = home.task(tools=["up.echo"])

    async def body() -> None:
        async with stdio_gateway(home, token, mode) as client:
            assert client.protocol_version == ("2026-07-28" if mode == "auto" else "2025-11-25")
            result = await client.call_tool("up.echo", {"text": "hello"})
            assert not result.is_error and text_of(result) == "hello"

    anyio.run(body)
    assert home.seen() == ["echo"]
    kinds = [(k, d.get("effect"), d.get("status")) for k, _, d in home.records(task_id)]
    assert kinds[1:] == [
        (RecordKind.INTENT, None, None),
        (RecordKind.DECISION, "allow", None),
        (RecordKind.RESULT, None, "ok"),
    ]
    intent = home.records(task_id)[1][2]
    assert intent["tool"] == "up.echo" and intent["arguments"] == {"text": "hello"}
    assert home.results(task_id)[0]["output_digest"]
    assert len({a for _, a, _ in home.records(task_id)[1:]}) == 1  # one action id


@pytest.mark.parametrize("mode", ERAS)
def test_denied_calls_never_reach_the_upstream(home: Home, mode: str) -> None:
    task_id, token = home.task(tools=["up.echo"])

    async def body() -> None:
        async with stdio_gateway(home, token, mode) as client:
            result = await client.call_tool("up.delete", {"path": "/etc"})
            assert result.is_error
            text = text_of(result)
            assert text.startswith("Tribune: `up.delete` denied by intent-tool-not-in-scope")
            assert "the call did not run" in text

    anyio.run(body)
    assert home.seen() == []
    (decision,) = home.decisions(task_id)
    assert decision["effect"] == "deny" and decision["policy_ids"] == ["intent-tool-not-in-scope"]
    assert home.results(task_id) == []  # nothing ran, so no result


def test_approval_required_calls_wait_for_a_ticket_then_run_once(home: Home) -> None:
    task_id, token = home.task(tool_groups=["up"], environment="production")
    args = {"path": "/srv/data"}

    async def body() -> None:
        async with stdio_gateway(home, token, "auto") as client:
            pending = await client.call_tool("up.delete", args)
            assert pending.is_error and "pending human approval" in text_of(pending)
            assert home.seen() == []
            ticket = home.decisions(task_id)[0]["ticket"]
            for approver in ("bob", "carol"):  # production-destructive-approval: two people
                await anyio.to_thread.run_sync(
                    lambda who=approver: home.tr.approvals.vote(ticket, who, True)
                )
            ran = await client.call_tool("up.delete", args)  # the same call, retried
            assert not ran.is_error and text_of(ran) == "deleted /srv/data"
            again = await client.call_tool("up.delete", args)  # a ticket authorises one call
            assert again.is_error and "pending human approval" in text_of(again)

    anyio.run(body)
    assert home.seen() == ["delete"]
    first, retried, again = home.decisions(task_id)
    assert first["effect"] == "approval_required" and first["ticket"]
    assert retried["effect"] == "allow" and retried["approved_by_ticket"] == first["ticket"]
    assert again["effect"] == "approval_required" and again["ticket"] != first["ticket"]
    assert [r["status"] for r in home.results(task_id)] == ["ok"]


@pytest.mark.parametrize("mode", ERAS)
def test_unknown_tools_and_bad_arguments_forward_nothing(home: Home, mode: str) -> None:
    task_id, token = home.task(open_scope=True)

    async def body() -> None:
        async with stdio_gateway(home, token, mode) as client:
            for name, args, expected in [
                ("up.nope", {}, "unknown tool `up.nope`"),
                ("nope", {}, "unknown tool `nope`"),
                ("up.echo", {}, "'text' is a required property"),
                ("up.echo", {"text": 5}, "5 is not of type 'string' (at `/text`)"),
                ("up.echo", {"text": "x" * (1 << 20)}, "the arguments exceed"),
            ]:
                result = await client.call_tool(name, args)
                assert result.is_error, name
                assert expected in text_of(result), text_of(result)
                assert "nothing was run" in text_of(result)
            assert not (await client.call_tool("up.echo", {"text": "ok"})).is_error

    anyio.run(body)
    assert home.seen() == ["echo"]  # only the good call
    assert [d["tool"] for d in home.decisions(task_id)] == ["up.echo"]  # nothing else stored


@pytest.mark.parametrize("mode", ERAS)
def test_upstream_errors_are_recorded_and_the_gateway_keeps_serving(home: Home, mode: str) -> None:
    task_id, token = home.task(tools=["up.fail", "up.echo"])

    async def body() -> None:
        async with stdio_gateway(home, token, mode) as client:
            failed = await client.call_tool("up.fail", {"reason": "disk full"})
            assert failed.is_error and "failed on purpose: disk full" in text_of(failed)
            assert (
                text_of(await client.call_tool("up.echo", {"text": "still here"})) == "still here"
            )

    anyio.run(body)
    assert home.seen() == ["fail", "echo"]
    failed, ok = home.results(task_id)
    assert (failed["status"], failed["error"]) == ("error", "error_result")
    assert "disk full" not in str(failed)  # the upstream's message stays out of the audit log
    assert ok["status"] == "ok"


def test_a_hanging_upstream_times_out_and_the_outcome_is_unknown(home: Home) -> None:
    task_id, token = home.task(tools=["up.hang", "up.echo"])

    async def body() -> None:
        async with stdio_gateway(home, token, "auto") as client:
            started = time.monotonic()
            result = await client.call_tool("up.hang", {})
            assert result.is_error
            assert "upstream `up` did not answer within 3 s" in text_of(result)
            assert "its outcome is unknown" in text_of(result)
            assert 2.5 < time.monotonic() - started < 15
            assert text_of(await client.call_tool("up.echo", {"text": "alive"})) == "alive"

    anyio.run(body)
    hang, echo = home.results(task_id)
    assert (hang["status"], hang["error"]) == ("unknown", "timeout")
    assert echo["status"] == "ok"


def test_an_upstream_that_crashes_mid_call_is_recorded_and_restarted(home: Home) -> None:
    task_id, token = home.task(tools=["up.crash", "up.echo"])

    async def body() -> None:
        async with stdio_gateway(home, token, "auto") as client:
            crashed = await client.call_tool("up.crash", {})
            assert crashed.is_error and "its outcome is unknown" in text_of(crashed)

            async def echo() -> bool:
                result = await client.call_tool("up.echo", {"text": "back"})
                return not result.is_error

            with anyio.fail_after(20):  # the gateway restarts the upstream process
                while not await echo():
                    await anyio.sleep(0.2)

    anyio.run(body)
    results = home.results(task_id)
    assert (results[0]["status"], results[0]["error"]) == ("unknown", "connection_lost")
    assert results[-1]["status"] == "ok"
    assert home.seen().count("crash") == 1


def test_an_upstream_that_cannot_start_leaves_the_others_serving(home: Home) -> None:
    home.config.write_text(
        home.config.read_text()
        + '\n[[gateway.upstreams]]\nname = "gone"\ncommand = "/nonexistent/mcp-server"\n'
    )
    _, token = home.task(tools=["up.echo"])

    async def body() -> None:
        async with stdio_gateway(home, token, "auto") as client:
            assert [t.name for t in (await client.list_tools()).tools] == ["up.echo"]
            missing = await client.call_tool("gone.anything", {})
            assert "upstream `gone` is not connected" in text_of(missing)
            assert text_of(await client.call_tool("up.echo", {"text": "fine"})) == "fine"

    anyio.run(body)


def test_a_cancelled_call_is_recorded_and_cancelled_upstream(home: Home) -> None:
    task_id, token = home.task(tools=["up.hang", "up.echo"])

    async def body() -> None:
        async with stdio_gateway(home, token, "auto") as client:
            with anyio.move_on_after(1.0):
                await client.call_tool("up.hang", {"seconds": 60})
                pytest.fail("the call should have been cancelled")
            await until(lambda: home.results(task_id))
            await until(lambda: "hang-cancelled" in home.seen())
            assert text_of(await client.call_tool("up.echo", {"text": "after"})) == "after"

    anyio.run(body)
    cancelled, ok = home.results(task_id)
    assert cancelled["status"] == "cancelled" and ok["status"] == "ok"


@pytest.mark.parametrize("mode", ERAS)
def test_tools_list_shows_what_the_task_could_use(home: Home, mode: str) -> None:
    _, declared = home.task(tools=["up.echo", "up.delete"])
    _, grouped = home.task(tool_groups=["up"])
    _, reader = home.task("reader", tools=["up.echo"])

    async def names(token: str) -> dict[str, types.Tool]:
        async with stdio_gateway(home, token, mode) as client:
            return {t.name: t for t in (await client.list_tools()).tools}

    async def body() -> None:
        listed = await names(declared)
        assert sorted(listed) == ["up.delete", "up.echo"]
        echo, delete = listed["up.echo"], listed["up.delete"]
        assert echo.annotations is not None and echo.annotations.read_only_hint is True
        assert delete.annotations is not None and delete.annotations.destructive_hint is True
        assert echo.input_schema["required"] == ["text"]  # the upstream's schema, verbatim
        assert sorted(await names(grouped)) == sorted(
            f"up.{t}" for t in ("echo", "delete", "fail", "hang", "crash", "environment", "grow")
        )
        assert sorted(await names(reader)) == ["up.echo"]

    anyio.run(body)


def test_tools_are_registered_from_annotations_and_configuration_applies_on_top(home: Home) -> None:
    # an admin registered `up.grow` already (it wins), and configures one fact of `up.delete`
    home.tr.registry.register_tool(Tool("up.grow", risk=RiskFacts(), groups=("ops",)))
    assert home.tr.store.get_tool("up.echo") is None
    toml = home.path / "tribune.toml"
    toml.write_text(toml.read_text() + '\n[tools."up.delete"]\nread_only = true\n')
    _, token = home.task(open_scope=True)

    async def body() -> None:
        async with stdio_gateway(home, token, "auto") as client:
            listed = {t.name: t for t in (await client.list_tools()).tools}
            annotations = listed["up.delete"].annotations
            assert annotations is not None and annotations.read_only_hint is True  # config
            assert annotations.open_world_hint is False  # the rest: its annotations
            grow = listed["up.grow"].annotations  # the upstream says: not destructive
            assert grow is not None and grow.destructive_hint is True  # the registry wins

    anyio.run(body)
    store = home.tr.store
    echo = store.get_tool("up.echo")
    assert echo is not None and echo.groups == ("up",)
    assert echo.risk == RiskFacts(read_only=True, destructive=False, open_world=False)
    # registered from its annotations; the configured fact applied on top of them when listed
    delete = store.get_tool("up.delete")
    assert delete is not None and delete.groups == ("up",) and not delete.risk.read_only
    grow = store.get_tool("up.grow")
    assert grow is not None and grow.groups == ("ops",)  # left as the admin registered it


def test_the_agent_token_never_reaches_the_upstream(home: Home) -> None:
    _, token = home.task(tools=["up.environment"])

    async def body() -> None:
        async with stdio_gateway(home, token, "auto") as client:
            result = await client.call_tool("up.environment", {})
            assert not result.is_error
            names = [c.text for c in result.content if isinstance(c, types.TextContent)]
            listed = " ".join(names)
            assert "TRIBUNE_TASK_TOKEN" not in listed and "LEAKED" not in listed
            assert "CALL_LOG" in listed  # what its configuration gives it

    anyio.run(body)


@pytest.mark.parametrize("mode", ERAS)
def test_tool_list_changes_are_picked_up_and_announced(home: Home, mode: str) -> None:
    _, token = home.task(tool_groups=["up"])
    announced = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            announced.set()

    async def body() -> None:
        async with stdio_gateway(home, token, mode, message_handler=on_message) as client:
            names = [t.name for t in (await client.list_tools()).tools]
            assert "up.extra" not in names
            if mode == "auto":
                async with client.listen(tools_list_changed=True) as sub:
                    assert not (await client.call_tool("up.grow", {})).is_error
                    with anyio.fail_after(15):
                        async for _ in sub:
                            break
            else:
                assert not (await client.call_tool("up.grow", {})).is_error
                with anyio.fail_after(15):
                    await announced.wait()
            names = [t.name for t in (await client.list_tools()).tools]
            assert "up.extra" in names
            assert text_of(await client.call_tool("up.extra", {"n": 41})) == "42"

    anyio.run(body)
    extra = home.tr.store.get_tool("up.extra")
    assert extra is not None and extra.risk.read_only


def test_mcp_server_time_behind_the_gateway(home: Home) -> None:
    if not HAS_TIME:  # it is in the `test` extra
        if os.environ.get("CI"):
            pytest.fail("mcp-server-time is required in CI")
        pytest.skip("mcp-server-time is not installed")
    home.config.write_text(gateway_toml(home.calls, time_server=True))
    task_id, token = home.task(tools=["time.get_current_time", "up.echo"])

    async def body() -> None:
        async with stdio_gateway(home, token, "legacy") as client:
            listed = sorted(t.name for t in (await client.list_tools()).tools)
            assert listed == ["time.get_current_time", "up.echo"]
            result = await client.call_tool("time.get_current_time", {"timezone": "Europe/Paris"})
            assert not result.is_error and "Europe/Paris" in text_of(result)
            convert = {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"}
            denied = await client.call_tool("time.convert_time", convert)
            assert denied.is_error and "intent-tool-not-in-scope" in text_of(denied)

    anyio.run(body)
    tool = home.tr.store.get_tool("time.get_current_time")
    assert tool is not None and tool.risk.read_only and not tool.risk.open_world
    assert [r["status"] for r in home.results(task_id)] == ["ok"]


def run_gateway(home: Home, token: str | None) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(SRC), "PATH": os.environ.get("PATH", "")}
    if token is not None:
        env["TRIBUNE_TASK_TOKEN"] = token
    command = ["-m", "tribune.gateway", "--home", str(home.path), "--config", str(home.config)]
    return subprocess.run(
        [sys.executable, *command],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_missing_or_invalid_token_is_refused_before_serving(home: Home) -> None:
    task_id, token = home.task(tools=["up.echo"])
    home.tr.tasks.end(task_id)
    for given in (None, "", "not-a-token", token[:-4] + "AAAA", token):
        done = run_gateway(home, given)
        assert done.returncode == 2, given
        assert "no valid task token in `TRIBUNE_TASK_TOKEN`" in done.stderr
        assert done.stdout == ""
        if given:
            assert given not in done.stderr
    refused = [
        r
        for r in home.tr.store.find_records(kinds=[RecordKind.EVENT], limit=1000)
        if "auth_refused" in r.body
    ]
    assert len(refused) == 3  # every presented token was checked and its refusal recorded
    assert home.seen() == []


def test_a_token_that_stops_being_valid_stops_working(home: Home) -> None:
    task_id, token = home.task(tools=["up.echo"])

    async def body() -> None:
        async with stdio_gateway(home, token, "auto") as client:
            assert not (await client.call_tool("up.echo", {"text": "1"})).is_error
            await anyio.to_thread.run_sync(home.tr.tasks.end, task_id)
            refused = await client.call_tool("up.echo", {"text": "2"})
            assert refused.is_error and "no valid task token" in text_of(refused)
            assert (await client.list_tools()).tools == []

    anyio.run(body)
    assert home.seen() == ["echo"]


def test_the_tribune_gateway_command_reads_the_homes_config(home: Home) -> None:
    """What a newcomer runs: `tribune gateway` with `[[gateway.upstreams]]` in tribune.toml."""
    with (home.path / "tribune.toml").open("a", encoding="utf-8") as handle:
        handle.write("\n" + home.config.read_text())
    task_id, token = home.task(tools=["up.echo"])
    env = {"PYTHONPATH": str(SRC), "PATH": os.environ.get("PATH", ""), "TRIBUNE_TASK_TOKEN": token}
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "tribune.cli.main", "gateway", "--home", str(home.path)],
        env=env,
    )

    async def body() -> None:
        async with Client(params, cache=None) as client:
            listed = [t.name for t in (await client.list_tools()).tools]
            assert listed == ["up.echo"]
            result = await client.call_tool("up.echo", {"text": "hi"})
            assert not result.is_error

    anyio.run(body)
    assert [r["status"] for r in home.results(task_id)] == ["ok"]
