"""The instrumentation both adapters (the HTTP endpoint and the bus consumer) wrap a function in."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence

from opentelemetry import trace

from aima.telemetry.metrics import EVENTS_HANDLED, HANDLER_SECONDS
from aima.telemetry.tracing import extract, inject, tracer
from events.bus import Handler, Unretryable
from events.envelope import CloudEvent

log = logging.getLogger(__name__)
_REMEMBERED_FAILURES = 10_000


GiveUp = Callable[[CloudEvent, str], Awaitable[object]]


def instrument(
    consumer: str, handler: Handler, *, max_deliver: int | None = None, on_dead: GiveUp | None = None
) -> Handler:
    """``handler`` in a span (continuing the event's trace), with metrics and failure logs.

    Emitted events without a ``traceparent`` get the handler span's. A failure counts as ``dead``
    once this process has seen ``max_deliver`` failures of the same event id, or at once for one
    that can never succeed (`Unretryable`), else as ``retry``; on ``dead``, ``on_dead(event, error)``
    runs before the bus dead-letters the event (`Dispatcher.give_up`).
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
            except Exception as exc:
                attempt = failures.pop(event.id, 0) + 1
                final = isinstance(exc, Unretryable) or (max_deliver is not None and attempt >= max_deliver)
                outcome = "dead" if final else "retry"
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
                if outcome == "dead" and on_dead is not None:
                    try:
                        await on_dead(event, f"{type(exc).__name__}: {exc}")
                    except Exception:
                        log.exception("could not record the step's failure", extra={"consumer": consumer})
                raise
            finally:
                HANDLER_SECONDS.labels(consumer).observe(time.perf_counter() - started)
            failures.pop(event.id, None)
            EVENTS_HANDLED.labels(consumer, event.type, "ok").inc()
            context = inject()
            return [e if e.traceparent else e.with_extensions(**context) for e in emitted]

    return handle
