"""The store goes away mid-run: decisions fail closed with a clear error (503
``store_unavailable``; the remote client raises and the governed function does not run),
readiness says so and liveness does not; when the store returns, the same process decides
again by itself.

PostgreSQL: a TCP proxy of our own sits between Tribune and the server; stopping it closes its
port and cuts every live connection, starting it listens on the same port again.
SQLite: another connection holds the write lock (as a long backup or a stuck writer would)
until Tribune's busy timeout gives up. Making the file read-only is no test here: these tests
may run as root, which ignores file modes.
"""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy.engine import make_url

import tribune
from tribune.errors import StoreError

from .conftest import Api


class Proxy:
    """A TCP proxy from 127.0.0.1 to ``target``, in threads."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._acceptor: threading.Thread | None = None

    def start(self) -> None:
        """Listen (on the same port as before, once there was one)."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.05)
        self.port = listener.getsockname()[1]
        self._stopping.clear()
        self._acceptor = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._acceptor.start()

    def stop(self) -> None:
        """Close the port and cut every open connection, both ways."""
        self._stopping.set()
        if self._acceptor is not None:
            self._acceptor.join(5)
            self._acceptor = None
        with self._lock:
            live, self._open = self._open, set()
        for sock in live:
            _cut(sock)

    def _accept(self, listener: socket.socket) -> None:
        with listener:
            while not self._stopping.is_set():
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                try:
                    upstream = socket.create_connection(self.target, timeout=3)
                except OSError:
                    _cut(client)
                    continue
                client.settimeout(None)
                upstream.settimeout(None)
                with self._lock:
                    self._open |= {client, upstream}
                for src, dst in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open -= {src, dst}
            _cut(src)
            _cut(dst)


def _cut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv
    sock.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """``app`` on a real HTTP port (uvicorn in a thread), for the remote client."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def eventually(attempt: Callable[[], Any], ok: Callable[[Any], bool], within: float) -> Any:
    """Retry ``attempt`` until ``ok`` holds for its answer; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        answer = attempt()
        if ok(answer) or time.monotonic() > deadline:
            return answer
        time.sleep(0.1)


def decision_body(task_id: str) -> dict[str, Any]:
    return {"task": task_id, "tool": "crm.read", "arguments": {"customer_id": "c-1"}}


def authzen_body(task_id: str) -> dict[str, Any]:
    return {
        "subject": {"type": "agent", "id": "helper"},
        "action": {"name": "call"},
        "resource": {"type": "tool", "id": "crm.read"},
        "context": {"task": task_id},
    }


def assert_unavailable(response: Any) -> None:
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["code"] == "store_unavailable"
    assert body["message"]


# ----------------------------------------------------------------------------- PostgreSQL


@pytest.fixture
def proxy(pg_dsn: str) -> Iterator[Proxy]:
    url = make_url(pg_dsn)
    running = Proxy((url.host or "127.0.0.1", url.port or 5432))
    running.start()
    yield running
    running.stop()


@pytest.fixture
def store_url(pg_dsn: str, proxy: Proxy) -> str:
    """The test's PostgreSQL schema, reached through the proxy."""
    url = make_url(pg_dsn).set(host="127.0.0.1", port=proxy.port)
    return url.render_as_string(hide_password=False)


