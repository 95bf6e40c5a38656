"""`tribune up` in its own process, and the Python client in this one: the same decorator as
the embedded SDK, decisions made by the service."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import tribune
from tribune import ActionDenied, ApprovalRequired, TribuneError
from tribune.sdk.remote import Client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    home: Path
    process: subprocess.Popen[str]
    admin: Client
    agent_key: str


def start_server(home: Path, *extra: str) -> tuple[subprocess.Popen[str], str, str | None]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tribune.cli.main",
            "up",
            "--home",
            str(home),
            "--port",
            str(port),
            "--log-format",
            "text",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "300"},
    )
    url = f"http://127.0.0.1:{port}"
    token = None
    deadline = time.monotonic() + 60
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        if line.strip().startswith("trb_"):
            token = line.strip()
        if "Tribune on http" in line and token is None and "--again" in extra:
            break
        if token is not None or "Application startup complete" in line:
            break
    drain(process)
    for _ in range(200):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url, token
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("tribune up did not come up: " + (process.stdout.read() or ""))


LOGS: dict[int, list[str]] = {}


def drain(process: subprocess.Popen[str]) -> None:
    """Keep reading the server's output (a full pipe would block it); lines kept in LOGS."""
    lines = LOGS.setdefault(process.pid, [])

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()


def stopped_gracefully(process: subprocess.Popen[str]) -> bool:
    """uvicorn drains, runs shutdown, then re-raises the signal: exit status -SIGTERM."""
    code = process.wait(timeout=30)
    time.sleep(0.2)
    text = "".join(LOGS.get(process.pid, []))
    return code in (0, -signal.SIGTERM) and "Finished server process" in text


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("remote") / "home"
    process, url, token = start_server(home)
    assert token, "the first run prints an admin key"
    admin = tribune.connect(url, api_key=token)
    admin.post("/v1/groups", {"name": "support"})
    admin.post("/v1/users", {"name": "alice", "email": "alice@acme.com", "groups": ["support"]})
    admin.backend.request(
        "PUT",
        "/v1/tools/crm.read",
        {"risk": {"read_only": True, "destructive": False, "open_world": False}, "groups": ["crm"]},
    )
    admin.backend.request(
        "PUT",
        "/v1/tools/email.send",
        {
            "risk": {"read_only": False, "destructive": False, "open_world": True},
            "groups": ["email"],
            "extractors": [{"kind": "email", "pointer": "/to", "target": True}],
        },
    )
    admin.post(
        "/v1/agents",
        {
            "name": "helper",
            "owner": "user:alice",
            "purpose": "support",
            "environment": "development",
            "entitlements": {"tools": ["crm.read", "email.send"]},
        },
    )
    key = admin.post("/v1/keys", {"principal": "agent:helper", "role": "agent"})["token"]
    yield Server(url, home, process, admin, key)
    admin.close()
    if process.poll() is None:
        process.kill()
        process.wait()


def test_a_client_in_another_process_governs_a_function(server: Server) -> None:
    tr = tribune.connect(server.url, api_key=server.agent_key)
    ran: list[str] = []

    @tr.govern("crm.read")
    def read_customer(customer_id: str) -> dict[str, str]:
        ran.append(customer_id)
        return {"id": customer_id, "name": "Ada"}

    @tr.govern("email.send")
    def send(to: str, body: str) -> None:
        ran.append(to)

    with tr.task("helper", purpose="answer ticket 42", tools=["crm.read"]) as task:
        assert read_customer("42") == {"id": "42", "name": "Ada"}
        with pytest.raises(ActionDenied) as denied:
            send("x@elsewhere.example", "hi")  # out of this task's scope
    assert ran == ["42"]
    assert denied.value.decision.policy_ids
    records = server.admin.get(f"/v1/audit/records?task={task.id}")["records"]
    kinds = [r["kind"] for r in records if r["action_id"]]
    assert kinds == ["intent", "decision", "result", "intent", "decision"]
    assert server.admin.get(f"/v1/tasks/{task.id}")["state"] == "ended"
    tr.close()


