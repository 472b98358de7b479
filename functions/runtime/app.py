"""The HTTP adapter of an event function: receives CloudEvents the way a Knative Trigger delivers them.

``POST /`` takes one CloudEvent (binary or structured mode) signed by an AIMA process
(`events.signing`); anything unsigned or signed wrongly gets 401 and an audit record. It answers
202 with an empty body and the emitted event ids in ``X-Emitted-Event-Ids``: a Knative broker
treats any non-empty reply that is not a CloudEvent as a failed delivery. 4xx means "do not retry"
and 5xx "retry" to Knative's delivery, so a bad event is refused with 400, a step that can never
succeed (a model not configured or answering unusably, escaping its core) with 422, a failing
handler answers 500 and an unreachable store, bus or model 503 with ``Retry-After`` (RFC 9457
problem details).

``POST /dead-letter`` is the Trigger's dead-letter sink: Knative sends the event there, with
``knativeerrorcode``/``knativeerrordest``/``knativeerrordata`` added, once its retries ran out.
The same signature check applies; the function then settles the file's step as failed
(`Dispatcher.give_up`, as the NATS consumer does on its last attempt), so fuse never waits for ever.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response

from aima.storage.audit import AuditLog
from aima.telemetry.health import HealthRegistry
from aima.telemetry.metrics import HTTP_REQUESTS, HTTP_SECONDS
from aima.telemetry.probes import add_probe_routes
from aima.telemetry.tracing import span_from
from events.bus import Unretryable
from events.envelope import CloudEvent
from events.http import InvalidCloudEvent, from_http
from events.signing import EventSigner, InvalidSignature
from functions.runtime.dispatch import Dispatcher, RefusedEvent
from functions.runtime.problems import outage_problem, problem_response
from functions.runtime.worker import instrument

log = logging.getLogger(__name__)
REQUEST_ID = "X-Request-ID"
EMITTED_IDS = "X-Emitted-Event-Ids"
DEAD_LETTER_PATH = "/dead-letter"
"""Where a Trigger's dead-letter sink delivers (the chart's ``deadLetterSink`` names it)."""
REFUSED_TENANT = "anonymous"
"""The audit chain of refused deliveries: no tenant of an unverified event can be trusted."""
_WELL_FORMED_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def create_function_app(
    dispatcher: Dispatcher,
    *,
    signer: EventSigner | None,
    audit: AuditLog | None,
    health: HealthRegistry,
    receive_events: bool = True,
) -> FastAPI:
    """A FastAPI app for an event function: ``POST /`` (when ``receive_events``) plus health and metrics.

    ``signer`` verifies every event (None only in tests of the adapter itself); ``audit`` records
    refused deliveries.
    """
    name = dispatcher.spec.name
    app = FastAPI(title=f"aima-{name}", openapi_url=None, docs_url=None, redoc_url=None)
    observe_requests(app, name)
    if receive_events:
        run = instrument(name, dispatcher.dispatch)

        async def accept(request: Request) -> CloudEvent | Response:
            """The request's signed CloudEvent, or the problem response refusing it."""
            try:
                event = from_http(request.headers, await request.body())
            except InvalidCloudEvent as exc:
                return problem_response(400, "invalid-cloudevent", "Invalid CloudEvent", str(exc))
            if signer is not None:
                try:
                    signer.verify(event)
                except InvalidSignature as exc:
                    await _record_refusal(audit, name, request, event.id, event.type, str(exc))
                    detail = f"{exc}; {name} accepts events only from the broker or another AIMA function"
                    headers = {"WWW-Authenticate": 'Signature realm="aima-events"'}
                    return problem_response(
                        401, "unsigned-event", "Event not signed", detail, headers=headers
                    )
            return event

        @app.post("/")
        async def receive(request: Request) -> Response:
            event = await accept(request)
            if isinstance(event, Response):
                return event
            try:
                dispatcher.validate(event)
            except RefusedEvent as exc:
                return problem_response(400, "refused-event", "Event refused", str(exc))
            with span_from(event.extensions, f"{name} receive"):
                try:
                    emitted = await run(event)  # logs its own failure, with the trace id
                except Exception as exc:
                    if (outage := outage_problem(exc)) is not None:
                        return outage.to_response(request.state.request_id)
                    if isinstance(exc, Unretryable):  # delivering it again cannot help
                        return problem_response(422, "step-failed", "Step failed", str(exc))
                    detail = f"{type(exc).__name__} while handling event {event.id}; deliver it again"
                    return problem_response(500, "handler-failed", "Handler failed", detail)
            return Response(status_code=202, headers={EMITTED_IDS: ",".join(e.id for e in emitted)})

        @app.post(DEAD_LETTER_PATH)
        async def dead_letter(request: Request) -> Response:
            """A Trigger's dead-letter sink: the delivery gave up, so the file's step is settled failed."""
            event = await accept(request)
            if isinstance(event, Response):
                return event
            error = _delivery_error(event)
            log.warning(
                "event dead-lettered", extra={"event_id": event.id, "type": event.type, "error": error}
            )
            emitted = await dispatcher.give_up(event, error)
            return Response(status_code=202, headers={EMITTED_IDS: ",".join(e.id for e in emitted)})

    add_probe_routes(app, health)
    return app


def _delivery_error(event: CloudEvent) -> str:
    """What the last delivery attempt got, from the extensions Knative adds to a dead letter."""
    extra = event.extensions
    code = extra.get("knativeerrorcode")
    destination = extra.get("knativeerrordest")
    data = extra.get("knativeerrordata")
    if isinstance(data, str):
        with contextlib.suppress(ValueError):
            data = base64.b64decode(data, validate=True).decode("utf-8", "replace")
    parts = [
        f"delivery to {destination or 'the function'} failed",
        f"status {code}" if code else "no answer",
        str(data)[:500] if data else "",
    ]
    return "; ".join(part for part in parts if part)


async def _record_refusal(
    audit: AuditLog | None, function: str, request: Request, event_id: str, event_type: str, reason: str
) -> None:
    log.warning("refused an unsigned or forged event", extra={"function": function, "event_id": event_id})
    if audit is None:
        return
    client = request.client.host if request.client else None
    await asyncio.to_thread(
        audit.record_now,
        tenant_id=REFUSED_TENANT,
        actor="unauthenticated",
        action="event.refused",
        outcome="denied",
        object=f"function/{function}",
        request_id=getattr(request.state, "request_id", None),
        client=client,
        detail={"event_id": event_id[:128], "type": event_type[:200], "reason": reason},
    )


def observe_requests(app: FastAPI, name: str) -> None:
    """Time and count every request by route template, and answer with ``X-Request-ID``.

    The id is the caller's when well formed, else a new one; it is left in ``request.state.request_id``,
    where a route may replace it (e.g. with an id a trusted caller forwarded).
    """

    @app.middleware("http")
    async def observe(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        incoming = request.headers.get(REQUEST_ID, "")
        request.state.request_id = incoming if _WELL_FORMED_ID.match(incoming) else uuid.uuid4().hex
        started = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        HTTP_SECONDS.labels(name, route).observe(time.perf_counter() - started)
        HTTP_REQUESTS.labels(name, request.method, route, str(response.status_code)).inc()
        response.headers[REQUEST_ID] = request.state.request_id
        return response


def well_formed_id(value: str) -> bool:
    """Whether ``value`` may be used as a request id (1-128 of ``A-Za-z0-9._:-``)."""
    return _WELL_FORMED_ID.match(value) is not None
