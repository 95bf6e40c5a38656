"""The embedded SDK: ``@tr.govern`` on sync and async functions, ``tr.task`` and ``tr.check``.

Every test runs against a real store (SQLite and PostgreSQL) and the default Cedar pack. A
governed body counts its runs, so "never ran" is asserted, not assumed.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import tribune
from tribune.core.canonical import keyed_digest
from tribune.core.model import Effect, Entitlements, RiskFacts, TaskState, Tool
from tribune.errors import ConfigError, InvalidInput
from tribune.sdk.governed import current_task

from .conftest import World

MODES = ["sync", "async"]


def governed(tr: Any, tool: str, mode: str, body: Callable[..., Any]) -> Callable[..., Any]:
    """``body`` governed as ``tool``, as a sync function or (``mode="async"``) as a coroutine
    function run by ``asyncio.run``. The async wrapper keeps ``body``'s signature."""
    if mode == "sync":
        fn: Callable[..., Any] = tr.govern(tool)(body)
        return fn

    @functools.wraps(body)
    async def async_body(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0)  # really suspend once inside the body
        return body(*args, **kwargs)

    afn = tr.govern(tool)(async_body)

    def call(*args: Any, **kwargs: Any) -> Any:
        return asyncio.run(afn(*args, **kwargs))

    return call


def action(world: World, action_id: str | None = None) -> list[dict[str, Any]]:
    """The records of one action (default: the latest one)."""
    records = world.records()
    if action_id is None:
        action_id = [r for r in records if r["kind"] == "intent"][-1]["action_id"]
    return [r for r in records if r["action_id"] == action_id]


def kinds(records: list[dict[str, Any]]) -> list[str]:
    return [r["kind"] for r in records]


# --------------------------------------------------------------------------- outcomes


@pytest.mark.parametrize("mode", MODES)
def test_allowed_call_runs_and_records_its_result(world: World, mode: str) -> None:
    calls: list[str] = []

    def read_customer(customer_id: str) -> dict[str, str]:
        calls.append(customer_id)
        return {"name": "Ada"}

    fn = governed(world.tr, "crm.read", mode, read_customer)
    with world.tr.task("helper", purpose="look up a customer", tools=["crm.read"]) as task:
        assert fn("42") == {"name": "Ada"}
    assert calls == ["42"]
    records = action(world)
    assert kinds(records) == ["intent", "decision", "result"]
    intent, decision, result = (r["data"] for r in records)
    assert intent["tool"] == "crm.read" and intent["arguments"] == {"customer_id": "42"}
    assert decision["effect"] == "allow"
    assert result["status"] == "ok"
    key = (world.home / "keys" / "digest.secret").read_bytes()
    assert result["output_digest"] == keyed_digest({"name": "Ada"}, key)
    assert "error" not in result
    assert {r["task_id"] for r in records} == {task.id}
    assert world.tr.store.get_task(task.id).session.calls == 1  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", MODES)
def test_denied_call_raises_with_the_decision_and_never_runs(world: World, mode: str) -> None:
    ran: list[int] = []

    def send(to: list[str], body: str) -> None:
        ran.append(1)

    fn = governed(world.tr, "email.send", mode, send)
    with (
        world.tr.task("helper", purpose="read only", tools=["crm.read"]),
        pytest.raises(tribune.ActionDenied) as info,
    ):
        fn(["bob@acme.com"], "hello")
    err = info.value
    assert not isinstance(err, tribune.ApprovalRequired)
    assert err.code == "action_denied"
    assert err.decision.effect is tribune.Effect.DENY
    assert "intent-tool-not-in-scope" in err.decision.policy_ids
    assert "intent-tool-not-in-scope" in err.message
    assert ran == []
    records = action(world, err.action_id)
    assert kinds(records) == ["intent", "decision"]  # no result: nothing ran
    assert records[1]["data"]["effect"] == "deny"


@pytest.mark.parametrize("mode", MODES)
def test_approval_required_raises_with_quorum_and_never_runs(world: World, mode: str) -> None:
    ran: list[str] = []

    def drop(table: str) -> None:
        ran.append(table)

    fn = governed(world.tr, "db.drop", mode, drop)
    with (
        world.tr.task("ops", purpose="clean up sessions", tool_groups=["database"]),
        pytest.raises(tribune.ApprovalRequired) as info,
    ):
        fn("sessions")
    err = info.value
    assert isinstance(err, tribune.ActionDenied)  # callers catching denials catch this too
    assert err.code == "approval_required"
    assert err.decision.effect is tribune.Effect.APPROVAL_REQUIRED
    assert err.decision.approval == tribune.ApprovalRequirement(2, ("approvers",), False)
    assert "2 approval(s)" in str(err) and "approvers" in str(err)
    assert ran == []
    records = action(world, err.action_id)
    # intent, decision, the ticket the call waited on, and its closing when the task ended
    assert kinds(records) == ["intent", "decision", "event", "event"]
    assert records[1]["data"]["approval"]["quorum"] == 2
    assert records[2]["data"]["event"] == "approval_requested"
    assert records[2]["data"]["ticket"] == records[1]["data"]["ticket"] == err.ticket_id
    assert records[3]["data"]["event"] == "approval_expired"
    assert records[3]["data"]["reason"] == "task_ended"


