"""Outbound approval notifications by webhook: Slack incoming webhooks and Standard Webhooks.

A notification says that a ticket was requested, approved, denied or expired, and links to the
authenticated approval page; nobody approves by webhook. ``WebhookNotifier.notify`` only
enqueues: one daemon thread per target delivers, retries and gives up, so a slow or dead
endpoint never slows the approval service, nor the other targets.

A Slack webhook URL is itself a credential: neither URLs, secrets nor bodies are logged, put in
error messages or shown in reprs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import queue
import re
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from tribune.core.model import ApprovalTicket
from tribune.errors import ConfigError
from tribune.ports import Clock

log = logging.getLogger("tribune.notify")

EVENTS = ("requested", "approved", "denied", "expired")
FORMATS = ("slack", "standard")
KEYS = frozenset({"name", "url", "format", "secret", "secret_env", "events", "timeout"})
WHERE = "approvals.webhooks"
SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
SECRET_BYTES = (24, 64)  # the Standard Webhooks spec's range for a signing key
MAX_TIMEOUT = 60.0
MAX_TEXT = 3000  # Slack's limit for a section's text
MAX_FIELD = 2000  # ... for one section field
MAX_HEADER = 150  # ... for a header
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
HIDDEN = "(hidden)"


# --------------------------------------------------------------------------- targets


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """One endpoint to notify. ``secret`` (Standard Webhooks only) is ``whsec_`` + base64 of
    the signing key; ``events`` says which events it gets; ``timeout`` is per attempt, in
    seconds."""

    name: str
    url: str = field(repr=False)  # a Slack URL is a credential
    format: str
    secret: str = field(default="", repr=False)
    events: frozenset[str] = frozenset({"requested"})
    timeout: float = 5.0

    def __post_init__(self) -> None:
        _check(
            "", self.name, self.url, self.format, self.secret, self.events, self.timeout, "secret"
        )


def _check(
    where: str,
    name: str,
    url: str,
    format: str,
    secret: str,
    events: frozenset[str],
    timeout: float,
    key_name: str,
) -> None:
    """Raise ``ConfigError`` naming the first bad key (``where`` prefixes key names)."""
    if not NAME_RE.match(name):
        raise ConfigError(
            f"`{where}name` is `{name}`", hint="use 1-64 letters, digits, `_`, `.` and `-`"
        )
    parts = urlsplit(url) if url.isprintable() and " " not in url else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        # INVARIANT: the URL is never echoed: a Slack webhook URL is a credential
        raise ConfigError(f"`{where}url` must be an http or https URL")
    if format not in FORMATS:
        raise ConfigError(f"`{where}format` is `{format}`", hint="one of slack, standard")
    if format == "slack" and secret:
        raise ConfigError(
            f"`{where}{key_name}` is not used by slack webhooks",
            hint="Slack does not sign: its URL is the credential",
        )
    if format == "standard":
        if not secret:
            raise ConfigError(
                f"`{where}secret` is required for standard webhooks", hint="set secret_env"
            )
        if signing_key(secret) is None:
            raise ConfigError(
                f"`{where}{key_name}` is not a Standard Webhooks secret",
                hint=f"write `whsec_` and the base64 of {SECRET_BYTES[0]}-{SECRET_BYTES[1]} "
                "random bytes",
            )
    unknown = sorted(set(events) - set(EVENTS))
    if not events or unknown:
        raise ConfigError(
            f"`{where}events` has `{unknown[0]}`" if unknown else f"`{where}events` is empty",
            hint="choose from " + ", ".join(EVENTS),
        )
    if not 0 < timeout <= MAX_TIMEOUT:
        raise ConfigError(f"`{where}timeout` must be more than 0 and at most {MAX_TIMEOUT:g}")


def signing_key(secret: str) -> bytes | None:
    """The key bytes of a ``whsec_`` secret, or None when it is not one."""
    if not secret.startswith(SECRET_PREFIX):
        return None
    text = secret[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    return key if SECRET_BYTES[0] <= len(key) <= SECRET_BYTES[1] else None


def parse_webhooks(raw: Any, environ: Mapping[str, str]) -> list[WebhookTarget]:
    """The targets of tribune.toml's ``[[approvals.webhooks]]`` (``raw``: its value, or None).

    ``secret_env`` names an environment variable (read from ``environ``) holding the secret.
    Raises ``ConfigError`` naming the bad key; never echoes a URL or a secret.
    """
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        raise ConfigError(
            f"`{WHERE}` must be an array of tables", hint="write [[approvals.webhooks]]"
        )
    targets: list[WebhookTarget] = []
    for i, table in enumerate(raw):
        where = f"{WHERE}[{i}]."
        unknown = sorted(set(table) - KEYS)
        if unknown:
            raise ConfigError(f"unknown key `{unknown[0]}` in `{WHERE}[{i}]`")
        for key in ("name", "url", "format"):
            if key not in table:
                raise ConfigError(f"`{where}{key}` is missing")
        for key in ("name", "url", "format", "secret", "secret_env"):
            if key in table and not isinstance(table[key], str):
                raise ConfigError(f"`{where}{key}` must be a string")
        secret, key_name = table.get("secret", ""), "secret"
        if "secret_env" in table:
            if "secret" in table:
                raise ConfigError(f"`{where}secret` and `{where}secret_env` are both set")
            key_name = "secret_env"
            env_name = table["secret_env"]
            secret = environ.get(env_name, "")
            if not secret and table["format"] == "standard":
                raise ConfigError(
                    f"`{where}secret_env` names `{env_name}`, which is not set",
                    hint="export it, or start Tribune with it in the environment",
                )
            secret = secret or "-"  # set but empty under slack: still refused below
        events = table.get("events", ["requested"])
        if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
            raise ConfigError(f"`{where}events` must be a list of strings")
        timeout = table.get("timeout", 5)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise ConfigError(f"`{where}timeout` must be a number of seconds")
        args = (table["name"], table["url"], table["format"], secret, frozenset(events))
        _check(where, *args, float(timeout), key_name)
        if any(t.name == table["name"] for t in targets):
            raise ConfigError(f"`{where}name` `{table['name']}` is used twice")
        targets.append(WebhookTarget(*args, timeout=float(timeout)))
    return targets


# --------------------------------------------------------------------------- bodies


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _approvals(ticket: ApprovalTicket) -> int:
    return sum(1 for v in ticket.votes if v.approve)


def standard_body(
    ticket: ApprovalTicket, event: str, link: str, at: datetime | None = None
) -> dict[str, Any]:
    """A Standard Webhooks payload: ``{type, timestamp, data}``. ``at`` is when the event
    happened; left out, the ticket's creation (requested) or resolution time."""
    req = ticket.requirement
    if at is None:
        at = ticket.created_at if event == "requested" else ticket.resolved_at or ticket.created_at
    return {
        "type": f"approval.{event}",
        "timestamp": _iso(at),
        "data": {
            "ticket_id": ticket.id,
            "action_id": ticket.action_id,
            "task_id": ticket.task_id,
            "agent_id": ticket.agent_id,
            "owner": ticket.owner,
            "tool": ticket.tool,
            "quorum": req.quorum,
            "approvers": list(req.approvers),
            "owner_may_approve": req.owner_may_approve,
            "reasons": list(ticket.reasons),
            "expires_at": _iso(ticket.expires_at),
            "state": ticket.state.value,
            "approvals": _approvals(ticket),
            "link": link,
        },
    }