def test_approval_required_raises_and_nothing_runs(server: Server) -> None:
    tr = tribune.connect(server.url, api_key=server.agent_key)
    ran: list[str] = []

    @tr.govern("email.send")
    def send(to: str, body: str) -> None:
        ran.append(to)

    with (
        tr.task("helper", purpose="write to a stranger", tools=["email.send"]),
        pytest.raises(ApprovalRequired) as pending,
    ):
        send("stranger@elsewhere.example", "hi")
    assert ran == []
    assert pending.value.decision.approval is not None
    assert pending.value.ticket_id
    tr.close()


def test_a_remote_call_waits_for_a_person_in_another_process(server: Server) -> None:
    admin = server.admin
    admin.post("/v1/users", {"name": "bob", "email": "bob@acme.com"})
    bob_key = admin.post("/v1/keys", {"principal": "user:bob", "role": "approver"})["token"]
    bob = tribune.connect(server.url, api_key=bob_key)
    tr = tribune.connect(server.url, api_key=server.agent_key)
    ran: list[str] = []

    @tr.govern("email.send", approval_wait=30)
    def send(to: str, body: str) -> str:
        ran.append(to)
        return "sent"

    with tr.task("helper", purpose="write to a stranger", tools=["email.send"]) as task:

        def approve_when_asked() -> None:
            for _ in range(200):
                found = bob.get(f"/v1/approvals?state=pending&task={task.id}")
                if found:
                    bob.post(f"/v1/approvals/{found[0]['id']}/approve", {"reason": "known"})
                    return
                time.sleep(0.05)

        voter = threading.Thread(target=approve_when_asked)
        voter.start()
        assert send("new-partner@elsewhere.example", "hello") == "sent"
        voter.join()
    assert ran == ["new-partner@elsewhere.example"]
    (ticket,) = bob.get(f"/v1/approvals?task={task.id}")
    assert ticket["state"] == "consumed" and ticket["votes"][0]["user"] == "bob"
    tr.close()
    bob.close()


def test_async_functions_and_tasks_use_the_async_client(server: Server) -> None:
    tr = tribune.connect(server.url, api_key=server.agent_key)
    ran: list[str] = []

    @tr.govern("crm.read")
    async def read_customer(customer_id: str) -> str:
        await asyncio.sleep(0)
        ran.append(customer_id)
        return customer_id

    @tr.govern("crm.read")
    async def broken(customer_id: str) -> str:
        raise ValueError("secret detail")

    async def main() -> str:
        async with tr.atask("helper", purpose="async work", tools=["crm.read"]) as task:
            assert await asyncio.gather(read_customer("1"), read_customer("2")) == ["1", "2"]
            with pytest.raises(ValueError):
                await broken("3")
        await tr.aclose()
        return task.id

    task_id = asyncio.run(main())
    assert sorted(ran) == ["1", "2"]
    records = server.admin.get(f"/v1/audit/records?task={task_id}&kind=result")["records"]
    statuses = sorted(r["body"]["data"]["status"] for r in records)
    assert statuses == ["error", "ok", "ok"]
    error = next(r for r in records if r["body"]["data"]["status"] == "error")
    assert error["body"]["data"]["error"] == "ValueError"
    assert "secret detail" not in str(records)
    tr.close()


def test_a_wrong_key_or_a_dead_service_fails_closed(server: Server) -> None:
    ran: list[str] = []
    bad = tribune.connect(server.url, api_key="trb_nope_nope")
    with pytest.raises(TribuneError) as err:
        bad.start_task("helper", purpose="p", tools=["crm.read"])
    assert err.value.code == "unauthenticated"

    dead = tribune.connect(f"http://127.0.0.1:{free_port()}", api_key=server.agent_key, timeout=2)

    @dead.govern("crm.read")
    def read_customer(customer_id: str) -> None:
        ran.append(customer_id)

    with pytest.raises(TribuneError) as err:
        read_customer("1")  # no task: refused before any network call
    assert err.value.code == "invalid_input"
    with pytest.raises(TribuneError) as err:  # a lone name is not read letter by letter
        dead.start_task("helper", purpose="p", tools="crm.read")  # type: ignore[arg-type]
    assert err.value.code == "invalid_input" and "must be a list" in err.value.message
    with pytest.raises(TribuneError) as err:
        dead.check("crm.read", {}, task="t")
    assert err.value.code == "service_unavailable"

    @dead.govern("crm.read", task="some-task")
    def read_in_task(customer_id: str) -> None:
        ran.append(customer_id)

    with pytest.raises(TribuneError) as err:
        read_in_task("1")
    assert err.value.code == "service_unavailable"
    assert ran == []