@pytest.mark.parametrize("mode", MODES)
def test_exception_in_body_is_reraised_and_recorded_without_its_message(
    world: World, mode: str
) -> None:
    boom = LookupError("customer 42 pays with card 4111 1111 1111 1111")

    def read_customer(customer_id: str) -> None:
        raise boom

    fn = governed(world.tr, "crm.read", mode, read_customer)
    with (
        world.tr.task("helper", purpose="look up a customer", tools=["crm.read"]) as task,
        pytest.raises(LookupError) as info,
    ):
        fn("42")
    assert info.value is boom
    records = action(world)
    assert kinds(records) == ["intent", "decision", "result"]
    result = records[2]["data"]
    assert result["status"] == "error" and result["error"] == "LookupError"
    assert "output_digest" not in result
    dumped = json.dumps(world.records())
    assert "4111 1111" not in dumped and "pays with card" not in dumped
    # a failed call does not count as a completed one
    assert world.tr.store.get_task(task.id).session.calls == 0  # type: ignore[union-attr]


def test_cancelled_async_call_records_cancelled_and_reraises(world: World) -> None:
    tr = world.tr

    async def main() -> None:
        inside = asyncio.Event()

        @tr.govern("crm.read")
        async def slow_read(customer_id: str) -> None:
            inside.set()
            await asyncio.Event().wait()  # never set: only cancellation ends this

        job = asyncio.create_task(slow_read("7"))
        await inside.wait()
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job

    with tr.task("helper", purpose="look up a customer", tools=["crm.read"]):
        asyncio.run(main())
    records = action(world)
    assert kinds(records) == ["intent", "decision", "result"]
    assert records[2]["data"]["status"] == "cancelled"
    assert "error" not in records[2]["data"]


@pytest.mark.parametrize("mode", MODES)
def test_keyboard_interrupt_in_body_records_cancelled(world: World, mode: str) -> None:
    def read_customer(customer_id: str) -> None:
        raise KeyboardInterrupt

    fn = governed(world.tr, "crm.read", mode, read_customer)
    with (
        world.tr.task("helper", purpose="look up a customer", tools=["crm.read"]),
        pytest.raises(KeyboardInterrupt),
    ):
        fn("1")
    records = action(world)
    assert kinds(records) == ["intent", "decision", "result"]
    assert records[2]["data"]["status"] == "cancelled"


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize("mode", MODES)
def test_arguments_are_bound_by_signature_with_defaults(world: World, mode: str) -> None:
    def update(
        ticket_id: str, status: str = "open", *, note: str = "", notify: bool = False
    ) -> str:
        return f"{ticket_id}:{status}"

    fn = governed(world.tr, "ticket.update", mode, update)
    with world.tr.task("helper", purpose="update a ticket", tools=["ticket.update"]):
        assert fn("T-1", note="called back") == "T-1:open"
        assert fn(ticket_id="T-2", status="closed", notify=True) == "T-2:closed"
    intents = [r["data"]["arguments"] for r in world.records() if r["kind"] == "intent"]
    assert intents[-2:] == [
        {"ticket_id": "T-1", "status": "open", "note": "called back", "notify": False},
        {"ticket_id": "T-2", "status": "closed", "note": "", "notify": True},
    ]


BAD_CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    ((), {}),  # missing a required argument
    (("T-1", "open", "a note"), {}),  # keyword-only passed by position
    (("T-1",), {"colour": "red"}),  # no such parameter
    ((object(),), {}),  # not a JSON value
]


def test_bad_arguments_raise_invalid_input_and_record_nothing(world: World) -> None:
    ran: list[int] = []

    @world.tr.govern("ticket.update")
    def update(ticket_id: Any, status: str = "open", *, note: str = "") -> None:
        ran.append(1)

    with world.tr.task("helper", purpose="update a ticket", tools=["ticket.update"]):
        before = world.tr.store.count()
        for args, kwargs in BAD_CALLS:
            with pytest.raises(InvalidInput) as info:
                update(*args, **kwargs)
            assert info.value.code == "invalid_input"
        assert world.tr.store.count() == before
    assert ran == []


