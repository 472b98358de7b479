"""The bus adapter of a function, and the instrumentation both adapters wrap its core in."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence

from opentelemetry import trace

from aima.telemetry.metrics import EVENTS_HANDLED, HANDLER_SECONDS
from aima.telemetry.tracing import extract, inject, tracer
from events.bus import EventBus, Handler, RetryPolicy, Subscription
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


async def run_worker(
    name: str, handler: Handler, types: tuple[str, ...], bus: EventBus, policy: RetryPolicy
) -> None:
    """Run ``handler`` as the durable consumer ``name`` of ``types`` until cancelled or SIGTERM.

    Starts ``bus`` and closes it on the way out (in-flight events are redelivered later).
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    on_main_thread = threading.current_thread() is threading.main_thread()
    if on_main_thread:
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await bus.start()
        wrapped = instrument(name, handler, max_deliver=policy.max_deliver)
        await bus.subscribe(Subscription(consumer=name, types=types, handler=wrapped, policy=policy))
        log.info("worker started", extra={"consumer": name, "types": list(types)})
        await stop.wait()
    finally:
        if on_main_thread:
            loop.remove_signal_handler(signal.SIGTERM)
        await bus.close()
        log.info("worker stopped", extra={"consumer": name})
