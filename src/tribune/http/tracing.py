"""Optional OpenTelemetry traces (the ``otel`` extra): one span per request, with the
decision's effect, tool and action id on decision spans.

The exporter is OTLP when ``opentelemetry-exporter-otlp`` is installed and
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, otherwise spans go to standard error. Tests pass an
in-memory exporter.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from tribune.core.model import Verdict
from tribune.errors import ConfigError


def require_otel() -> None:
    if importlib.util.find_spec("opentelemetry.instrumentation.fastapi") is None:
        raise ConfigError("tracing needs OpenTelemetry", hint="pip install 'tribune[otel]'")


def instrument(app: Any, exporter: Any = None) -> Any:
    """Trace ``app``'s requests; returns the tracer provider (flush it on shutdown)."""
    require_otel()
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "tribune"}))
    provider.add_span_processor(BatchSpanProcessor(exporter or _default_exporter()))
    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=provider, excluded_urls="healthz,readyz,metrics"
    )
    app.state.annotate = annotate
    return provider


def annotate(verdict: Verdict) -> None:
    """Put the decision on the current request span (no arguments, no reasons' text)."""
    from opentelemetry import trace

    span = trace.get_current_span()
    span.set_attribute("tribune.effect", verdict.decision.effect.value)
    span.set_attribute("tribune.tool", verdict.tool)
    span.set_attribute("tribune.action_id", verdict.action_id)
    span.set_attribute("tribune.policy_ids", list(verdict.decision.policy_ids))


def _default_exporter() -> Any:
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            return OTLPSpanExporter()
        except ImportError:
            pass
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    return ConsoleSpanExporter()