def _escape(text: str) -> str:
    # Slack mrkdwn: `<...>` makes links and mentions; an agent's text must not
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marked with an ellipsis, never mid-entity."""
    if len(text) <= limit:
        return text
    return re.sub(r"&[a-z]{0,4}$", "", text[: limit - 1]) + "…"


def _hide_digests(value: Any) -> Any:
    """The recorded arguments with each ``{"digest": ...}`` stand-in shown as hidden."""
    if isinstance(value, dict):
        if set(value) == {"digest"} and isinstance(value["digest"], str):
            return HIDDEN
        return {str(k): _hide_digests(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_hide_digests(v) for v in value]
    return value


HEADLINES = {
    "requested": "Approval requested",
    "approved": "Approved",
    "denied": "Denied",
    "expired": "Approval expired",
}


def slack_body(ticket: ApprovalTicket, event: str, link: str) -> dict[str, Any]:
    """A Slack incoming-webhook body: a ``text`` fallback and ``blocks`` with the facts, the
    policy's reasons, the recorded (already redacted) arguments and a Review button."""
    req = ticket.requirement
    headline = f"{HEADLINES.get(event, event)}: {ticket.tool}"
    who = ", ".join(req.approvers) or "any approver"
    needed = f"{req.quorum} from {who}" + (" (owner may approve)" if req.owner_may_approve else "")
    facts = [
        ("Tool", ticket.tool),
        ("Agent", ticket.agent_id),
        ("Owner", ticket.owner),
        ("Task", ticket.task_id),
        ("Approvals needed", needed),
        ("Expires", _iso(ticket.expires_at)),
    ]
    shown = ticket.shown if isinstance(ticket.shown, dict) else {}
    if isinstance(shown.get("environment"), str):
        facts.append(("Environment", shown["environment"]))
    if event != "requested":
        facts.append(("Approvals so far", str(_approvals(ticket))))
    fields = [
        {"type": "mrkdwn", "text": _clip(f"*{label}*\n{_escape(value)}", MAX_FIELD)}
        for label, value in facts
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(headline, MAX_HEADER)}},
        {"type": "section", "fields": fields},
    ]
    if isinstance(shown.get("purpose"), str) and shown["purpose"]:
        blocks.append(_section("*Purpose*\n" + _escape(shown["purpose"])))
    if ticket.reasons:
        blocks.append(_section("*Why*\n" + "\n".join(f"• {_escape(r)}" for r in ticket.reasons)))
    if "arguments" in shown:
        args = json.dumps(
            _hide_digests(shown["arguments"]), indent=2, ensure_ascii=False, default=str
        )
        code = _clip(_escape(args).replace("```", "`\u200b`\u200b`"), MAX_TEXT - 40)
        blocks.append(_section(f"*Arguments*\n```{code}```"))
    button = {"type": "button", "text": {"type": "plain_text", "text": "Review"}, "url": link}
    if event == "requested":
        button["style"] = "primary"
    blocks.append({"type": "actions", "elements": [button]})
    text = _clip(
        f"{_escape(headline)} (agent {_escape(ticket.agent_id)}): <{link}|review>", MAX_TEXT
    )
    return {"text": text, "blocks": blocks}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _clip(text, MAX_TEXT)}}


