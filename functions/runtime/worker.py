"""The instrumentation both adapters (the HTTP endpoint and the bus consumer) wrap a function in."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Sequence

from opentelemetry import trace

from aima.telemetry.metrics import EVENTS_HANDLED, HANDLER_SECONDS
from aima.telemetry.tracing import extract, inject, tracer
from events.bus import Handler
from events.envelope import CloudEvent

log = logging.getLogger(__name__)
_REMEMBERED_FAILURES = 10_000


def instrument(consumer: str, handler: Handler, *, max_deliver: int | None = None) -> Handler:
    """``handler`` in a span (continuing the event's trace), with metrics and failure logs.

    Emitted events without a ``traceparent`` get the handler span's. A failure counts as ``dead``
    once this process has seen ``max_deliver`` failures of the same event id, else as ``retry``.
    """
    failures: OrderedDict[str, int] = OrderedDict()

    async def handle(event: CloudEvent) -> Sequence[CloudEvent]:
        active = trace.get_current_span().get_span_context().is_valid
        parent = None if active else extract(event.extensions)
        attributes = {"cloudevents.event_id": event.id, "cloudevents.event_type": event.type}
        started = time.perf_counter()
        with tracer().start_as_current_span(
            f"{consumer} {event.type}", context=parent, attributes=attributes
        ):
            try:
                emitted = await handler(event)
            except Exception:
                attempt = failures.pop(event.id, 0) + 1
                outcome = "dead" if max_deliver is not None and attempt >= max_deliver else "retry"
                if outcome == "retry":
                    failures[event.id] = attempt
                    while len(failures) > _REMEMBERED_FAILURES:
                        failures.popitem(last=False)
                EVENTS_HANDLED.labels(consumer, event.type, outcome).inc()
                log.exception(
                    "handler failed",
                    extra={
                        "consumer": consumer,
                        "event_id": event.id,
                        "event_type": event.type,
                        "outcome": outcome,
                    },
                )
                raise
            finally:
                HANDLER_SECONDS.labels(consumer).observe(time.perf_counter() - started)
            failures.pop(event.id, None)
            EVENTS_HANDLED.labels(consumer, event.type, "ok").inc()
            context = inject()
            return [e if e.traceparent else e.with_extensions(**context) for e in emitted]

    return handle
