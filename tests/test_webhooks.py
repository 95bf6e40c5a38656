"""Approval webhooks against a real local HTTP server: both formats, signatures checked by the
official ``standardwebhooks`` package, retries, timeouts, the events filter, a caller that is
never blocked, draining on close, config errors, and secrets kept out of logs and reprs."""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tribune.core.model import ApprovalRequirement, ApprovalTicket, TicketState, Vote
from tribune.errors import ConfigError
from tribune.system import FixedClock
from tribune.webhooks import (
    WebhookNotifier,
    WebhookTarget,
    parse_webhooks,
    sign_standard,
    slack_body,
    standard_body,
)

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
FAST = (0.01, 0.02, 0.05)
EVENTS_ALL = ("requested", "approved", "denied", "expired")
ENV = {"HOOK_SECRET": SECRET, "EMPTY": ""}
RAW: dict[str, Any] = {
    "name": "audit-hook",
    "url": "https://hooks.example.org/T000/xoxsecretpath",
    "format": "standard",
    "secret_env": "HOOK_SECRET",
    "events": ["requested", "denied"],
    "timeout": 2.5,
}


def ticket(**changes: Any) -> ApprovalTicket:
    values: dict[str, Any] = {
        "id": "tk1",
        "action_id": "act-1",
        "action_digest": "sha256:aa",
        "task_id": "t1",
        "agent_id": "spiffe://example.org/agent/ops-bot",
        "owner": "user:alice",
        "tool": "db.drop",
        "requirement": ApprovalRequirement(2, ("sre-leads",), owner_may_approve=True),
        "reasons": ("a destructive action in production needs two approvers ✓",),
        "created_at": T0,
        "expires_at": T0 + timedelta(hours=1),
        "shown": {
            "arguments": {"table": "sessions", "password": {"digest": "sha256:" + "ab" * 32}},
            "environment": "production",
            "purpose": "clean up <!channel> old sessions",
        },
    }
    values.update(changes)
    return ApprovalTicket(**values)


# --------------------------------------------------------------------------- a real server


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Hook:
    """A webhook receiver on 127.0.0.1 that records requests and answers from a plan."""

    port: int = 0
    requests: list[Seen] = field(default_factory=list)
    plan: list[tuple[int, dict[str, str], float]] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/T000/B000/xoxsecretpath"

    def answer(self, status: int, times: int = 1, delay: float = 0.0, **headers: str) -> None:
        """The next ``times`` requests get ``status`` after ``delay`` seconds."""
        self.plan += [(status, {k.replace("_", "-"): v for k, v in headers.items()}, delay)] * times

    def wait_for(self, n: int, timeout: float = 10.0) -> list[Seen]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.requests) >= n, timeout), (
                f"{len(self.requests)} of {n} requests arrived"
            )
            return list(self.requests)


@pytest.fixture
def hook() -> Iterator[Hook]:
    state = Hook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            with state.arrived:
                state.requests.append(
                    Seen(
                        self.path,
                        {k.lower(): v for k, v in self.headers.items()},
                        body,
                        time.monotonic(),
                    )
                )
                status, headers, delay = state.plan.pop(0) if state.plan else (200, {}, 0.0)
                state.arrived.notify_all()
            if delay:
                state.released.wait(delay)
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except OSError:  # the client gave up first
                pass

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.released.set()
        server.shutdown()
        server.server_close()


Make = Callable[..., WebhookNotifier]


@pytest.fixture
def make() -> Iterator[Make]:
    made: list[WebhookNotifier] = []

    def build(*targets: WebhookTarget, **kw: Any) -> WebhookNotifier:
        kw.setdefault("backoff", FAST)
        notifier = WebhookNotifier(targets, base_url="https://tribune.example.org/", **kw)
        made.append(notifier)
        return notifier

    yield build
    for notifier in made:
        notifier.close(1.0)


def standard(hook: Hook, **kw: Any) -> WebhookTarget:
    return WebhookTarget("audit-hook", hook.url, "standard", SECRET, **kw)