def test_metrics_count_decisions(server: Server) -> None:
    text = httpx.get(f"{server.url}/metrics").text
    assert 'tribune_decisions_total{effect="allow",route="decisions"}' in text
    assert "tribune_http_request_seconds_bucket" in text
    assert "tribune_audit_unsigned_records" in text


def test_sigterm_drains_signs_and_the_chain_verifies(server: Server) -> None:
    server.process.send_signal(signal.SIGTERM)
    assert stopped_gracefully(server.process)
    with tribune.open(server.home, create=False) as tr:
        report = tr.audit.verify()
        assert report.ok, report.message
        assert report.checkpoints_verified >= 1
    # a second start on the same home prints no new admin key
    process, url, token = start_server(server.home)
    try:
        assert token is None
        assert httpx.get(f"{url}/readyz").json()["status"] == "ok"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def test_workers_share_one_home(tmp_path: Path) -> None:
    process, url, token = start_server(tmp_path / "home", "--workers", "2")
    try:
        assert token
        admin = tribune.connect(url, api_key=token)
        seen = {admin.get("/v1/me")["key_id"] for _ in range(20)}
        assert len(seen) == 1
        assert httpx.get(f"{url}/readyz").status_code == 200
        admin.close()
    finally:
        process.send_signal(signal.SIGTERM)
        assert stopped_gracefully(process)
    with tribune.open(tmp_path / "home", create=False) as tr:
        assert tr.audit.verify().ok


def test_a_remote_client_borrows_a_credential_for_one_call(tmp_path: Path) -> None:
    from tribune.bootstrap import init_home

    home = tmp_path / "home"
    init_home(home)
    with (home / "tribune.toml").open("a", encoding="utf-8") as handle:
        handle.write(
            '\n[credentials.crm-api]\nbackend = "token"\naudience = "https://crm.example"\n'
            'tools = ["crm.read"]\n'
        )
    process, url, token = start_server(home)
    try:
        assert token
        admin = tribune.connect(url, api_key=token)
        admin.post("/v1/users", {"name": "alice", "email": "alice@acme.com"})
        admin.backend.request(
            "PUT",
            "/v1/tools/crm.read",
            {"risk": {"read_only": True, "destructive": False, "open_world": False}},
        )
        admin.post(
            "/v1/agents",
            {
                "name": "helper",
                "owner": "user:alice",
                "purpose": "support",
                "environment": "development",
                "entitlements": {"tools": ["crm.read"]},
            },
        )
        key = admin.post("/v1/keys", {"principal": "agent:helper", "role": "agent"})["token"]
        tr = tribune.connect(url, api_key=key)
        got: list[str] = []

        @tr.govern("crm.read", credentials={"crm_token": "crm-api"})
        def read(customer_id: str, *, crm_token: str = "") -> str:
            got.append(crm_token)
            return customer_id

        with tr.task("helper", purpose="look up", tools=["crm.read"]) as task:
            assert read("42") == "42"
        (leased,) = admin.get(f"/v1/tasks/{task.id}/leases")
        assert (leased["state"], leased["end_reason"]) == ("revoked", "call_ended")
        assert got[0].count(".") == 2
        records = admin.get(f"/v1/audit/records?task={task.id}")
        assert got[0] not in json.dumps(records)
        tr.close()
        admin.close()
    finally:
        process.terminate()
        process.wait(timeout=20)
