"""The probe routes every AIMA HTTP process serves: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse

from aima.telemetry.health import HealthRegistry
from aima.telemetry.metrics import render


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