def slack(hook: Hook, **kw: Any) -> WebhookTarget:
    return WebhookTarget("slack-sre", hook.url, "slack", **kw)


def settle(notifier: WebhookNotifier, total: int, timeout: float = 10.0) -> None:
    """Wait until ``total`` deliveries were dealt with (delivered or failed)."""
    deadline = time.monotonic() + timeout
    while notifier.delivered + notifier.failed < total:
        assert time.monotonic() < deadline, "deliveries did not settle"
        time.sleep(0.01)


# --------------------------------------------------------------------------- delivery


def test_slack_delivery(hook: Hook, make: Make) -> None:
    notifier = make(slack(hook))
    notifier.notify(ticket(), "requested")
    (seen,) = hook.wait_for(1)
    settle(notifier, 1)
    assert notifier.delivered == 1 and notifier.failed == 0
    assert seen.path == "/hooks/T000/B000/xoxsecretpath"
    assert seen.headers["content-type"] == "application/json"
    assert "webhook-signature" not in seen.headers
    body = seen.json()
    assert body == slack_body(ticket(), "requested", "https://tribune.example.org/v1/approvals/tk1")
    assert body["blocks"][0]["text"]["text"] == "Approval requested: db.drop"
    text = json.dumps(body)
    for fact in ("db.drop", "ops-bot", "user:alice", "t1", "2 from sre-leads", "2025-03-01T10:00"):
        assert fact in text
    assert "two approvers" in text
    assert "sha256:abab" not in text and "(hidden)" in text and "sessions" in text
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text  # no mentions by an agent
    (button,) = body["blocks"][-1]["elements"]
    assert button["text"]["text"] == "Review"
    assert button["url"] == "https://tribune.example.org/v1/approvals/tk1"


def test_slack_text_fields_are_truncated() -> None:
    huge = ticket(
        tool="t" * 300,
        reasons=("r" * 5000, "<b>" * 2000),
        shown={"arguments": {"blob": "x&" * 4000}, "purpose": "p" * 9000},
    )
    body = slack_body(huge, "denied", "https://tribune.example.org/v1/approvals/tk1")
    texts = [body["text"]]
    for block in body["blocks"]:
        if "text" in block:
            texts.append(block["text"]["text"])
        texts += [f["text"] for f in block.get("fields", ())]
    assert all(len(t) <= 3000 for t in texts)
    assert len(body["blocks"][0]["text"]["text"]) <= 150
    assert any(t.endswith("…") for t in texts)
    assert not any(t.endswith("&…") or t.endswith("&am…") for t in texts)  # no broken entity


def test_slack_hides_a_fully_digested_argument_set() -> None:
    digested = ticket(shown={"arguments": {"digest": "hmac-sha256:" + "cd" * 32}})
    text = json.dumps(slack_body(digested, "requested", "https://x.example/v1/approvals/tk1"))
    assert "hmac-sha256" not in text and "(hidden)" in text


def test_standard_delivery_verified_by_standardwebhooks(hook: Hook, make: Make) -> None:
    voted = ticket(
        state=TicketState.APPROVED,
        resolved_at=T0 + timedelta(minutes=3),
        votes=(Vote("bob", True, T0), Vote("carol", True, T0), Vote("dave", False, T0)),
    )
    notifier = make(standard(hook, events=frozenset({"approved"})))
    notifier.notify(voted, "approved")
    (seen,) = hook.wait_for(1)
    payload = Webhook(SECRET).verify(seen.body, seen.headers)
    assert payload["type"] == "approval.approved"
    assert payload["data"] == {
        "ticket_id": "tk1",
        "action_id": "act-1",
        "task_id": "t1",
        "agent_id": "spiffe://example.org/agent/ops-bot",
        "owner": "user:alice",
        "tool": "db.drop",
        "quorum": 2,
        "approvers": ["sre-leads"],
        "owner_may_approve": True,
        "reasons": ["a destructive action in production needs two approvers ✓"],
        "expires_at": "2025-03-01T10:00:00Z",
        "state": "approved",
        "approvals": 2,
        "link": "https://tribune.example.org/v1/approvals/tk1",
    }
    assert datetime.fromisoformat(payload["timestamp"]) > T0  # when it was notified
    assert seen.headers["webhook-id"].startswith("msg_")
    assert abs(int(seen.headers["webhook-timestamp"]) - time.time()) < 60
    assert "sessions" not in seen.body.decode()  # arguments stay in Tribune
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(seen.body.replace(b'"quorum":2', b'"quorum":1'), seen.headers)
    other = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(seen.body, seen.headers)