def sign_standard(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``
    under the key in ``secret`` (``whsec_`` + base64)."""
    key = signing_key(secret)
    if key is None:
        raise ConfigError("not a Standard Webhooks secret")
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


# --------------------------------------------------------------------------- delivery


class _HideUrls(logging.Filter):
    """Cuts webhook URLs down to scheme and host in httpx's request log (``HTTP Request: POST
    <url> ...`` at INFO): a Slack webhook URL is a credential."""

    def __init__(self) -> None:
        super().__init__()
        self._urls: set[str] = set()

    def add(self, *urls: str) -> None:
        self._urls.update(str(httpx.URL(u)) for u in urls)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(str(a) in self._urls for a in record.args):
            record.args = tuple(_hidden_url(a) if str(a) in self._urls else a for a in record.args)
        return True


def _hidden_url(url: Any) -> str:
    parts = urlsplit(str(url))
    return f"{parts.scheme}://{parts.hostname}/(hidden)"


_HIDE_URLS = _HideUrls()
logging.getLogger("httpx").addFilter(_HIDE_URLS)  # INVARIANT: httpx logs requests there


@dataclass(frozen=True, slots=True)
class _Message:
    id: str  # the webhook-id: one per message, the same on every attempt
    ticket: ApprovalTicket
    event: str
    at: datetime


class _Outcome:
    OK, RETRY, FAIL = "ok", "retry", "fail"


class WebhookNotifier:
    """Delivers approval events to webhook targets in the background.

    ``notify`` returns at once and never raises. Each target has its own queue and daemon
    thread; a delivery is retried on connection errors, timeouts, 429 and 5xx after the
    ``backoff`` delays (or ``Retry-After``, up to ``max_retry_after`` seconds), at most
    ``retries`` times; 2xx is success, any other status a permanent failure. Counters:
    ``delivered``, ``failed`` (including ``dropped``: never attempted, as the queue was full
    or the notifier closed).
    """

    def __init__(
        self,
        targets: Iterable[WebhookTarget],
        *,
        base_url: str,
        clock: Clock | None = None,
        retries: int = 3,
        backoff: Sequence[float] = (1, 5, 25),
        max_retry_after: float = 60.0,
        max_pending: int = 1000,
    ) -> None:
        if retries < 0 or not backoff or any(d < 0 for d in backoff) or max_pending < 1:
            raise ConfigError("webhook retries, backoff and queue size must not be negative")
        if urlsplit(base_url).scheme not in ("http", "https"):
            raise ConfigError(f"`base_url` is `{base_url}`", hint="an http or https URL")
        if clock is None:
            from tribune.system import SystemClock  # the clock adapter, only when none is given

            clock = SystemClock()
        self.base_url = base_url.rstrip("/")
        self.clock = clock
        self.retries = retries
        self.backoff = tuple(float(d) for d in backoff)
        self.max_retry_after = max_retry_after
        self.max_pending = max_pending
        self.targets = tuple(targets)
        _HIDE_URLS.add(*(t.url for t in self.targets))
        self._lock = threading.Lock()
        self._stop = threading.Event()  # set when close runs out of time: abandon what is left
        self._closed = False
        self._counts = {"delivered": 0, "failed": 0, "dropped": 0}
        self._queues: list[queue.Queue[_Message | None]] = []
        self._threads: list[threading.Thread] = []
        for target in self.targets:
            q: queue.Queue[_Message | None] = queue.Queue()
            thread = threading.Thread(
                target=self._run, args=(target, q), name=f"tribune-webhook-{target.name}"
            )
            thread.daemon = True
            self._queues.append(q)
            self._threads.append(thread)
            thread.start()

    def __repr__(self) -> str:
        names = ", ".join(t.name for t in self.targets)
        return f"WebhookNotifier([{names}])"

    @property
    def delivered(self) -> int:
        return self._counts["delivered"]

    @property
    def failed(self) -> int:
        return self._counts["failed"]

    @property
    def dropped(self) -> int:
        return self._counts["dropped"]

    def link(self, ticket: ApprovalTicket) -> str:
        return f"{self.base_url}/v1/approvals/{quote(ticket.id, safe='')}"

    # ----------------------------------------------------------------- the caller's side

    def notify(self, ticket: ApprovalTicket, event: str) -> None:
        """Queue ``event`` about ``ticket`` for every target that takes it; returns at once."""
        try:
            self._enqueue(ticket, event)
        except Exception as exc:  # a notification never breaks the approval service
            log.error("webhook notification not queued (%s)", type(exc).__name__)

    def _enqueue(self, ticket: ApprovalTicket, event: str) -> None:
        if not isinstance(ticket, ApprovalTicket):
            log.error(
                "webhook notification for a %s, not a ticket: not sent", type(ticket).__name__
            )
            return
        if event not in EVENTS:
            log.warning("webhook event `%s` is not one of %s: not sent", event, ", ".join(EVENTS))
            return
        message = _Message(f"msg_{uuid.uuid4().hex}", ticket, event, self.clock.now())
        with self._lock:
            for target, q in zip(self.targets, self._queues, strict=True):
                if event not in target.events:
                    continue
                if self._closed or q.qsize() >= self.max_pending:
                    self._drop(target, message, "closed" if self._closed else "queue full")
                else:
                    q.put_nowait(message)

    def close(self, timeout: float = 10.0) -> bool:
        """Stop taking notifications, deliver what is queued for up to ``timeout`` seconds,
        then abandon the rest and stop. True when everything queued was dealt with."""
        with self._lock:
            if not self._closed:
                self._closed = True
                for q in self._queues:
                    q.put_nowait(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        drained = not any(t.is_alive() for t in self._threads)
        if not drained:
            self._stop.set()  # cuts backoff waits short; requests in flight end at their timeout
        return drained

    # ----------------------------------------------------------------- the worker's side

    def _count(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1

    def _drop(self, target: WebhookTarget, message: _Message, why: str) -> None:
        self._counts["dropped"] += 1  # callers hold the lock
        self._counts["failed"] += 1
        log.warning(
            "webhook %s: %s for ticket %s dropped (%s)",
            target.name,
            message.event,
            message.ticket.id,
            why,
        )

    def _run(self, target: WebhookTarget, q: queue.Queue[_Message | None]) -> None:
        with httpx.Client(
            follow_redirects=False, headers={"user-agent": "tribune-webhooks"}
        ) as client:
            while (message := q.get()) is not None:
                try:
                    if self._stop.is_set():
                        with self._lock:
                            self._drop(target, message, "closing")
                    else:
                        self._deliver(client, target, message)
                except Exception as exc:  # a bug here must not kill the worker
                    self._count("failed")
                    log.error("webhook %s: delivery error (%s)", target.name, type(exc).__name__)

    def _deliver(self, client: httpx.Client, target: WebhookTarget, message: _Message) -> None:
        link = self.link(message.ticket)
        if target.format == "slack":
            payload = slack_body(message.ticket, message.event, link)
        else:
            payload = standard_body(message.ticket, message.event, link, message.at)
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        what = f"webhook {target.name}: {message.event} for ticket {message.ticket.id}"
        for attempt in range(self.retries + 1):
            outcome, detail, wait = self._attempt(client, target, message.id, body)
            if outcome == _Outcome.OK:
                self._count("delivered")
                log.info("%s delivered (%s, attempt %d)", what, detail, attempt + 1)
                return
            if outcome == _Outcome.FAIL:
                self._count("failed")
                log.warning("%s failed for good (%s)", what, detail)
                return
            if attempt == self.retries:
                break
            delay = self.backoff[min(attempt, len(self.backoff) - 1)] if wait is None else wait
            log.info(
                "%s: attempt %d failed (%s), retrying in %.2gs", what, attempt + 1, detail, delay
            )
            if self._stop.wait(delay):
                break
        self._count("failed")
        log.warning("%s gave up after %d attempt(s) (%s)", what, attempt + 1, detail)

    def _attempt(
        self, client: httpx.Client, target: WebhookTarget, msg_id: str, body: bytes
    ) -> tuple[str, str, float | None]:
        """One POST: (outcome, what happened, Retry-After seconds or None)."""
        headers = {"content-type": "application/json"}
        if target.format == "standard":
            ts = int(self.clock.now().timestamp())  # each attempt is signed afresh
            headers["webhook-id"] = msg_id
            headers["webhook-timestamp"] = str(ts)
            headers["webhook-signature"] = sign_standard(target.secret, msg_id, ts, body)
        try:
            # stream: the status is all we need; a large answer is never read
            with client.stream(
                "POST", target.url, content=body, headers=headers, timeout=target.timeout
            ) as response:
                status = response.status_code
                retry_after = response.headers.get("retry-after")
        except httpx.TimeoutException:
            return _Outcome.RETRY, "timed out", None
        except httpx.TransportError as exc:  # refused, reset, protocol errors
            return _Outcome.RETRY, type(exc).__name__, None
        except httpx.HTTPError as exc:  # INVARIANT: only the type: messages may hold the URL
            return _Outcome.FAIL, type(exc).__name__, None
        detail = f"HTTP {status}"
        if 200 <= status < 300:
            return _Outcome.OK, detail, None
        if status == 429 or status >= 500:
            return _Outcome.RETRY, detail, self._retry_after(retry_after)
        return _Outcome.FAIL, detail, None

    def _retry_after(self, value: str | None) -> float | None:
        """Seconds from a ``Retry-After`` header (delta or HTTP date), capped; None if unusable."""
        if value is None:
            return None
        value = value.strip()
        seconds: float
        if value.isdigit():
            seconds = float(value)
        else:
            try:
                when = parsedate_to_datetime(value)
            except (TypeError, ValueError):
                return None
            if when.tzinfo is None:
                return None
            seconds = (when - self.clock.now()).total_seconds()
        return min(max(seconds, 0.0), self.max_retry_after)
