"""The gateway app: transport middleware, problem details, the routers, and the route check.

``create_app(services)`` builds it around injected `ApiServices` (tests, benchmarks);
``uvicorn --factory functions.api.app:app_from_env`` serves it with services opened from ``AIMA_*``.
OpenAPI is at ``/api/v1/openapi.json``, the interactive docs at ``/api/v1/docs``; ``/healthz``,
``/readyz`` and ``/metrics`` are public and not rate limited.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError

from aima import __version__
from aima.identity.model import Principal
from aima.settings import get_settings
from aima.telemetry.logging import setup_logging
from aima.telemetry.tracing import setup_tracing
from functions.api.middleware import install_middleware
from functions.api.problems import install_problem_handlers
from functions.api.routes import (
    audit,
    cases,
    config,
    health,
    jobs,
    media,
    persons,
    playback,
    reports,
    reviews,
    search,
    signin,
    speakers,
    transcripts,
    users,
)
from functions.api.routes import auth as auth_routes
from functions.api.routes import images as pictures
from functions.api.security import API_PREFIX, Gate, assert_routes_declared, audit_invalid_request
from functions.api.services import ApiServices
from functions.api.webapp import WebApp

DOCS_URL = f"{API_PREFIX}/docs"
# FastAPI's own telemetry (where it has it) keeps its server span, which the request-context middleware
# reuses; spans per dependency, endpoint and serialisation would cost more than they tell
_TELEMETRY: dict[str, Any] = (
    {"telemetry": {"operation_spans": False}} if "telemetry" in inspect.signature(FastAPI).parameters else {}
)


def create_app(
    services: ApiServices,
    *,
    auth: bool = True,
    principal: Principal | None = None,
    close_services: bool = False,
) -> FastAPI:
    """The gateway around ``services``; its lifespan starts the bus (and closes the services on
    shutdown if ``close_services``). Raises `security.UndeclaredRoute` if a route names no action.

    ``auth=False`` is for the benchmark baseline ONLY: every request acts as ``principal`` (default:
    the embedded local owner, an admin) without token check, rate limit per user or audit record.
    """
    if not auth and principal is None:
        principal = services.directory.ensure_local_owner()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await services.start()
        try:
            yield
        finally:
            if close_services:
                await services.close()

    app = FastAPI(
        title="AIMA API",
        version=__version__,
        description="AI Media Analysis: cases, media and their analysis, for authorised investigators.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=DOCS_URL,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=f"{DOCS_URL}/oauth2-redirect",
        lifespan=lifespan,
        **_TELEMETRY,
    )
    app.state.gate = Gate(services, auth=auth, principal=principal)
    install_problem_handlers(app)
    app.add_exception_handler(RequestValidationError, audit_invalid_request)
    install_middleware(
        app,
        services.settings,
        rate_limiter=services.limiter,
        body_limit_exempt_paths=media.UPLOAD_PATHS,
        docs_paths=(DOCS_URL,),
    )
    health.router.install(app)
    auth_routes.well_known.install(app)
    routes = (
        auth_routes,
        signin,
        users,
        cases,
        media,
        pictures,
        playback,
        transcripts,
        search,
        speakers,
        persons,
        reviews,
        reports,
        jobs,
        audit,
        config,
    )
    for module in routes:
        module.router.install(app, prefix=API_PREFIX)
    assert_routes_declared(app)
    # what no route matches: the review workspace's files (functions/api/web), else the router's 404
    app.router.default = WebApp(app.router.default)
    return app


def app_from_env() -> FastAPI:
    """The served gateway: settings from the environment, logs and traces set up, services opened."""
    settings = get_settings()
    setup_logging(settings.log_level, settings.log_json, service="api")
    setup_tracing(settings.service_name)
    return create_app(ApiServices.open(settings), close_services=True)
