"""``POST /v1/decisions`` is served by a plain ASGI handler ahead of FastAPI (``http/fast.py``).
It must answer exactly as the documented FastAPI route does, for good and bad requests alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tribune.http.app import create_app

from .conftest import Api


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite://{tmp_path / 'tribune.db'}"


def comparable(response: Any) -> tuple[int, Any, str | None]:
    try:
        body = response.json()
    except ValueError:
        body = response.text
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k not in ("action_id", "action_digest")}
    return response.status_code, body, response.headers.get("www-authenticate")


def test_fast_and_framework_routes_answer_alike(api: Api) -> None:
    mine = api.start()
    theirs = api.start("ops", tools=[], tool_groups=["tickets"], purpose="ops work")
    good = {"task": mine["id"], "tool": "crm.read", "arguments": {"customer_id": "1"}}
    json_ct = {"Content-Type": "application/json"}
    cases: list[tuple[str | None, dict[str, Any]]] = [
        ("helper", {"json": good}),
        ("helper", {"json": {**good, "tool": "db.drop"}}),
        ("helper", {"json": {**good, "tool": "email.send", "arguments": {"to": ["x@y.example"]}}}),
        ("helper", {"json": {**good, "expects_result": False}}),
        ("helper", {"json": {**good, "task": theirs["id"]}}),
        ("helper", {"json": {**good, "task": "nope"}}),
        ("admin", {"json": good}),
        ("auditor", {"json": good}),
        ("helper", {"json": {**good, "extra": 1}}),
        ("helper", {"json": {**good, "expects_result": 0}}),
        ("helper", {"json": {"tool": "crm.read"}}),
        ("helper", {"json": [good]}),
        ("helper", {"content": b"{not json", "headers": json_ct}),
        ("helper", {"content": b"", "headers": json_ct}),
        ("helper", {"json": {**good, "arguments": {"x": "a" * (3 << 20)}}}),
        (None, {"json": good}),
        ("trb_nope_nope", {"json": good}),
        ("helper", {"json": good, "headers": {"Authorization": "Basic abc"}}),
    ]
    slow_app = create_app(api.world.tr, fast_paths=False)
    with TestClient(slow_app, raise_server_exceptions=False) as slow:
        for who, kwargs in cases:
            kwargs = dict(kwargs)
            headers = dict(kwargs.pop("headers", {}) or {})
            if who is not None and "Authorization" not in headers:
                headers["Authorization"] = f"Bearer {api.tokens.get(who, who)}"
            fast = api.client.post("/v1/decisions", headers=headers, **kwargs)
            framework = slow.post("/v1/decisions", headers=headers, **kwargs)
            assert comparable(fast) == comparable(framework), (who, kwargs.get("json"))


def test_both_count_in_the_same_metrics(api: Api) -> None:
    task = api.start()
    body = {"task": task["id"], "tool": "crm.read", "arguments": {"customer_id": "1"}}
    api.post("helper", "/v1/decisions", body)
    text = api.get(None, "/metrics").text
    assert 'tribune_http_requests_total{method="POST",route="/v1/decisions",status="200"}' in text
    assert 'tribune_decisions_total{effect="allow",route="decisions"}' in text
