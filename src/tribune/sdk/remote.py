"""The remote backend: decisions by a Tribune service over its HTTP API.

    tr = tribune.connect("http://127.0.0.1:8700", api_key=os.environ["TRIBUNE_API_KEY"])

    @tr.govern("crm.read")                 # the same decorator as tribune.open()
    def read_customer(customer_id: str) -> dict: ...

    with tr.task("support-bot", purpose="answer ticket 42", tools=["crm.read"]):
        read_customer("c-1")

Sync functions use a pooled ``httpx.Client``; async functions (and ``async with tr.atask``)
use an ``httpx.AsyncClient``, so an event loop never blocks on Tribune. Any failure to reach
the service or read its answer raises before the governed body runs (fail closed).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx
import orjson

from tribune.core.model import (
    Limits,
    ResultStatus,
    Scope,
    SessionState,
    Task,
    TaskState,
    Verdict,
    decision_from_dict,
)
from tribune.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    StoreError,
    TribuneError,
    Unauthenticated,
    UnknownAgent,
    UnknownTask,
)
from tribune.sdk.governed import Governed
from tribune.services.tasks import name_list

MAX_OUTPUT_BYTES = 1 << 20
ERRORS: dict[str, type[TribuneError]] = {
    "unauthenticated": Unauthenticated,
    "forbidden": Forbidden,
    "unknown_task": UnknownTask,
    "unknown_agent": UnknownAgent,
    "not_found": NotFound,
    "conflict": Conflict,
    "invalid_input": InvalidInput,
    "invalid_request": InvalidInput,
    "store_unavailable": StoreError,
}


class RemoteBackend:
    """``Backend`` over Tribune's HTTP API."""

    def __init__(self, url: str, api_key: str, *, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        self._async_args: dict[str, Any] = {
            "base_url": self.url,
            "headers": headers,
            "timeout": timeout,
        }
        self._ahttp: httpx.AsyncClient | None = None

    # ----------------------------------------------------------------- transport

    def request(self, method: str, path: str, body: Any = None) -> Any:
        try:
            response = self.http.request(method, path, content=_encode(body))
        except httpx.HTTPError as exc:
            raise _unreachable(exc) from None
        return _decode(response)

    async def arequest(self, method: str, path: str, body: Any = None) -> Any:
        if self._ahttp is None:  # one per backend; made lazily inside the running loop
            self._ahttp = httpx.AsyncClient(**self._async_args)
        try:
            response = await self._ahttp.request(method, path, content=_encode(body))
        except httpx.HTTPError as exc:
            raise _unreachable(exc) from None
        return _decode(response)

    def close(self) -> None:
        self.http.close()

    async def aclose(self) -> None:
        if self._ahttp is not None:
            await self._ahttp.aclose()
            self._ahttp = None

    # ----------------------------------------------------------------- Backend

    def start_task(self, agent: str, scope: Mapping[str, Any], ttl: int | None) -> Task:
        return task_from(self.request("POST", "/v1/tasks", _task_body(agent, scope, ttl)))

    def end_task(self, task_id: str) -> None:
        self.request("POST", f"/v1/tasks/{_segment(task_id)}/end")

    def decide(
        self,
        task_id: str,
        tool: str,
        arguments: Mapping[str, Any],
        *,
        environment: str | None,
        expects_result: bool,
        ticket: str | None = None,
    ) -> Verdict:
        body = _decision_body(task_id, tool, arguments, environment, expects_result)
        if ticket is not None:
            body["ticket"] = ticket
        return verdict_from(self.request("POST", "/v1/decisions", body))

    def finish(
        self,
        verdict: Verdict,
        status: ResultStatus,
        *,
        output: Any = None,
        duration_ms: float = 0.0,
        error: str | None = None,
    ) -> None:
        path = f"/v1/actions/{_segment(verdict.action_id)}/result"
        self.request("POST", path, _result_body(status, output, duration_ms, error))

    async def astart_task(self, agent: str, scope: Mapping[str, Any], ttl: int | None) -> Task:
        return task_from(await self.arequest("POST", "/v1/tasks", _task_body(agent, scope, ttl)))

    async def aend_task(self, task_id: str) -> None:
        await self.arequest("POST", f"/v1/tasks/{_segment(task_id)}/end")

    async def adecide(
        self,
        task_id: str,
        tool: str,
        arguments: Mapping[str, Any],
        *,
        environment: str | None,
        expects_result: bool,
        ticket: str | None = None,
    ) -> Verdict:
        body = _decision_body(task_id, tool, arguments, environment, expects_result)
        if ticket is not None:
            body["ticket"] = ticket
        return verdict_from(await self.arequest("POST", "/v1/decisions", body))

    async def afinish(
        self,
        verdict: Verdict,
        status: ResultStatus,
        *,
        output: Any = None,
        duration_ms: float = 0.0,
        error: str | None = None,
    ) -> None:
        path = f"/v1/actions/{_segment(verdict.action_id)}/result"
        await self.arequest("POST", path, _result_body(status, output, duration_ms, error))

    def wait_ticket(self, ticket_id: str, timeout: float) -> str:
        path = f"/v1/approvals/{_segment(ticket_id)}/wait?timeout={int(timeout)}"
        try:
            response = self.http.request("GET", path, timeout=timeout + self.timeout)
        except httpx.HTTPError as exc:
            raise _unreachable(exc) from None
        return _ticket_state(_decode(response))

    async def await_ticket(self, ticket_id: str, timeout: float) -> str:
        if self._ahttp is None:
            self._ahttp = httpx.AsyncClient(**self._async_args)
        path = f"/v1/approvals/{_segment(ticket_id)}/wait?timeout={int(timeout)}"
        try:
            response = await self._ahttp.request("GET", path, timeout=timeout + self.timeout)
        except httpx.HTTPError as exc:
            raise _unreachable(exc) from None
        return _ticket_state(_decode(response))

    def borrow(self, verdict: Verdict, source: str) -> tuple[str, dict[str, Any]]:
        path = f"/v1/tasks/{_segment(verdict.task_id)}/leases"
        out = self.request("POST", path, {"source": source, "action": verdict.action_id})
        return _lease(out)

    def give_back(self, lease_id: str) -> None:
        self.request("POST", f"/v1/leases/{_segment(lease_id)}/revoke", {"reason": "call_ended"})

    async def aborrow(self, verdict: Verdict, source: str) -> tuple[str, dict[str, Any]]:
        path = f"/v1/tasks/{_segment(verdict.task_id)}/leases"
        out = await self.arequest("POST", path, {"source": source, "action": verdict.action_id})
        return _lease(out)

    async def agive_back(self, lease_id: str) -> None:
        await self.arequest(
            "POST", f"/v1/leases/{_segment(lease_id)}/revoke", {"reason": "call_ended"}
        )


class Client(Governed):
    """A connection to a Tribune service: the decorator and task helpers of ``Governed``,
    plus ``get``/``post`` for the rest of the API. Use ``tribune.connect()``."""

    backend: RemoteBackend

    def __init__(self, url: str, api_key: str, *, timeout: float = 10.0) -> None:
        super().__init__(RemoteBackend(url, api_key, timeout=timeout))

    def get(self, path: str) -> Any:
        return self.backend.request("GET", path)

    def post(self, path: str, body: Any = None) -> Any:
        return self.backend.request("POST", path, body)

    def close(self) -> None:
        self.backend.close()

    async def aclose(self) -> None:
        await self.backend.aclose()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- wire forms


def _encode(body: Any) -> bytes | None:
    if body is None:
        return None
    try:
        return orjson.dumps(body)
    except TypeError as exc:
        raise InvalidInput(f"not JSON: {exc}") from None


def _decode(response: httpx.Response) -> Any:
    try:
        data = orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        data = None
    if response.is_success:
        if data is None and response.content:
            raise TribuneError("the service answered with something that is not JSON",
                               code="bad_response")  # fmt: skip
        return data
    if not isinstance(data, dict) or not isinstance(data.get("code"), str):
        raise TribuneError(f"the service answered {response.status_code}", code="bad_response")
    kind = ERRORS.get(data["code"], TribuneError)
    message = str(data.get("message", ""))
    hint = data.get("hint") if isinstance(data.get("hint"), str) else None
    if kind is TribuneError:
        raise TribuneError(message, code=data["code"], hint=hint)
    raise kind(message, code=data["code"], hint=hint)


def _unreachable(exc: httpx.HTTPError) -> TribuneError:
    return TribuneError(
        f"tribune service unreachable ({type(exc).__name__})",
        code="service_unavailable",
        hint="the call did not run; check the URL and that `tribune up` is running",
    )


def _segment(value: str) -> str:
    if not value or "/" in value or value in (".", ".."):
        raise InvalidInput(f"invalid id `{value}`")
    return value


def _task_body(agent: str, scope: Mapping[str, Any], ttl: int | None) -> dict[str, Any]:
    limits: Limits = scope.get("limits") or Limits()
    body: dict[str, Any] = {
        "agent": agent,
        "purpose": scope["purpose"],
        "tools": list(name_list("tools", scope.get("tools", ()))),
        "tool_groups": list(name_list("tool groups", scope.get("tool_groups", ()))),
        "targets": list(name_list("targets", scope.get("targets", ()))),
        "literals": dict(scope.get("literals") or {}),
        "environment": scope.get("environment"),
        "limits": {
            "max_amount": limits.max_amount,
            "max_count": limits.max_count,
            "max_calls": limits.max_calls,
        },
        "open_scope": bool(scope.get("open_scope", False)),
    }
    if ttl is not None:
        body["ttl"] = ttl
    return body


def _decision_body(
    task_id: str,
    tool: str,
    arguments: Mapping[str, Any],
    environment: str | None,
    expects_result: bool,
) -> dict[str, Any]:
    if not isinstance(arguments, Mapping):
        raise InvalidInput("arguments must be a JSON object")
    return {
        "task": task_id,
        "tool": tool,
        "arguments": dict(arguments),
        "environment": environment,
        "expects_result": expects_result,
    }


def _result_body(
    status: ResultStatus, output: Any, duration_ms: float, error: str | None
) -> dict[str, Any]:
    """The result as the API takes it. An output that is not JSON goes as its ``repr``; one
    over 1 MiB as the first MiB of its JSON text (the digest then covers that prefix)."""
    if output is not None:
        try:
            encoded = orjson.dumps(output)
        except TypeError:
            output = repr(output)
            encoded = orjson.dumps(output)
        if len(encoded) > MAX_OUTPUT_BYTES:
            output = encoded[:MAX_OUTPUT_BYTES].decode("utf-8", errors="ignore")
    body: dict[str, Any] = {"status": status.value, "duration_ms": max(0.0, duration_ms)}
    if output is not None:
        body["output"] = output
    if error:
        body["error"] = error[:500]
    return body


def _ticket_state(data: Any) -> str:
    if not isinstance(data, dict) or not isinstance(data.get("state"), str):
        raise TribuneError("bad ticket from the service", code="bad_response")
    return str(data["state"])


def _lease(data: Any) -> tuple[str, dict[str, Any]]:
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("id"), str)
        or not isinstance(data.get("credential"), dict)
    ):
        raise TribuneError("bad lease from the service", code="bad_response")
    return data["id"], data["credential"]