def test_time_comes_from_the_clock(hook: Hook, make: Make) -> None:
    notifier = make(standard(hook), clock=FixedClock(T0))
    notifier.notify(ticket(), "requested")
    (seen,) = hook.wait_for(1)
    ts = int(T0.timestamp())
    assert seen.headers["webhook-timestamp"] == str(ts)
    assert seen.json()["timestamp"] == "2025-03-01T09:00:00Z"
    expected = sign_standard(SECRET, seen.headers["webhook-id"], ts, seen.body)
    assert seen.headers["webhook-signature"] == expected


def test_standard_body_without_a_time_uses_the_tickets() -> None:
    body = standard_body(ticket(), "requested", "https://x.example/l")
    assert body["timestamp"] == "2025-03-01T09:00:00Z"
    resolved = ticket(state=TicketState.DENIED, resolved_at=T0 + timedelta(minutes=5))
    assert standard_body(resolved, "denied", "l")["timestamp"] == "2025-03-01T09:05:00Z"


def test_signature_matches_the_spec_example() -> None:
    # the example of the Standard Webhooks / Svix documentation
    got = sign_standard(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        b'{"test": 2432232314}',
    )
    assert got == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


# --------------------------------------------------------------------------- retries


def test_retries_on_500_then_succeeds_with_the_same_id(hook: Hook, make: Make) -> None:
    hook.answer(500, times=2)
    notifier = make(standard(hook))
    notifier.notify(ticket(), "requested")
    seen = hook.wait_for(3)
    settle(notifier, 1)
    assert (notifier.delivered, notifier.failed) == (1, 0)
    assert len({s.headers["webhook-id"] for s in seen}) == 1
    assert len({s.body for s in seen}) == 1
    for s in seen:  # every attempt carries a valid signature
        Webhook(SECRET).verify(s.body, s.headers)
    time.sleep(0.1)
    assert len(hook.requests) == 3


def test_429_honours_retry_after(hook: Hook, make: Make) -> None:
    hook.answer(429, retry_after="1")
    notifier = make(slack(hook))
    notifier.notify(ticket(), "requested")
    first, second = hook.wait_for(2)
    settle(notifier, 1)
    assert notifier.delivered == 1
    assert 0.9 <= second.at - first.at < 3  # not the 0.01 s backoff


def test_retry_after_is_capped(hook: Hook, make: Make) -> None:
    hook.answer(503, retry_after="3600")
    notifier = make(slack(hook), max_retry_after=0.3)
    notifier.notify(ticket(), "requested")
    first, second = hook.wait_for(2)
    assert 0.25 <= second.at - first.at < 2


