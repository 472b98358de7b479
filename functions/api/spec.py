"""The gateway: the only public entry (authentication, case-scoped authorisation, audit)."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from events.catalogue import CaseCreated, CaseDeleted, ConfigChanged, ReportRequested
from functions.api.app import create_app
from functions.api.services import ApiServices
from functions.runtime.deps import Deps
from functions.runtime.spec import FunctionSpec, Resources

INGEST = "ingest"


def app(deps: Deps) -> FastAPI:
    """The gateway on the process's stores and bus; ingest is called in-process when this process
    serves it too, else at ``AIMA_FUNCTION_URLS``."""
    local = deps.local_apps.get(INGEST)
    transport = httpx.ASGITransport(app=local) if local is not None else None
    services = ApiServices.open(
        deps.settings,
        stores=deps.stores,
        bus=deps.bus,
        ingest_transport=transport,
        relay=deps.relay,
        models=deps.models,
    )
    return create_app(services, close_services=True)


SPEC = FunctionSpec(
    name="api",
    description="the public gateway: authentication, case-scoped authorisation, audit, uploads to ingest",
    emits=(CaseCreated, CaseDeleted, ConfigChanged, ReportRequested),
    app=app,
    needs=("database", "objects", "documents", "vectors", "cache", "bus"),
    resources=Resources(cpu="1", memory="1Gi", concurrency=64, timeout_s=3600, min_scale=1),
    public=True,
    port=8080,
)
