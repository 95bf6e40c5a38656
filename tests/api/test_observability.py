"""Metrics, request logs and traces: present, accurate, and free of secrets and data."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tribune.http.app import create_app
from tribune.http.server import JsonFormatter

from .conftest import Api


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite://{tmp_path / 'tribune.db'}"


def metric(text: str, name: str) -> float:
    """The value of one exposition line that starts with ``name`` (labels included)."""
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name):
            head, _, value = line.rpartition(" ")
            if head == name:
                return float(value)
    return 0.0


def test_metrics_count_decisions_errors_and_audit_lag(api: Api) -> None:
    before = api.get(None, "/metrics").text
    task = api.start()
    body = {"task": task["id"], "tool": "crm.read", "arguments": {"customer_id": "1"}}
    api.post("helper", "/v1/decisions", body)
    api.post("helper", "/v1/decisions", {**body, "tool": "db.drop"})
    api.get("trb_bad_bad", "/v1/me")
    after = api.get(None, "/metrics").text
    allow = 'tribune_decisions_total{effect="allow",route="decisions"}'
    deny = 'tribune_decisions_total{effect="deny",route="decisions"}'
    assert metric(after, allow) == metric(before, allow) + 1
    assert metric(after, deny) == metric(before, deny) + 1
    unauth = 'tribune_errors_total{code="unauthenticated"}'
    assert metric(after, unauth) == metric(before, unauth) + 1
    assert 'tribune_http_request_seconds_bucket{le="0.005",route="/v1/decisions"}' in after
    head, _ = api.world.tr.store.head()
    assert metric(after, "tribune_audit_head_seq") == head
    assert 0 <= metric(after, "tribune_audit_unsigned_records") <= head


def test_private_metrics_need_an_admin_or_auditor(api: Api) -> None:
    with TestClient(create_app(api.world.tr, public_metrics=False)) as client:
        assert client.get("/metrics").status_code == 401
        for who, status in (("auditor", 200), ("admin", 200), ("helper", 403)):
            headers = {"Authorization": f"Bearer {api.tokens[who]}"}
            assert client.get("/metrics", headers=headers).status_code == status


def test_one_log_line_per_request_without_data(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    task = api.start()
    caplog.set_level(logging.INFO, logger="tribune.access")
    api.post(
        "helper",
        "/v1/decisions?secret=query-value",
        {"task": task["id"], "tool": "crm.read", "arguments": {"customer_id": "SECRET-ARG"}},
    )
    lines = [r for r in caplog.records if r.name == "tribune.access"]
    assert len(lines) == 1
    line = lines[0]
    assert (line.method, line.route, line.status) == ("POST", "/v1/decisions", 200)  # type: ignore[attr-defined]
    assert line.key_id == api.get("helper", "/v1/me").json()["key_id"]  # type: ignore[attr-defined]
    text = JsonFormatter().format(line)
    data = json.loads(text)
    assert data["route"] == "/v1/decisions" and data["level"] == "info"
    for secret in ("SECRET-ARG", "query-value", api.tokens["helper"]):
        assert secret not in text


def test_json_formatter_names_an_exception_by_type_only() -> None:
    try:
        raise ValueError("card 4111 1111 1111 1111")
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    out = json.loads(JsonFormatter().format(record))
    assert out["error"] == "ValueError" and "4111 1111" not in json.dumps(out)


def test_traces_carry_the_decision_not_the_arguments(api: Api) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from tribune.http.tracing import instrument

    exporter = InMemorySpanExporter()
    app = create_app(api.world.tr)
    provider = instrument(app, exporter)
    task = api.start()
    with TestClient(app) as client:
        client.post(
            "/v1/decisions",
            json={"task": task["id"], "tool": "crm.read", "arguments": {"customer_id": "S3"}},
            headers={"Authorization": f"Bearer {api.tokens['helper']}"},
        )
    provider.force_flush()
    spans = exporter.get_finished_spans()
    decided = [s for s in spans if s.attributes and "tribune.effect" in s.attributes]
    assert len(decided) == 1
    attrs = dict(decided[0].attributes or {})
    assert attrs["tribune.effect"] == "allow" and attrs["tribune.tool"] == "crm.read"
    assert "S3" not in json.dumps(
        {k: str(v) for s in spans for k, v in (s.attributes or {}).items()}
    )
    provider.shutdown()