def test_gives_up_after_the_retries(
    hook: Hook, make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    hook.answer(500, times=10)
    notifier = make(slack(hook), retries=2)
    with caplog.at_level(logging.INFO, logger="tribune.notify"):
        notifier.notify(ticket(), "requested")
        settle(notifier, 1)
    assert (notifier.delivered, notifier.failed) == (0, 1)
    time.sleep(0.15)
    assert len(hook.requests) == 3  # one try and two retries
    assert "gave up after 3 attempt(s) (HTTP 500)" in caplog.text


def test_no_retry_on_400(hook: Hook, make: Make, caplog: pytest.LogCaptureFixture) -> None:
    hook.answer(400)
    notifier = make(standard(hook))
    with caplog.at_level(logging.INFO, logger="tribune.notify"):
        notifier.notify(ticket(), "requested")
        settle(notifier, 1)
    assert (notifier.delivered, notifier.failed) == (0, 1)
    time.sleep(0.15)
    assert len(hook.requests) == 1
    assert "failed for good (HTTP 400)" in caplog.text


def test_a_redirect_is_not_followed(hook: Hook, make: Make) -> None:
    hook.answer(302, location="http://127.0.0.1:1/elsewhere")
    notifier = make(slack(hook))
    notifier.notify(ticket(), "requested")
    settle(notifier, 1)
    assert notifier.failed == 1 and len(hook.requests) == 1


def test_a_hanging_target_times_out_and_is_retried(hook: Hook, make: Make) -> None:
    hook.answer(200, delay=5)
    notifier = make(standard(hook, timeout=0.2))
    start = time.monotonic()
    notifier.notify(ticket(), "requested")
    first, second = hook.wait_for(2)
    settle(notifier, 1)
    assert notifier.delivered == 1
    assert 0.2 <= second.at - first.at < 1.5
    assert time.monotonic() - start < 2
    assert first.headers["webhook-id"] == second.headers["webhook-id"]


def test_connection_refused_is_retried_then_given_up(make: Make) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    target = WebhookTarget("gone", f"http://127.0.0.1:{port}/hook", "slack")
    notifier = make(target, retries=2)
    notifier.notify(ticket(), "requested")
    settle(notifier, 1)
    assert (notifier.delivered, notifier.failed) == (0, 1)


def test_a_slow_target_does_not_hold_up_another(hook: Hook, make: Make) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()  # accepts, never answers
        stuck = WebhookTarget(
            "stuck", f"http://127.0.0.1:{s.getsockname()[1]}/", "slack", timeout=5
        )
        notifier = make(stuck, slack(hook))
        start = time.monotonic()
        notifier.notify(ticket(), "requested")
        hook.wait_for(1)
        assert time.monotonic() - start < 1


# --------------------------------------------------------------------------- the caller's side


def test_only_the_events_a_target_takes(hook: Hook, make: Make) -> None:
    notifier = make(standard(hook, events=frozenset({"approved", "expired"})))
    for event in ("requested", "approved", "denied", "expired"):
        notifier.notify(ticket(), event)
    seen = hook.wait_for(2)
    settle(notifier, 2)
    time.sleep(0.1)
    assert [s.json()["type"] for s in hook.requests] == ["approval.approved", "approval.expired"]
    assert seen[0].headers["webhook-id"] != seen[1].headers["webhook-id"]


def test_notify_never_blocks_and_never_raises(hook: Hook, make: Make) -> None:
    hook.answer(200, times=20, delay=1.0)
    notifier = make(slack(hook), standard(hook, events=frozenset(EVENTS_ALL)))
    start = time.monotonic()
    for _ in range(10):
        notifier.notify(ticket(), "requested")
    notifier.notify(ticket(), "approved")
    notifier.notify(ticket(), "no-such-event")
    notifier.notify(object(), "requested")  # type: ignore[arg-type]
    elapsed = time.monotonic() - start
    assert elapsed < 0.1, f"notify took {elapsed:.3f}s against a server that waits 1s"
    hook.wait_for(2)
    notifier.close(0.0)
    notifier.notify(ticket(), "requested")  # after close: dropped, not raised


def test_a_full_queue_drops(hook: Hook, make: Make) -> None:
    hook.answer(200, delay=1.0)
    notifier = make(slack(hook), max_pending=2)
    for _ in range(5):
        notifier.notify(ticket(), "requested")
    assert notifier.dropped >= 2 and notifier.failed >= 2


def test_close_drains_the_queue(hook: Hook, make: Make) -> None:
    hook.answer(200, times=5, delay=0.05)
    notifier = make(slack(hook), standard(hook))
    for i in range(5):
        notifier.notify(ticket(id=f"tk{i}"), "requested")
    assert notifier.close(5.0) is True
    assert (notifier.delivered, notifier.failed) == (10, 0)
    assert len(hook.requests) == 10
    assert not any(t.is_alive() for t in notifier._threads)
    notifier.notify(ticket(), "requested")
    assert notifier.dropped == 2  # both targets take `requested`


def test_close_is_bounded(hook: Hook, make: Make) -> None:
    hook.answer(200, times=3, delay=10)
    notifier = make(slack(hook, timeout=10))
    for _ in range(3):
        notifier.notify(ticket(), "requested")
    hook.wait_for(1)
    start = time.monotonic()
    assert notifier.close(0.3) is False
    assert time.monotonic() - start < 1


# --------------------------------------------------------------------------- secrets


def test_secrets_stay_out_of_logs_and_reprs(
    hook: Hook, make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    hook.answer(500)
    hook.answer(400)
    target = standard(hook)
    notifier = make(target, slack(hook))
    with caplog.at_level(logging.DEBUG):
        notifier.notify(ticket(), "requested")
        settle(notifier, 2)
        notifier.close(2.0)
        WebhookNotifier([], base_url="https://x.example").notify(ticket(), "bogus")
    key = SECRET.removeprefix("whsec_")
    for text in (caplog.text, repr(target), repr(notifier), str(parse_webhooks([RAW], ENV))):
        assert key not in text and "xoxsecretpath" not in text
        assert "sessions" not in text  # no bodies
    assert "audit-hook" in caplog.text
    assert "127.0.0.1/(hidden)" in caplog.text  # httpx's own request log, cut down


# --------------------------------------------------------------------------- configuration


def test_parse_webhooks() -> None:
    slack_raw = {
        "name": "slack-sre",
        "url": "https://hooks.slack.com/services/x",
        "format": "slack",
    }
    inline = {**RAW, "name": "inline", "secret": SECRET}
    del inline["secret_env"]
    got = parse_webhooks([RAW, slack_raw, inline], ENV)
    assert got[0] == WebhookTarget(
        "audit-hook", RAW["url"], "standard", SECRET, frozenset({"requested", "denied"}), 2.5
    )
    assert got[1].events == frozenset({"requested"}) and got[1].timeout == 5 and not got[1].secret
    assert got[2].secret == SECRET
    assert parse_webhooks(None, {}) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "teams"}, r"`approvals.webhooks\[0\].format` is `teams`"),
        ({"secret_env": None}, r"`approvals.webhooks\[0\].secret` is required"),
        (
            {"secret_env": "NOPE"},
            r"`approvals.webhooks\[0\].secret_env` names `NOPE`, which is not set",
        ),
        ({"secret_env": "EMPTY"}, r"`approvals.webhooks\[0\].secret_env` names `EMPTY`"),
        (
            {"secret_env": None, "secret": "whsec_c2hvcnQ="},
            r"`approvals.webhooks\[0\].secret` is not a",
        ),
        (
            {"secret_env": None, "secret": "not-a-secret"},
            r"`approvals.webhooks\[0\].secret` is not a",
        ),
        ({"secret": SECRET}, r"`approvals.webhooks\[0\].secret` and .*secret_env` are both set"),
        (
            {"format": "slack", "secret_env": None, "secret": SECRET},
            r"\.secret` is not used by slack",
        ),
        ({"format": "slack"}, r"\.secret_env` is not used by slack"),
        ({"format": "slack", "secret_env": "NOPE"}, r"\.secret_env` is not used by slack"),
        ({"url": "ftp://hooks.example.org/x"}, r"`approvals.webhooks\[0\].url` must be an http"),
        ({"url": "hooks.example.org/x"}, r"`approvals.webhooks\[0\].url` must be an http"),
        ({"url": "https:///nohost"}, r"`approvals.webhooks\[0\].url` must be an http"),
        ({"url": 7}, r"`approvals.webhooks\[0\].url` must be a string"),
        ({"url": None}, r"`approvals.webhooks\[0\].url` is missing"),
        ({"colour": "red"}, r"unknown key `colour` in `approvals.webhooks\[0\]`"),
        ({"events": ["requested", "voted"]}, r"`approvals.webhooks\[0\].events` has `voted`"),
        ({"events": []}, r"`approvals.webhooks\[0\].events` is empty"),
        ({"events": "requested"}, r"`approvals.webhooks\[0\].events` must be a list"),
        ({"timeout": 0}, r"`approvals.webhooks\[0\].timeout` must be more than 0"),
        ({"timeout": 600}, r"`approvals.webhooks\[0\].timeout` must be more than 0"),
        ({"timeout": True}, r"`approvals.webhooks\[0\].timeout` must be a number"),
        ({"name": "bad name"}, r"`approvals.webhooks\[0\].name` is `bad name`"),
    ],
)
def test_config_errors_name_the_key(change: dict[str, Any], message: str) -> None:
    raw = {**RAW, **change}
    raw = {k: v for k, v in raw.items() if v is not None}
    with pytest.raises(ConfigError, match=message) as caught:
        parse_webhooks([raw], ENV)
    text = str(caught.value)
    assert SECRET.removeprefix("whsec_") not in text and "xoxsecretpath" not in text


