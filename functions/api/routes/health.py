"""Liveness, readiness and metrics: public, outside ``/api/v1``, not rate limited."""

from __future__ import annotations

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from aima.access.policy import Action
from aima.telemetry.health import HealthReport
from aima.telemetry.metrics import render
from functions.api.security import Gate, RouteTable, api_route

router = RouteTable(tags=["health"])


class Liveness(BaseModel):
    status: str


@api_route(router, "GET", "/healthz", action=Action.PUBLIC)
async def healthz() -> Liveness:
    """200 while the process runs."""
    return Liveness(status="alive")


@api_route(
    router,
    "GET",
    "/readyz",
    action=Action.PUBLIC,
    response_model=HealthReport,
    responses={503: {"model": HealthReport, "description": "A critical component is down."}},
)
async def readyz(request: Request) -> Response:
    """Every component (stores, cache, bus, rate limiter) up or down; 503 while a critical one is down."""
    report = await Gate.of(request).services.health.report()
    return JSONResponse(report.model_dump(mode="json"), status_code=200 if report.ready else 503)


@api_route(
    router,
    "GET",
    "/metrics",
    action=Action.PUBLIC,
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics() -> Response:
    """Prometheus metrics of this process."""
    body, content_type = render()
    return Response(body, headers={"Content-Type": content_type})
