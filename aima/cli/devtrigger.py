"""The trigger of ``aima dev up --delivery http``: JetStream to each function's ``POST /``.

In a cluster a Knative Trigger on a JetStream-backed Broker POSTs every event a function subscribes
to as a CloudEvent and redelivers it when the answer is an error. Here one process does that for
every event function: it pulls the function's durable consumer (the same consumer name as bus
delivery) and POSTs each event in binary mode. A 2xx acknowledges the event; 400, 401, 404 and 422
(invalid, unsigned or refused, a step that can never succeed) send it to the dead letters at once;
anything else, or no answer, is retried with the bus's backoff. Events keep their ``aimasig``
signature on the way, which each function checks. The functions, served with
``AIMA_DELIVERY=http``, subscribe nothing themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import httpx
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from aima.settings import Settings
from events.bus import EventBus, Handler, Subscription, Unretryable
from events.envelope import CloudEvent
from events.factory import bus_from_settings, retry_policy_from_settings
from events.http import to_binary

log = logging.getLogger(__name__)

FINAL = frozenset({400, 401, 404, 422})
"""Answers that delivering the event again cannot change."""


def deliverer(client: httpx.AsyncClient, name: str, url: str, timeout: float) -> Handler:
    """The bus handler that POSTs an event to ``url`` (see the module docstring)."""

    async def deliver(event: CloudEvent) -> Sequence[CloudEvent]:
        headers, body = to_binary(event)
        answer = await client.post(url, headers=headers, content=body, timeout=timeout)
        if answer.is_success:
            return []
        detail = f"{name} answered {answer.status_code} to {event.type} {event.id}: {answer.text[:200]}"
        if answer.status_code in FINAL:
            raise Unretryable(detail)
        raise RuntimeError(detail)

    return deliver


async def run_trigger(settings: Settings, urls: Mapping[str, str], port: int) -> None:
    """Deliver every function in ``urls`` (name -> base URL) until SIGTERM; serve ``/readyz`` on
    ``port`` (ready while the bus answers)."""
    from functions.runtime.spec import discover

    specs = discover()
    bus: EventBus = bus_from_settings(settings)  # publishes nothing, so it signs nothing
    policy = retry_policy_from_settings(settings)
    app = FastAPI(title="aima-trigger", openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        try:
            await bus.health()
        except Exception as exc:
            down = {"bus": {"status": "down", "error": str(exc)}}
            return JSONResponse({"status": "degraded", "components": down}, 503)
        return JSONResponse({"status": "ok", "components": {"bus": {"status": "up"}}})

    await bus.start()
    async with httpx.AsyncClient() as client:
        try:
            for name, base in sorted(urls.items()):
                spec = specs[name]
                handler = deliverer(client, name, base.rstrip("/") + "/", float(spec.resources.timeout_s))
                await bus.subscribe(Subscription(name, spec.types, handler, policy))
                log.info("trigger started", extra={"consumer": name, "url": base})
            server = uvicorn.Server(
                uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
            )
            await server.serve()
        finally:
            await bus.close()
