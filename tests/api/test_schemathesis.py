"""Property-based conformance of the gateway to its own OpenAPI document (schemathesis), as an admin.

Every operation gets generated requests, valid and invalid, authenticated as an admin of the tenant;
path parameters alternate between generated values and real ids (a case, a service account), so
the found answers are exercised and not only the 404s. Every response must be no 5xx and conform
to what the operation declares (status, content type, headers, body schema). ``POST /auth/token``
is held to the no-5xx check only: a generated password never signs in, and a generated form may
also be refused by the OAuth2 form parser before the declared validation applies. Schema-valid
requests may be refused for what no schema can say (an upload that is no media file: 415, a taken
username: 409), so schemathesis' "valid data is accepted" check is left out. Uploads are forwarded
to the real ingest function, in-process.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import positive_data_acceptance
from schemathesis.specs.openapi.schemas import OpenApiSchema
from starlette.types import ASGIApp, Receive, Send
from starlette.types import Scope as ASGIScope

from aima.access.scope import Scope
from aima.telemetry.health import HealthRegistry
from functions.api.app import create_app
from functions.api.services import ApiServices
from functions.ingest import app as ingest_app
from tests.api.conftest import api_settings, unique

LOGIN = "/api/v1/auth/token"
# a resumable upload's parts are raw bytes, as any octet stream
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")
EXAMPLES = 20


class Admin:
    """An admin of a fresh tenant, a case of it and a service account, renewed when a test used them up."""

    def __init__(self, services: ApiServices) -> None:
        self.services = services
        directory = services.directory
        self.tenant = directory.ensure_tenant(unique("acme"))
        self.user = directory.create_user(self.tenant, unique("admin"), None, "admin")
        token = services.tokens.issue_access(directory.principal(self.user.id))
        self.headers = {"Authorization": f"Bearer {token}"}
        self.case_id = self.new_case()
        self._turn = itertools.count()

    def new_case(self) -> str:
        return str(
            self.services.cases.create(Scope.for_tenant(self.tenant, "test"), "Harbour", self.user.id)["id"]
        )

    def new_account(self) -> str:
        return self.services.directory.create_user(
            self.tenant, unique("svc"), None, "user", kind="service"
        ).id

    def real_ids(self, case: Any) -> None:
        """Every other request names a real case and user (a fresh one where the request consumes it)."""
        if next(self._turn) % 2:
            return
        parameters = case.path_parameters or {}
        if "case_id" in parameters:
            deleting = case.method.upper() == "DELETE" and case.path == "/api/v1/cases/{case_id}"
            parameters["case_id"] = self.new_case() if deleting else self.case_id
        if "user_id" in parameters:
            parameters["user_id"] = self.new_account()


class _Deferred:
    """An ASGI app that is set after the transport pointing at it was handed out."""

    app: ASGIApp | None = None

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        assert self.app is not None
        await self.app(scope, receive, send)


@pytest.fixture
def services(tmp_path: Path) -> Iterator[ApiServices]:
    """The gateway's services, calling the real ingest function in-process (uploads are forwarded)."""
    settings = api_settings(tmp_path)
    ingest = _Deferred()
    opened = ApiServices.open(settings, ingest_transport=httpx.ASGITransport(app=ingest))
    core = ingest_app.build_core(settings, bus_publish=opened.bus.publish)
    ingest.app = ingest_app.create_app(core, tokens=opened.tokens, health=HealthRegistry())
    yield opened
    asyncio.run(opened.close())


@pytest.fixture
def admin(services: ApiServices) -> Admin:
    return Admin(services)


@pytest.fixture
def api_schema(services: ApiServices) -> OpenApiSchema:
    return schemathesis.openapi.from_asgi("/api/v1/openapi.json", create_app(services))


def exercise(operation: APIOperation, admin: Admin) -> None:
    """Generated requests to one operation (valid and invalid ones), each checked."""
    strategy = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)
    )

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(case=strategy)
    def check(case: schemathesis.Case) -> None:
        admin.real_ids(case)
        checks = [not_a_server_error] if case.path == LOGIN else None
        case.call_and_validate(
            headers=admin.headers, checks=checks, excluded_checks=[positive_data_acceptance]
        )

    check()


def test_every_operation_conforms_and_never_fails(api_schema: OpenApiSchema, admin: Admin) -> None:
    failures: dict[str, str] = {}
    tested = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        tested += 1
        try:
            exercise(operation, admin)
        except (Exception, BaseExceptionGroup) as exc:  # every operation is tried; all are reported
            failures[operation.label] = f"{type(exc).__name__}: {exc}"
    assert tested >= 25
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