def test_tool_name_defaults_to_the_function_name(world: World) -> None:
    @world.tr.govern()
    def lookup(key: str) -> str:
        """Look a key up."""
        raise AssertionError("an unknown tool must not run")

    assert lookup.__name__ == "lookup" and lookup.__doc__ == "Look a key up."
    with (
        world.tr.task("helper", purpose="anything", open_scope=True),
        pytest.raises(tribune.ActionDenied) as info,
    ):
        lookup("k")
    assert info.value.decision.tool == "lookup"
    assert [e.code for e in info.value.decision.errors] == ["unknown_tool"]


def test_generator_functions_cannot_be_governed(world: World) -> None:
    """A generator's body runs only when iterated, after its result would be recorded."""

    def rows(table: str) -> Iterator[str]:
        yield table

    async def async_rows(table: str) -> AsyncIterator[str]:
        yield table

    for fn in (rows, async_rows):
        with pytest.raises(InvalidInput, match="generator"):
            world.tr.govern("crm.read")(fn)


# --------------------------------------------------------------------------- current task


@pytest.mark.parametrize("mode", MODES)
def test_no_current_task_raises_invalid_input_and_records_nothing(world: World, mode: str) -> None:
    ran: list[str] = []

    def read_customer(customer_id: str) -> None:
        ran.append(customer_id)

    fn = governed(world.tr, "crm.read", mode, read_customer)
    before = world.tr.store.count()
    with pytest.raises(InvalidInput) as info:
        fn("1")
    assert info.value.code == "invalid_input"
    assert world.tr.store.count() == before
    assert ran == []
    with pytest.raises(InvalidInput):
        world.tr.check("crm.read", {"customer_id": "1"})
    assert world.tr.store.count() == before


def test_task_context_is_current_inside_and_ends_on_exit(world: World) -> None:
    assert current_task.get() is None
    with world.tr.task("helper", purpose="look up a customer", tools=["crm.read"]) as task:
        assert current_task.get() == task.id
        assert world.tr.tasks.get(task.id).state is TaskState.ACTIVE
    assert current_task.get() is None
    ended = world.tr.tasks.get(task.id)
    assert ended.state is TaskState.ENDED and ended.ended_at == world.clock.now()
    events = [r for r in world.records() if r["task_id"] == task.id and r["kind"] == "event"]
    assert [e["data"]["event"] for e in events] == ["task_started", "task_ended"]


def test_task_ends_even_when_the_block_raises(world: World) -> None:
    ran: list[int] = []

    def read_customer(customer_id: str) -> None:
        ran.append(1)

    with (
        pytest.raises(RuntimeError, match="agent crashed"),
        world.tr.task("helper", purpose="look up", tools=["crm.read"]) as task,
    ):
        raise RuntimeError("agent crashed")
    assert current_task.get() is None
    assert world.tr.tasks.get(task.id).state is TaskState.ENDED
    # the ended task cannot be used again, even when named explicitly
    with pytest.raises(tribune.ActionDenied) as info:
        world.tr.govern("crm.read", task=task.id)(read_customer)("1")
    assert [e.code for e in info.value.decision.errors] == ["task_inactive"]
    assert ran == []


def test_explicit_task_wins_over_the_current_one(world: World) -> None:
    other = world.tr.start_task("helper", purpose="the other task", tools=["crm.read"])

    @world.tr.govern("crm.read", task=other.id)
    def read_customer(customer_id: str) -> str:
        return customer_id

    with world.tr.task("helper", purpose="current task", tools=["crm.read"]) as current:
        assert read_customer("1") == "1"
        assert {r["task_id"] for r in action(world)} == {other.id}
        verdict = world.tr.check("crm.read", {"customer_id": "2"}, task=other.id)
        assert verdict.task_id == other.id
        assert world.tr.check("crm.read", {"customer_id": "3"}).task_id == current.id


def test_nested_tasks_restore_the_outer_one(world: World) -> None:
    @world.tr.govern("crm.read")
    def read_customer(customer_id: str) -> str | None:
        return current_task.get()

    with world.tr.task("helper", purpose="outer", tools=["crm.read"]) as outer:
        with world.tr.task("helper", purpose="inner", tools=["crm.read"]) as inner:
            assert read_customer("1") == inner.id
            assert {r["task_id"] for r in action(world)} == {inner.id}
        # the inner task ended; the outer one is current again
        assert world.tr.tasks.get(inner.id).state is TaskState.ENDED
        assert world.tr.tasks.get(outer.id).state is TaskState.ACTIVE
        assert read_customer("2") == outer.id
        assert {r["task_id"] for r in action(world)} == {outer.id}


