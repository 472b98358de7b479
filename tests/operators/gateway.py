"""The real gateway (``functions.api``, its job routes) on real stores for the operator's tests: a
tenant, a case with two probed files, and the operator's service account (an analyst of the case)
with a service token, as a platform admin would set it up. No scheduler runs: the tests move jobs
with the kernel's repository and step ledger, as the scheduler and the functions would.

`Gateway.transport` records every call; `Faults` answers chosen calls with a failure before they
reach the gateway (a 5xx, a 429, a refused connection), as a proxy or an outage would.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from aima.access.scope import Scope
from aima.domain import Job, JobPhase, StepState
from aima.samples import write_pattern_png
from aima.storage.job_steps import JobSteps
from aima.storage.jobs import JobRepository
from events.bus_memory import MemoryBus
from functions.api.app import create_app
from functions.api.services import ApiServices
from functions.ingest.spec import app as ingest_app
from functions.runtime.deps import Deps
from tests.api.conftest import api_settings, unique
from tests.support import add_media

URL = "http://aima-api"
ESTIMATE = {
    "gpu_profile": "l4",
    "currency": "EUR",
    "files": 2,
    "media_s": 0.0,
    "basis": "probed",
    "per_step": {
        "probe": {"units": 2, "model_s": 2.0, "gpu_s": 0.0, "cost": 0.0},
        "faces": {"units": 2, "model_s": 10.0, "gpu_s": 10.0, "cost": 0.4},
    },
    "model_s": 340.0,
    "gpu_s": 300.0,
    "wall_s": 95.0,
    "cost": 12.4,
}


@dataclass
class Fault:
    method: str
    suffix: str
    status: int | None  # None: the connection is refused
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Gateway:
    """The gateway app and what the tests need of its stores."""

    services: ApiServices
    app: FastAPI
    tenant: str
    case_id: str
    media_ids: list[str]
    operator_id: str
    token: str
    calls: list[tuple[str, str]] = field(default_factory=list)
    submitted: list[dict[str, Any]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)

    @property
    def scope(self) -> Scope:
        return Scope.for_case(self.tenant, self.case_id, "test")

    @property
    def jobs(self) -> JobRepository:
        return JobRepository(self.services.stores.db)

    def transport(self) -> httpx.AsyncBaseTransport:
        return _Recording(self, httpx.ASGITransport(app=self.app))

    def fail_next(self, method: str, suffix: str, status: int | None, **headers: str) -> None:
        """Answer the next ``method`` call whose path ends with ``suffix`` with ``status`` (a problem),
        or refuse its connection (``None``)."""
        self.faults.append(Fault(method, suffix, status, headers))

    def parents(self) -> list[Job]:
        return self.jobs.parents(self.scope, self.case_id)

    def job(self, job_id: str) -> Job:
        job = self.jobs.get(self.scope, job_id)
        assert job is not None
        return job

    def move(self, job_id: str, *phases: JobPhase, reason: str | None = None) -> None:
        """Move a job through ``phases`` as the scheduler and the functions would (``reason``: the
        last move's)."""
        for index, phase in enumerate(phases):
            last = index == len(phases) - 1
            self.jobs.move(self.scope, job_id, phase, reason=reason if last else None)

    def estimate(self, job_id: str) -> None:
        """Record the job's estimate (`ESTIMATE`), as the scheduler does when it admits the job."""
        self.jobs.set_fields(self.scope, job_id, estimate=ESTIMATE)

    def plan(self, job_id: str, *steps: str) -> None:
        """Plan ``steps`` for each file of the job (one unit each), as the scheduler does."""
        ledger = JobSteps(self.services.stores.db)
        for child in self.jobs.children(self.scope, job_id):
            ledger.plan(self.scope, child, dict.fromkeys(steps, 1.0))

    def end(self, job_id: str, step: str, state: StepState, files: int | None = None) -> None:
        """End ``step`` in ``state`` for the job's first ``files`` files (all by default)."""
        ledger = JobSteps(self.services.stores.db)
        for child in self.jobs.children(self.scope, job_id)[:files]:
            ledger.begin(self.scope, child, step, worker="test", lease_s=60)
            ledger.finish(self.scope, child.id, step, state)


class _Recording(httpx.AsyncBaseTransport):
    def __init__(self, gateway: Gateway, inner: httpx.AsyncBaseTransport) -> None:
        self._gateway = gateway
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        gateway = self._gateway
        path = request.url.raw_path.decode().partition("?")[0]
        gateway.calls.append((request.method, path))
        for fault in gateway.faults:
            if fault.method == request.method and path.endswith(fault.suffix):
                gateway.faults.remove(fault)
                if fault.status is None:
                    raise httpx.ConnectError("connection refused", request=request)
                body = {
                    "type": "urn:aima:problem:test",
                    "title": "Injected",
                    "status": fault.status,
                    "detail": "a fault",
                }
                return httpx.Response(fault.status, json=body, headers=fault.headers)
        if request.method == "POST" and path.endswith("/jobs"):
            gateway.submitted.append(json.loads(await request.aread()))
        return await self._inner.handle_async_request(request)


def _png() -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        return write_pattern_png(Path(folder) / "p.png", width=16, height=12).read_bytes()


@asynccontextmanager
async def gateway_on(tmp_path: Path) -> AsyncIterator[Gateway]:
    """The gateway on embedded stores under ``tmp_path``, set up as the module docstring says."""
    settings = api_settings(tmp_path)
    bus = MemoryBus()
    services = ApiServices.open(
        settings, ingest_transport=httpx.ASGITransport(app=ingest_app(Deps(settings, bus=bus)))
    )
    try:
        directory = services.directory
        tenant = directory.ensure_tenant(unique("acme"))
        owner = directory.create_user(tenant, unique("owner"), None, "user", kind="service")
        operator = directory.create_user(tenant, unique("aj-operator"), None, "user", kind="service")
        case_id = str(services.cases.create(Scope.for_tenant(tenant, "test"), "Harbour fire", owner.id)["id"])
        services.cases.share(Scope.for_tenant(tenant, "test"), case_id, operator.id, "analyst")
        scope = Scope.for_case(tenant, case_id, "test")
        media_ids = []
        for name in ("cam-03.png", "cam-04.png"):
            media_id, _ = add_media(
                services.stores.objects,  # type: ignore[arg-type]
                services.media,
                scope,
                case_id,
                _png(),
                content_type="image/png",
                filename=name,
            )
            services.media.set_probed(scope, media_id, kind="image", metadata={})
            media_ids.append(media_id)
        token = services.tokens.issue_service_token(directory.principal(operator.id), 3600)
        yield Gateway(services, create_app(services), tenant, case_id, media_ids, operator.id, token)
    finally:
        await services.close()
        await bus.close()
