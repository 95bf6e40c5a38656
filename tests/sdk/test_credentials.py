"""Credentials injected into governed functions: lent for one allowed call, never part of the
decided or recorded arguments, revoked when the call returns."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from services.test_leases import SECRET, world
from tribune.core.model import LeaseState, RecordKind
from tribune.errors import ActionDenied, InvalidInput

from .conftest import World

__all__ = ["world"]


def bodies(world: World) -> str:
    return "".join(r.body for r in world.tr.store.records())


def test_a_secret_reaches_the_function_and_nothing_else(world: World) -> None:
    tr = world.tr
    seen: dict[str, Any] = {}

    @tr.govern("email.send", credentials={"api_key": "mailer-key"})
    def send(to: list[str], body: str, *, api_key: str) -> str:
        seen["api_key"] = api_key
        return "sent"

    with tr.task("helper", purpose="answer", tools=["email.send"]) as task:
        assert send(["alice@acme.com"], "hello") == "sent"
    assert seen["api_key"] == SECRET
    assert SECRET not in bodies(world)
    intents = [
        json.loads(r.body)["data"] for r in tr.store.records() if r.kind is RecordKind.INTENT
    ]
    assert "api_key" not in json.dumps(intents)
    (lease,) = tr.store.list_leases(task_ids=[task.id])
    assert (lease.state, lease.end_reason) == (LeaseState.REVOKED, "call_ended")
    assert lease.action_id is not None


def test_a_denied_call_borrows_nothing(world: World) -> None:
    tr = world.tr
    ran = []

    @tr.govern("email.send", credentials={"api_key": "mailer-key"})
    def send(to: list[str], body: str, api_key: str = "") -> None:
        ran.append(api_key)

    with (
        tr.task("helper", purpose="answer", tools=["email.send"]) as task,
        pytest.raises(ActionDenied),
    ):
        send(["someone@evil.example"], "exfiltrate")
    assert ran == []
    assert tr.store.list_leases(task_ids=[task.id]) == []


def test_the_caller_cannot_supply_the_credential(world: World) -> None:
    tr = world.tr

    @tr.govern("email.send", credentials={"api_key": "mailer-key"})
    def send(to: list[str], body: str, *, api_key: str) -> None:
        raise AssertionError("must not run")

    with tr.task("helper", purpose="answer", tools=["email.send"]), pytest.raises(InvalidInput):
        send(["alice@acme.com"], "hi", api_key="from-the-model")
    with pytest.raises(InvalidInput):

        @tr.govern("email.send", credentials={"missing": "mailer-key"})
        def other(to: list[str]) -> None: ...


def test_a_failed_body_still_gives_the_credential_back(world: World) -> None:
    tr = world.tr

    @tr.govern("crm.read", credentials={"token": "crm-api"})
    async def read(customer_id: str, *, token: str) -> None:
        assert token.count(".") == 2  # a compact JWS
        raise RuntimeError("upstream down")

    async def run() -> str:
        async with tr.atask("helper", purpose="look up", tools=["crm.read"]) as task:
            with pytest.raises(RuntimeError):
                await read("c-1")
            return task.id

    task_id = asyncio.run(run())
    (lease,) = tr.store.list_leases(task_ids=[task_id])
    assert lease.state is LeaseState.REVOKED
    assert tr.store.token_revoked(lease.id)


def test_an_unavailable_credential_stops_the_call(world: World) -> None:
    tr = world.tr
    tr.secrets.delete("mailer-key")

    @tr.govern("email.send", credentials={"api_key": "mailer-key"})
    def send(to: list[str], body: str, *, api_key: str) -> None:
        raise AssertionError("must not run")

    with tr.task("helper", purpose="answer", tools=["email.send"]), pytest.raises(InvalidInput):
        send(["alice@acme.com"], "hi")
    results = [
        json.loads(r.body)["data"] for r in tr.store.records() if r.kind is RecordKind.RESULT
    ]
    assert [r["status"] for r in results] == ["error"]
