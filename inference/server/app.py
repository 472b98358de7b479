"""The FastAPI app of the model server: the v2 routes, AIMA's probes and metrics (see the package
docstring for the routes and their answers)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from aima import __version__
from aima.telemetry.health import HealthRegistry
from aima.telemetry.metrics import HTTP_REQUESTS, HTTP_SECONDS
from aima.telemetry.probes import add_probe_routes
from inference.server.protocol import V2Error, read_infer_request
from inference.server.served import ServedTextEmbedder

log = logging.getLogger(__name__)

SERVICE = "models"
"""The ``service`` label of this process's HTTP metrics."""
SERVER_NAME = "aima-models"
MAX_BODY_BYTES = 16 * 1024 * 1024


def create_app(
    served: Sequence[ServedTextEmbedder],
    *,
    health_timeout: float = 2.0,
    max_body_bytes: int = MAX_BODY_BYTES,
    preload: bool = False,
) -> FastAPI:
    """The app serving ``served`` by name; ``preload`` loads every model while starting up."""
    models = {model.name: model for model in served}
    if len(models) != len(served):
        raise ValueError("two served models share a name")
    health = HealthRegistry(timeout=health_timeout, cache_seconds=1.0)
    for model in served:
        health.add(f"model:{model.name}", _ready_check(model))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if preload:
            for model in served:
                await asyncio.to_thread(model.warm)
        log.info("model server ready", extra={"models": sorted(models)})
        try:
            yield
        finally:
            for model in served:
                model.close()

    app = FastAPI(
        title="AIMA model server",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )

    @app.exception_handler(V2Error)
    async def v2_error(_: Request, exc: V2Error) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = f"no route {request.method} {request.url.path}" if exc.status_code == 404 else exc.detail
        return JSONResponse({"error": str(message)}, status_code=exc.status_code, headers=exc.headers)

    @app.middleware("http")
    async def observe(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        HTTP_SECONDS.labels(SERVICE, route).observe(time.perf_counter() - started)
        HTTP_REQUESTS.labels(SERVICE, request.method, route, str(response.status_code)).inc()
        return response

    def model_named(name: str) -> ServedTextEmbedder:
        model = models.get(name)
        if model is None:
            raise V2Error(404, f"model {name} not found (served: {sorted(models)})")
        return model

    # -- the Open Inference Protocol ---------------------------------------------------------------

    @app.get("/v2")
    async def server_metadata() -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": __version__, "extensions": []}

    @app.get("/v2/health/live")
    async def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready() -> dict[str, bool]:
        for model in served:
            await model.ready()
        return {"ready": True}

    @app.get("/v2/models/{name}")
    async def model_metadata(name: str) -> dict[str, Any]:
        return await model_named(name).metadata()

    @app.get("/v2/models/{name}/ready")
    async def model_ready(name: str) -> dict[str, Any]:
        await model_named(name).ready()
        return {"name": name, "ready": True}

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request) -> dict[str, Any]:
        model = model_named(name)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_body_bytes:
            raise V2Error(413, f"the body has {declared} bytes; at most {max_body_bytes}")
        if "inference-header-content-length" in request.headers:
            raise V2Error(400, "the binary tensor data extension is not supported; send JSON data")
        body = await request.body()
        if len(body) > max_body_bytes:
            raise V2Error(413, f"the body has {len(body)} bytes; at most {max_body_bytes}")
        return await model.infer(read_infer_request(body))

    add_probe_routes(app, health)  # AIMA's own probes, as every function serves them

    return app


def _ready_check(model: ServedTextEmbedder) -> Callable[[], None]:
    def check() -> None:
        status = model.health()
        if not status.up:
            raise RuntimeError(status.error or status.state)

    return check
