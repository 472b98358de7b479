"""The HTTP adapter of a function: receives CloudEvents the way Knative delivers them.

``POST /`` answers 202 with an empty body and the emitted event ids in ``X-Emitted-Event-Ids``:
a Knative broker treats any non-empty reply that is not a CloudEvent as a failed delivery.
4xx means "do not retry" and 5xx "retry" to Knative's delivery, so a bad event is rejected with
400, a failing handler answers 500 and an unreachable bus 503 (RFC 9457 problem details).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from aima.telemetry.health import HealthRegistry
from aima.telemetry.metrics import HTTP_REQUESTS, HTTP_SECONDS, render
from aima.telemetry.tracing import span_from
from events.bus import EventBus, Handler
from events.http import InvalidCloudEvent, from_http
from functions.runtime.problems import problem_response
from functions.runtime.worker import instrument

log = logging.getLogger(__name__)
REQUEST_ID = "X-Request-ID"
EMITTED_IDS = "X-Emitted-Event-Ids"
_WELL_FORMED_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def create_function_app(
    name: str,
    handler: Handler,
    *,
    publisher: EventBus | None,
    health: HealthRegistry,
    accepts: tuple[str, ...] = (),
) -> FastAPI:
    """A FastAPI app serving ``handler`` at ``POST /`` plus health and metrics endpoints.

    Emitted events are published through ``publisher`` (None: a sink that publishes nothing).
    ``accepts`` limits the event types taken (empty: any).
    """
    run = instrument(name, handler)
    app = FastAPI(title=f"aima-{name}", openapi_url=None, docs_url=None, redoc_url=None)
    observe_requests(app, name)

    @app.post("/")
    async def receive(request: Request) -> Response:
        try:
            event = from_http(request.headers, await request.body())
        except InvalidCloudEvent as exc:
            return problem_response(400, "invalid-cloudevent", "Invalid CloudEvent", str(exc))
        if accepts and event.type not in accepts:
            detail = f"{name} does not accept events of type {event.type!r}; it accepts {', '.join(accepts)}"
            return problem_response(400, "unsupported-event-type", "Unsupported event type", detail)
        with span_from(event.extensions, f"{name} receive"):
            try:
                emitted = await run(event)  # logs its own failure, with the trace id
            except Exception as exc:
                detail = f"{type(exc).__name__} while handling event {event.id}; deliver it again"
                return problem_response(500, "handler-failed", "Handler failed", detail)
            try:
                if publisher is not None:
                    await publisher.publish_many(emitted)
            except Exception as exc:
                log.exception("publishing emitted events failed", extra={"event_id": event.id})
                detail = (
                    f"{type(exc).__name__} while publishing events caused by {event.id}; deliver it again"
                )
                return problem_response(503, "publish-failed", "Emitted events not published", detail)
        return Response(status_code=202, headers={EMITTED_IDS: ",".join(e.id for e in emitted)})

    add_probe_routes(app, health)
    return app


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


def add_probe_routes(app: FastAPI, health: HealthRegistry) -> None:
    """``/healthz`` (liveness), ``/readyz`` (503 while a critical component is down), ``/metrics``."""

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        report = await health.report()
        return JSONResponse(report.model_dump(mode="json"), status_code=200 if report.ready else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        body, content_type = render()
        return Response(body, headers={"Content-Type": content_type})