def verdict_from(data: Mapping[str, Any]) -> Verdict:
    try:
        return Verdict(
            action_id=str(data["action_id"]),
            action_digest=str(data["action_digest"]),
            decision=decision_from_dict(data["decision"]),
            task_id=str(data["task"]),
            agent_id=data.get("agent"),
            tool=str(data["tool"]),
            ticket_id=str(data["ticket"]["id"]) if data.get("ticket") else None,
        )
    except (KeyError, TypeError, ValueError):
        raise TribuneError("the service's decision is malformed", code="bad_response") from None


def task_from(data: Mapping[str, Any]) -> Task:
    try:
        s = data["scope"]
        lim = s["limits"]
        session = data["session"]
        return Task(
            id=str(data["id"]),
            agent_id=str(data["agent"]),
            scope=Scope(
                purpose=s["purpose"],
                tools=frozenset(s["tools"]),
                tool_groups=frozenset(s["tool_groups"]),
                targets=frozenset(s["targets"]),
                literal_digests={},  # the service keeps literals; names are in s["literals"]
                environment=s["environment"],
                limits=Limits(lim["max_amount"], lim["max_count"], lim["max_calls"]),
                open_scope=bool(s["open_scope"]),
            ),
            state=TaskState(data["state"]),
            created_at=_time(data["created_at"]),
            expires_at=_time(data["expires_at"]),
            ended_at=_time(data["ended_at"]) if data.get("ended_at") else None,
            session=SessionState(
                bool(session["tainted"]), frozenset(session["data_read"]), int(session["calls"])
            ),
        )
    except (KeyError, TypeError, ValueError):
        raise TribuneError("the service's task is malformed", code="bad_response") from None


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