def test_concurrent_asyncio_tasks_each_see_their_own_task(world: World) -> None:
    tr = world.tr
    seen: dict[str, tuple[str, str | None]] = {}

    @tr.govern("crm.read")
    async def read_customer(customer_id: str) -> str | None:
        await asyncio.sleep(0)
        return current_task.get()

    async def worker(name: str, entered: list[str], both_inside: asyncio.Event) -> None:
        with tr.task("helper", purpose=f"worker {name}", tools=["crm.read"]) as task:
            entered.append(name)
            if len(entered) == 2:
                both_inside.set()
            await both_inside.wait()  # both tasks are current, each in its own context
            seen[name] = (task.id, await read_customer(name))

    async def main() -> None:
        entered: list[str] = []
        both_inside = asyncio.Event()
        await asyncio.gather(worker("a", entered, both_inside), worker("b", entered, both_inside))
        assert current_task.get() is None

    asyncio.run(main())
    (a_task, a_seen), (b_task, b_seen) = seen["a"], seen["b"]
    assert a_task != b_task and a_seen == a_task and b_seen == b_task
    intents = {
        r["data"]["arguments"]["customer_id"]: r["task_id"]
        for r in world.records()
        if r["kind"] == "intent"
    }
    assert intents == {"a": a_task, "b": b_task}


def test_child_asyncio_task_inherits_but_cannot_change_the_parents_task(world: World) -> None:
    tr = world.tr

    async def main() -> None:
        with tr.task("helper", purpose="parent", tools=["crm.read"]) as outer:

            async def child() -> tuple[str | None, str | None, str]:
                inherited = current_task.get()
                with tr.task("helper", purpose="child", tools=["crm.read"]) as inner:
                    await asyncio.sleep(0)
                    return inherited, current_task.get(), inner.id

            inherited, inside, inner_id = await asyncio.create_task(child())
            assert inherited == outer.id and inside == inner_id != outer.id
            assert current_task.get() == outer.id

    asyncio.run(main())


# --------------------------------------------------------------------------- check


def test_check_decides_and_records_without_running(world: World) -> None:
    with world.tr.task("helper", purpose="look up", tools=["crm.read"]) as task:
        allowed = world.tr.check("crm.read", {"customer_id": "1"})
        denied = world.tr.check("email.send", {"to": ["bob@acme.com"], "body": "hi"})
    assert allowed.allowed and allowed.task_id == task.id and allowed.tool == "crm.read"
    assert denied.decision.effect is Effect.DENY  # a verdict, not an exception
    assert kinds(action(world, allowed.action_id)) == ["intent", "decision"]
    assert kinds(action(world, denied.action_id)) == ["intent", "decision"]


# --------------------------------------------------------------------------- tribune.open


def test_open_creates_a_home_on_first_use_and_reuses_it(tmp_path: Path) -> None:
    home = tmp_path / "nested" / "home"
    with tribune.open(home) as tr:
        assert tr.home == home.resolve()
        assert (home / "tribune.toml").is_file() and (home / "tribune.db").is_file()
        version = tr.store.active_policy_version()
        assert version is not None
        tr.registry.add_group("ops")
    keys = {
        p.relative_to(home / "keys").as_posix(): p.read_bytes()
        for p in (home / "keys").rglob("*")
        if p.is_file()
    }
    with tribune.open(home) as again:
        reused = again.store.active_policy_version()
        assert reused is not None and reused.id == version.id
        assert again.store.get_group("ops") is not None
        assert len(again.store.list_policy_versions()) == 1
    assert {
        p.relative_to(home / "keys").as_posix(): p.read_bytes()
        for p in (home / "keys").rglob("*")
        if p.is_file()
    } == keys


def test_open_defaults_to_tribune_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIBUNE_HOME", str(tmp_path / "from-env"))
    with tribune.open() as tr:
        assert tr.home == (tmp_path / "from-env").resolve()
    assert (tmp_path / "from-env" / "tribune.toml").is_file()


def test_open_without_create_refuses_a_missing_home(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        tribune.open(tmp_path / "missing", create=False)
    assert info.value.code == "config_invalid" and info.value.hint
    assert not (tmp_path / "missing").exists()


def test_open_end_to_end_with_the_system_clock(tmp_path: Path) -> None:
    with tribune.open(tmp_path / "home") as tr:
        tr.registry.add_user("alice")
        tr.registry.register_tool(
            Tool("notes.read", risk=RiskFacts(read_only=True, destructive=False, open_world=False))
        )
        tr.registry.register_agent(
            "bot",
            owner="user:alice",
            purpose="reads notes",
            environment="development",
            entitlements=Entitlements(
                tools=frozenset({"notes.read"}), environments=frozenset({"development"})
            ),
        )

        @tr.govern("notes.read")
        def read_note(note_id: str) -> str:
            return f"note {note_id}"

        with tr.task("bot", purpose="read a note", tools=["notes.read"]):
            assert read_note("n1") == "note n1"
        assert tr.audit.verify().ok