@pytest.mark.postgres
def test_postgres_outage_fails_closed_and_recovers(api: Api, proxy: Proxy, pg_dsn: str) -> None:
    task = api.start("helper", tools=["crm.read"])
    body = decision_body(task["id"])
    first = api.post("helper", "/v1/decisions", body)
    assert first.status_code == 200, first.text
    assert first.json()["allowed"] is True

    with serving(api.app) as url:
        client = tribune.connect(url, api_key=api.tokens["helper"], timeout=10)
        ran: list[str] = []

        @client.govern("crm.read", task=task["id"])
        def read_customer(customer_id: str) -> str:
            ran.append(customer_id)
            return customer_id

        assert read_customer("c-2") == "c-2"

        proxy.stop()
        assert_unavailable(api.post("helper", "/v1/decisions", body))
        assert_unavailable(api.post("helper", "/access/v1/evaluation", authzen_body(task["id"])))
        with pytest.raises(StoreError) as raised:
            read_customer("c-3")
        assert raised.value.code == "store_unavailable"
        assert ran == ["c-2"]  # nothing ran while the store was away

        ready = api.get(None, "/readyz")
        assert ready.status_code == 503
        assert ready.json()["status"] == "unavailable"
        assert ready.json()["checks"]["store"] != "ok"
        assert api.get(None, "/healthz").status_code == 200
        outage = api.post("helper", "/v1/decisions", body)
        assert pg_dsn not in outage.text and "search_path" not in outage.text

        proxy.start()  # same port: nothing in Tribune is restarted or reconfigured
        started = time.monotonic()
        back = eventually(
            lambda: api.post("helper", "/v1/decisions", body), lambda r: r.status_code == 200, 15
        )
        assert back.status_code == 200, back.text
        assert back.json()["allowed"] is True
        assert time.monotonic() - started < 15
        assert read_customer("c-4") == "c-4"
        assert ran == ["c-2", "c-4"]
        client.close()

    assert api.get(None, "/readyz").status_code == 200
    verified = api.post("admin", "/v1/audit/verify").json()
    assert verified["ok"] is True, verified
    for kind in ("intent", "decision"):  # two calls before, two after; none half-recorded
        found = api.get("admin", f"/v1/audit/records?task={task['id']}&kind={kind}").json()
        assert len(found["records"]) == 4


@pytest.mark.postgres
def test_a_restart_between_requests_costs_at_most_one_answer(api: Api, proxy: Proxy) -> None:
    """Pooled connections die with the server; the first use finds out (503) and the pool is
    dropped, so the next request reconnects (the engine does no pre-ping, by choice)."""
    task = api.start("helper", tools=["crm.read"])
    body = decision_body(task["id"])
    for _ in range(3):
        assert api.post("helper", "/v1/decisions", body).status_code == 200
    proxy.stop()
    proxy.start()
    codes = [api.post("helper", "/v1/decisions", body).status_code for _ in range(4)]
    assert codes[0] in (200, 503)
    assert codes[1:] == [200, 200, 200]


@pytest.mark.postgres
def test_an_outage_answer_does_not_describe_the_database(api: Api, proxy: Proxy) -> None:
    token = api.tokens["helper"]
    unknown = token[:-4] + ("aaaa" if not token.endswith("aaaa") else "bbbb")
    proxy.stop()
    answers = [api.call(unknown, "GET", "/v1/me") for _ in range(2)]
    proxy.start()
    for answer in answers:
        assert_unavailable(answer)
        assert "127.0.0.1" not in answer.text and str(proxy.port) not in answer.text


# ----------------------------------------------------------------------------- SQLite


class TestSqliteWriteLock:
    @pytest.fixture
    def store_url(self, tmp_path: Path) -> str:
        return f"sqlite://{tmp_path / 'tribune.db'}"

    def test_a_held_write_lock_fails_closed_and_recovers(self, api: Api, tmp_path: Path) -> None:
        task = api.start("helper", tools=["crm.read"])
        body = decision_body(task["id"])
        assert api.post("helper", "/v1/decisions", body).status_code == 200

        blocker = sqlite3.connect(tmp_path / "tribune.db", isolation_level=None, timeout=0)
        try:
            blocker.execute("BEGIN IMMEDIATE")  # holds the write lock until rolled back
            # the intent cannot be written: Tribune waits out its busy timeout (5 s), then 503
            assert_unavailable(api.post("helper", "/v1/decisions", body))
            assert api.get(None, "/healthz").status_code == 200
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()

        back = api.post("helper", "/v1/decisions", body)
        assert back.status_code == 200, back.text
        assert back.json()["allowed"] is True
        verified = api.post("admin", "/v1/audit/verify").json()
        assert verified["ok"] is True, verified
        for kind in ("intent", "decision"):
            found = api.get("admin", f"/v1/audit/records?task={task['id']}&kind={kind}").json()
            assert len(found["records"]) == 2