def test_config_shape_errors() -> None:
    with pytest.raises(ConfigError, match="must be an array of tables"):
        parse_webhooks({"name": "x"}, ENV)
    with pytest.raises(
        ConfigError, match=r"`approvals.webhooks\[1\].name` `audit-hook` is used twice"
    ):
        parse_webhooks([RAW, RAW], ENV)


def test_a_target_checks_itself() -> None:
    with pytest.raises(ConfigError, match="`secret` is required"):
        WebhookTarget("x", "https://a.example/", "standard")
    with pytest.raises(ConfigError, match="`url` must be"):
        WebhookTarget("x", "javascript:alert(1)", "slack")
    with pytest.raises(ConfigError):
        WebhookNotifier([], base_url="ftp://x")


def test_a_home_notifies_its_webhooks_of_a_ticket_and_its_approval(
    hook: Hook, tmp_path: Path
) -> None:
    """End to end: `[[approvals.webhooks]]` in tribune.toml, a call that needs approval, a
    signed `approval.requested`, then `approval.approved` once a person approves."""
    from tribune.bootstrap import init_home, open_tribune
    from tribune.core.model import Entitlements, ExtractorSpec, RiskFacts, Tool

    home = tmp_path / "home"
    init_home(home)
    with (home / "tribune.toml").open("a", encoding="utf-8") as handle:
        handle.write(
            '\n[approvals]\nbase_url = "https://tribune.example.org"\n'
            '[[approvals.webhooks]]\nname = "ops"\n'
            f'url = "{hook.url}"\nformat = "standard"\nsecret_env = "HOOK_SECRET"\n'
            'events = ["requested", "approved"]\n'
        )
    os.environ["HOOK_SECRET"] = SECRET
    try:
        tr = open_tribune(home)
    finally:
        del os.environ["HOOK_SECRET"]
    try:
        tr.registry.add_group("approvers")
        tr.registry.add_user("alice", email="alice@example.org")
        tr.registry.add_user("bob", email="bob@example.org", groups=("approvers",))
        tr.registry.register_tool(
            Tool(
                "mail.send",
                risk=RiskFacts(read_only=False, destructive=False, open_world=True),
                extractors=(ExtractorSpec("email", "/to", role="recipient", target=True),),
            )
        )
        tr.registry.register_agent(
            "mailer",
            owner="user:alice",
            purpose="mail",
            environment="development",
            entitlements=Entitlements(
                tools=frozenset({"mail.send"}), environments=frozenset({"development"})
            ),
        )
        task = tr.start_task("mailer", purpose="write", tools=["mail.send"])
        held = tr.governor.decide(task.id, "mail.send", {"to": "someone@elsewhere.example"})
        assert held.ticket_id is not None
        (requested,) = hook.wait_for(1)
        payload = Webhook(SECRET).verify(requested.body, requested.headers)
        assert payload["type"] == "approval.requested"
        assert payload["data"]["ticket_id"] == held.ticket_id
        assert (
            payload["data"]["link"] == f"https://tribune.example.org/v1/approvals/{held.ticket_id}"
        )
        tr.approvals.vote(held.ticket_id, "bob", True)
        approved = hook.wait_for(2)[1]
        assert Webhook(SECRET).verify(approved.body, approved.headers)["type"] == (
            "approval.approved"
        )
    finally:
        tr.close()
