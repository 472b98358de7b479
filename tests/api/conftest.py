"""The gateway on real stores: a tenant with one user per kind of caller, a shared case, tokens from
``POST /auth/token``, and one prepared request per route (`CALLS`) that the route tests share."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from aima.access.scope import Scope
from aima.identity.model import UserRecord
from aima.settings import Settings, load_settings
from functions.api.app import create_app
from functions.api.services import ApiServices

PASSWORD = "correct horse battery staple"
CALLERS = (
    "admin",
    "owner",
    "analyst",
    "viewer",
    "nonmember",
    "guest_member",
    "guest_nonmember",
    "other_admin",
    "anonymous",
)
ROLES = {
    "admin": "admin",
    "owner": "user",
    "analyst": "user",
    "viewer": "user",
    "nonmember": "user",
    "guest_member": "guest",
    "guest_nonmember": "guest",
    "other_admin": "admin",
}
MEMBERS = {"analyst": "analyst", "viewer": "viewer", "guest_member": "viewer"}  # plus the owner


def api_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Embedded settings under ``tmp_path`` with limits no test reaches, plus ``overrides``. Readiness
    checks may take long: the first one opens Milvus Lite (the app's lifespan would have, see
    `ApiServices.start`)."""
    options: dict[str, Any] = {
        "rate_limit_per_user": 100_000,
        "rate_limit_per_address": 100_000,
        "health_timeout": 30.0,
    }
    return load_settings(profile="embedded", data_dir=tmp_path / "aima", **(options | overrides))


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def login(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> dict[str, Any]:
    """The token pair of a successful ``POST /auth/token``."""
    response = await client.post("/api/v1/auth/token", data={"username": username, "password": password})
    assert response.status_code == 200, response.text
    pair: dict[str, Any] = response.json()
    return pair


@dataclass
class World:
    """Two tenants, one user per caller kind, a case of the owner shared as `MEMBERS` says, tokens."""

    services: ApiServices
    client: httpx.AsyncClient
    tenant: str
    other_tenant: str
    users: dict[str, UserRecord] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    case_id: str = ""
    target: UserRecord | None = None  # a user of the tenant that sharing routes act on

    @classmethod
    async def build(cls, services: ApiServices, client: httpx.AsyncClient) -> World:
        directory = services.directory
        world = cls(
            services,
            client,
            directory.ensure_tenant(unique("acme")),
            directory.ensure_tenant(unique("umbrella")),
        )
        # Argon2 dominates: hash and verify the passwords in parallel
        created = await asyncio.gather(
            *(
                asyncio.to_thread(
                    directory.create_user,
                    world.other_tenant if caller == "other_admin" else world.tenant,
                    unique(caller),
                    PASSWORD,
                    role,
                )
                for caller, role in ROLES.items()
            )
        )
        world.users = dict(zip(ROLES, created, strict=True))
        pairs = await asyncio.gather(*(login(client, user.username) for user in created))
        world.tokens = {caller: pair["access_token"] for caller, pair in zip(ROLES, pairs, strict=True)}
        world.target = directory.create_user(world.tenant, unique("target"), None, "user", kind="service")
        world.case_id = world.new_case()
        return world

    def new_case(self, name: str = "Harbour fire") -> str:
        """A case of the owner, shared with the analyst, the viewer and the guest member (via the kernel)."""
        cases = self.services.cases
        scope = Scope.for_tenant(self.tenant, "test")
        case_id = str(cases.create(scope, name, self.users["owner"].id)["id"])
        for caller, role in MEMBERS.items():
            cases.share(scope, case_id, self.users[caller].id, role)
        return case_id

    def service_account(self) -> UserRecord:
        return self.services.directory.create_user(self.tenant, unique("svc"), None, "user", kind="service")

    def headers(self, caller: str) -> dict[str, str]:
        token = self.tokens.get(caller)
        return {} if token is None else {"Authorization": f"Bearer {token}"}

    async def call(self, caller: str, call: Call) -> httpx.Response:
        return await self.client.request(
            call.method,
            call.path,
            headers=self.headers(caller),
            json=call.json,
            data=call.data,
            params=call.params,
        )


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    json: Any = None
    data: dict[str, str] | None = None
    params: dict[str, str] | None = None


def _share_target(world: World) -> Call:
    assert world.target is not None
    return Call("PUT", f"/api/v1/cases/{world.case_id}/members/{world.target.id}", json={"role": "viewer"})


def _unshare_target(world: World) -> Call:
    assert world.target is not None
    world.services.cases.share(
        Scope.for_tenant(world.tenant, "test"), world.case_id, world.target.id, "viewer"
    )
    return Call("DELETE", f"/api/v1/cases/{world.case_id}/members/{world.target.id}")


def _refresh(world: World) -> Call:
    principal = world.services.directory.principal(world.users["viewer"].id)
    return Call(
        "POST", "/api/v1/auth/refresh", json={"refresh_token": world.services.tokens.issue_refresh(principal)}
    )


CASE = "/api/v1/cases/{case_id}"
CALLS: dict[tuple[str, str], Callable[[World], Call]] = {
    ("GET", "/healthz"): lambda w: Call("GET", "/healthz"),
    ("GET", "/readyz"): lambda w: Call("GET", "/readyz"),
    ("GET", "/metrics"): lambda w: Call("GET", "/metrics"),
    ("GET", "/.well-known/jwks.json"): lambda w: Call("GET", "/.well-known/jwks.json"),
    ("GET", "/api/v1/auth/jwks.json"): lambda w: Call("GET", "/api/v1/auth/jwks.json"),
    ("POST", "/api/v1/auth/token"): lambda w: Call(
        "POST", "/api/v1/auth/token", data={"username": w.users["viewer"].username, "password": PASSWORD}
    ),
    ("POST", "/api/v1/auth/refresh"): _refresh,
    ("POST", "/api/v1/auth/logout"): lambda w: Call("POST", "/api/v1/auth/logout"),
    ("GET", "/api/v1/me"): lambda w: Call("GET", "/api/v1/me"),
    ("GET", "/api/v1/users"): lambda w: Call("GET", "/api/v1/users"),
    ("POST", "/api/v1/users"): lambda w: Call(
        "POST", "/api/v1/users", json={"username": unique("new"), "kind": "service"}
    ),
    ("POST", "/api/v1/users/{user_id}/disable"): lambda w: Call(
        "POST", f"/api/v1/users/{w.service_account().id}/disable"
    ),
    ("POST", "/api/v1/users/{user_id}/service-token"): lambda w: Call(
        "POST", f"/api/v1/users/{w.service_account().id}/service-token", json={"ttl": 600}
    ),
    ("GET", "/api/v1/cases"): lambda w: Call("GET", "/api/v1/cases"),
    ("POST", "/api/v1/cases"): lambda w: Call("POST", "/api/v1/cases", json={"name": "Warehouse"}),
    ("GET", CASE): lambda w: Call("GET", f"/api/v1/cases/{w.case_id}"),
    ("PATCH", CASE): lambda w: Call("PATCH", f"/api/v1/cases/{w.case_id}", json={"name": "Harbour fire II"}),
    ("DELETE", CASE): lambda w: Call("DELETE", f"/api/v1/cases/{w.new_case()}"),
    ("GET", CASE + "/members"): lambda w: Call("GET", f"/api/v1/cases/{w.case_id}/members"),
    ("PUT", CASE + "/members/{user_id}"): _share_target,
    ("DELETE", CASE + "/members/{user_id}"): _unshare_target,
    ("GET", CASE + "/media"): lambda w: Call("GET", f"/api/v1/cases/{w.case_id}/media"),
    ("GET", CASE + "/export"): lambda w: Call("GET", f"/api/v1/cases/{w.case_id}/export"),
    ("GET", "/api/v1/audit"): lambda w: Call("GET", "/api/v1/audit", params={"limit": "5"}),
    ("GET", "/api/v1/audit/export"): lambda w: Call("GET", "/api/v1/audit/export", params={"format": "csv"}),
    ("GET", "/api/v1/audit/verify"): lambda w: Call("GET", "/api/v1/audit/verify"),
    ("GET", "/api/v1/config"): lambda w: Call("GET", "/api/v1/config"),
    ("GET", "/api/v1/config/{key}"): lambda w: Call("GET", "/api/v1/config/thresholds"),
    ("PUT", "/api/v1/config/{key}"): lambda w: Call(
        "PUT", "/api/v1/config/thresholds", json={"face_match": 0.55}
    ),
    ("GET", "/api/v1/config/{key}/history"): lambda w: Call("GET", "/api/v1/config/thresholds/history"),
}
"""One request per route, prepared afresh for each call (deletions get a case of their own)."""


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return api_settings(tmp_path)


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[ApiServices]:
    opened = ApiServices.open(settings)
    yield opened
    await opened.close()


@pytest.fixture
def app(services: ApiServices) -> FastAPI:
    return create_app(services)


@pytest.fixture
async def world(services: ApiServices, app: FastAPI) -> AsyncIterator[World]:
    async with client_for(app) as client:
        yield await World.build(services, client)
