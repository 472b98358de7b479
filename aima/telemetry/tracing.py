"""OpenTelemetry tracing and W3C trace-context propagation through events.

Events carry the trace in the CloudEvents distributed-tracing extension (``traceparent``,
``tracestate``): a producer calls `inject`, a consumer starts its span under `extract`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()
_configured = False


def setup_tracing(service_name: str, exporter: SpanExporter | None = None) -> TracerProvider:
    """Install a tracer provider once per process; spans go to ``exporter`` when given."""
    global _configured
    current = trace.get_tracer_provider()
    if _configured and isinstance(current, TracerProvider):
        if exporter is not None:
            current.add_span_processor(BatchSpanProcessor(exporter))
        return current
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _configured = True
    return provider


def tracer(name: str = "aima") -> trace.Tracer:
    """A tracer from the installed provider."""
    return trace.get_tracer(name)


def inject(carrier: MutableMapping[str, Any] | None = None) -> dict[str, str]:
    """The current trace context as ``traceparent``/``tracestate`` (empty when no span is active)."""
    out: dict[str, str] = {}
    _PROPAGATOR.inject(out)
    if carrier is not None:
        carrier.update(out)
    return out


def extract(carrier: Mapping[str, Any]) -> otel_context.Context:
    """A context whose parent is the trace in ``carrier`` (fresh when it holds none)."""
    values = {k: str(v) for k, v in carrier.items() if k in ("traceparent", "tracestate") and v}
    return _PROPAGATOR.extract(values)


@contextmanager
def span_from(carrier: Mapping[str, Any], name: str, **attributes: Any) -> Iterator[trace.Span]:
    """Start a span whose parent is the trace in ``carrier``."""
    with tracer().start_as_current_span(name, context=extract(carrier), attributes=attributes) as span:
        yield span


def current_ids() -> tuple[str | None, str | None]:
    """(trace id, span id) of the active span as hex, or (None, None)."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None, None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")
