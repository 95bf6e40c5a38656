"""Prometheus metrics: decisions by effect, latency histograms, errors by code, audit lag.

With several worker processes (``tribune up --workers N``) the server sets
``PROMETHEUS_MULTIPROC_DIR`` before any worker starts, and ``/metrics`` aggregates every
worker's files; with one process the default registry serves directly.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip

DECISIONS = Counter(
    "tribune_decisions",
    "Governed decisions by effect and by the route that asked",
    ["effect", "route"],
)
DECISION_SECONDS = Histogram(
    "tribune_decision_seconds",
    "Time to decide one call, durable intent and decision records included",
    buckets=LATENCY_BUCKETS,
)
REQUESTS = Counter(
    "tribune_http_requests",
    "HTTP requests by route template, method and status",
    ["route", "method", "status"],
)
REQUEST_SECONDS = Histogram(
    "tribune_http_request_seconds",
    "HTTP request latency by route template",
    ["route"],
    buckets=LATENCY_BUCKETS,
)
ERRORS = Counter("tribune_errors", "Error responses by stable code", ["code"])


def observe_decision(effect: str, route: str, seconds: float) -> None:
    DECISIONS.labels(effect, route).inc()
    DECISION_SECONDS.observe(seconds)


class AuditLag(Collector):
    """Records not yet covered by a signed checkpoint, read from the store at scrape time."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        head = GaugeMetricFamily("tribune_audit_head_seq", "Sequence number of the newest record")
        lag = GaugeMetricFamily(
            "tribune_audit_unsigned_records",
            "Records after the newest signed checkpoint (audit lag)",
        )
        try:
            seq, _ = self.store.head()
            checkpoints = self.store.checkpoints()
        except Exception:  # the store is down: say nothing rather than something wrong
            return
        signed = max((c.seq for c in checkpoints), default=0)
        head.add_metric([], seq)
        lag.add_metric([], max(0, seq - signed))
        yield head
        yield lag


def render(store: Any) -> tuple[bytes, str]:
    """The exposition text for this process (or all workers, in multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = REGISTRY
    text = generate_latest(registry)
    extra = CollectorRegistry()
    extra.register(AuditLag(store))
    return text + generate_latest(extra), CONTENT_TYPE_LATEST
