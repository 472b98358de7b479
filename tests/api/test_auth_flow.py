"""Sign-in, refresh rotation and reuse detection, logout, refused tokens, the JWKS and the OpenAPI
security scheme, through the HTTP API on real stores."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from aima.access.scope import Scope
from aima.identity.model import UserRecord
from aima.storage.schema import audit_log
from functions.api.app import create_app
from functions.api.problems import PROBLEM_JSON
from functions.api.services import ApiServices
from tests.api.conftest import PASSWORD, client_for, login, unique


@dataclass
class Env:
    services: ApiServices
    client: httpx.AsyncClient
    admin: UserRecord
    alice: UserRecord

    def bearer(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async def me(self, token: str) -> httpx.Response:
        return await self.client.get("/api/v1/me", headers=self.bearer(token))

    async def refresh(self, refresh_token: str) -> httpx.Response:
        return await self.client.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})

    def records(self, action: str) -> list[dict[str, Any]]:
        with self.services.stores.db.engine.connect() as c:
            rows = c.execute(select(audit_log).where(audit_log.c.action == action).order_by(audit_log.c.seq))
            return [dict(row._mapping) for row in rows]


@pytest.fixture
async def env(services: ApiServices, app: FastAPI) -> AsyncIterator[Env]:
    tenant = services.directory.ensure_tenant(unique("acme"))
    admin = services.directory.create_user(tenant, unique("admin"), PASSWORD, "admin")
    alice = services.directory.create_user(tenant, unique("alice"), PASSWORD, "user")
    async with client_for(app) as client:
        yield Env(services, client, admin, alice)


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


async def test_login_issues_tokens_that_work_and_is_audited(env: Env) -> None:
    pair = await login(env.client, env.alice.username)
    assert pair["token_type"] == "bearer"
    assert pair["expires_in"] == env.services.settings.access_token_ttl
    me = await env.me(pair["access_token"])
    assert me.status_code == 200
    assert me.json() | {"tenant_id": None} == {
        "user_id": env.alice.id,
        "tenant_id": None,
        "username": env.alice.username,
        "role": "user",
        "kind": "human",
        "auth": "password",
    }
    [record] = [r for r in env.records("auth.login") if r["actor"] == env.alice.id]
    assert (record["outcome"], record["tenant_id"]) == ("allowed", env.alice.tenant_id)


async def test_a_wrong_password_is_a_401_problem_and_audited(env: Env) -> None:
    response = await env.client.post(
        "/api/v1/auth/token", data={"username": env.alice.username, "password": "not the password!"}
    )
    body = problem(response, 401)
    assert body["type"] == "urn:aima:problem:unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "not the password" not in response.text
    [record] = env.records("auth.login")
    assert (record["actor"], record["outcome"], record["tenant_id"]) == (
        "anonymous",
        "denied",
        env.alice.tenant_id,
    )
    assert record["object"] == f"user/{env.alice.id}"

    unknown = await env.client.post("/api/v1/auth/token", data={"username": "nobody", "password": PASSWORD})
    problem(unknown, 401)
    assert env.records("auth.login")[-1]["tenant_id"] == "anonymous"  # no tenant to name


async def test_refresh_rotates_and_reuse_revokes_the_whole_family(env: Env) -> None:
    first = await login(env.client, env.alice.username)
    rotated = await env.refresh(first["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert (await env.me(second["access_token"])).status_code == 200

    reused = await env.refresh(first["refresh_token"])  # replayed: someone else has it
    assert "reused" in problem(reused, 401)["detail"]
    assert 'error="invalid_token"' in reused.headers["www-authenticate"]
    problem(await env.refresh(second["refresh_token"]), 401)  # the newest one is dead too
    problem(await env.refresh(second["refresh_token"]), 401)
    outcomes = [(r["actor"], r["outcome"]) for r in env.records("auth.refresh")]
    assert outcomes == [
        (env.alice.id, "allowed"),
        ("anonymous", "denied"),
        ("anonymous", "denied"),
        ("anonymous", "denied"),
    ]

    other_session = await login(env.client, env.alice.username)  # a new login starts a new family
    assert (await env.refresh(other_session["refresh_token"])).status_code == 200


async def test_logout_ends_the_session_and_its_refresh_token(env: Env) -> None:
    pair = await login(env.client, env.alice.username)
    other = await login(env.client, env.alice.username)
    response = await env.client.post(
        "/api/v1/auth/logout",
        headers=env.bearer(pair["access_token"]),
        json={"refresh_token": pair["refresh_token"]},
    )
    assert response.status_code == 204
    problem(await env.refresh(pair["refresh_token"]), 401)
    assert (await env.refresh(other["refresh_token"])).status_code == 200  # only that session ended
    [record] = env.records("auth.logout")
    assert (record["actor"], record["outcome"]) == (env.alice.id, "allowed")

    everywhere = await env.client.post("/api/v1/auth/logout", headers=env.bearer(pair["access_token"]))
    assert everywhere.status_code == 204
    problem(await env.refresh(other["refresh_token"]), 401)
    problem(await env.client.post("/api/v1/auth/logout"), 401)


async def test_expired_forged_and_missing_tokens_are_refused_and_audited(env: Env) -> None:
    key = env.services.keyring.active()
    now = int(time.time())
    claims = {
        "iss": env.services.settings.jwt_issuer,
        "aud": env.services.settings.jwt_audience,
        "sub": env.alice.id,
        "tid": env.alice.tenant_id,
        "role": "user",
        "kind": "human",
        "iat": now - 3600,
        "nbf": now - 3600,
        "exp": now - 60,
        "jti": uuid.uuid4().hex,
    }
    expired = jwt.encode(claims, key.private_key, algorithm="ES256", headers={"kid": key.kid})
    response = await env.me(expired)
    assert "token expired" in problem(response, 401)["detail"]
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'

    forged = jwt.encode(
        claims | {"exp": now + 600}, "guessed" * 8, algorithm="HS256", headers={"kid": key.kid}
    )
    problem(await env.me(forged), 401)
    missing = await env.client.get("/api/v1/cases")
    problem(missing, 401)
    assert "error=" not in missing.headers["www-authenticate"]

    refused = env.records("auth.authenticate")
    assert [(r["actor"], r["tenant_id"], r["outcome"]) for r in refused] == [
        ("anonymous", "anonymous", "denied")
    ] * 3
    assert [(r["detail"]["reason"], r["detail"]["attempted"]) for r in refused] == [
        ("token expired", "authenticated"),
        ("algorithm not allowed", "authenticated"),
        ("no bearer token", "case.list"),
    ]


async def test_a_share_and_its_end_apply_to_the_very_next_request(env: Env) -> None:
    """The gateway remembers memberships (AIMA_ACCESS_CACHE_TTL), but forgets them on every change."""
    assert env.services.settings.access_cache_ttl > 0
    alice = env.bearer((await login(env.client, env.alice.username))["access_token"])
    admin = env.bearer((await login(env.client, env.admin.username))["access_token"])
    created = await env.client.post("/api/v1/cases", json={"name": "Shared"}, headers=admin)
    case = f"/api/v1/cases/{created.json()['id']}"
    problem(await env.client.get(case, headers=alice), 404)
    shared = await env.client.put(f"{case}/members/{env.alice.id}", json={"role": "viewer"}, headers=admin)
    assert shared.status_code == 200, shared.text
    assert (await env.client.get(case, headers=alice)).status_code == 200
    ended = await env.client.delete(f"{case}/members/{env.alice.id}", headers=admin)
    assert ended.status_code == 204
    problem(await env.client.get(case, headers=alice), 404)


async def test_a_disabled_user_is_refused_at_once(env: Env) -> None:
    alice = await login(env.client, env.alice.username)
    admin = await login(env.client, env.admin.username)
    disabled = await env.client.post(
        f"/api/v1/users/{env.alice.id}/disable", headers=env.bearer(admin["access_token"])
    )
    assert disabled.status_code == 204
    assert "disabled" in problem(await env.me(alice["access_token"]), 401)["detail"]
    problem(await env.refresh(alice["refresh_token"]), 401)
    problem(
        await env.client.post(
            "/api/v1/auth/token", data={"username": env.alice.username, "password": PASSWORD}
        ),
        401,
    )


async def test_the_jwks_serves_the_key_that_verifies_access_tokens(env: Env) -> None:
    pair = await login(env.client, env.alice.username)
    served = await env.client.get("/api/v1/auth/jwks.json")
    assert served.status_code == 200
    assert served.headers["cache-control"] == "public, max-age=60"
    assert (await env.client.get("/.well-known/jwks.json")).json() == served.json()

    kid = jwt.get_unverified_header(pair["access_token"])["kid"]
    [jwk] = [k for k in served.json()["keys"] if k["kid"] == kid]
    assert "d" not in jwk  # public only
    claims = jwt.decode(
        pair["access_token"],
        jwt.PyJWK(jwk).key,
        algorithms=["ES256"],
        audience=env.services.settings.jwt_audience,
        issuer=env.services.settings.jwt_issuer,
    )
    assert (claims["sub"], claims["tid"], claims["role"]) == (env.alice.id, env.alice.tenant_id, "user")


async def test_admins_issue_tokens_for_service_accounts(env: Env) -> None:
    admin = await login(env.client, env.admin.username)
    service = env.services.directory.create_user(
        env.admin.tenant_id, unique("svc"), None, "user", kind="service"
    )
    issued = await env.client.post(
        f"/api/v1/users/{service.id}/service-token",
        headers=env.bearer(admin["access_token"]),
        json={"ttl": 120},
    )
    assert issued.status_code == 200, issued.text
    assert issued.json()["expires_in"] == 120
    me = await env.me(issued.json()["access_token"])
    assert (me.json()["user_id"], me.json()["kind"], me.json()["auth"]) == (service.id, "service", "service")
    human = await env.client.post(
        f"/api/v1/users/{env.alice.id}/service-token", headers=env.bearer(admin["access_token"])
    )
    problem(human, 409)
    problem(
        await env.client.post("/api/v1/auth/token", data={"username": service.username, "password": ""}), 422
    )


async def test_openapi_shows_the_oauth2_password_scheme(env: Env) -> None:
    response = await env.client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    assert spec["components"]["securitySchemes"]["OAuth2PasswordBearer"] == {
        "type": "oauth2",
        "flows": {"password": {"scopes": {}, "tokenUrl": "/api/v1/auth/token"}},
    }
    assert spec["paths"]["/api/v1/cases"]["get"]["security"] == [{"OAuth2PasswordBearer": []}]
    assert "security" not in spec["paths"]["/api/v1/auth/token"]["post"]
    docs = await env.client.get("/api/v1/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


async def test_the_benchmark_baseline_app_skips_authentication_and_audit(services: ApiServices) -> None:
    baseline = create_app(services, auth=False)  # benchmark-only: acts as the embedded local owner
    owner = services.directory.ensure_local_owner()
    case = services.cases.create(Scope.for_tenant(owner.tenant_id, "test"), "Baseline", owner.user_id)
    async with client_for(baseline) as client:
        response = await client.get(f"/api/v1/cases/{case['id']}")
        assert response.status_code == 200
        assert (await client.get("/api/v1/me")).json()["user_id"] == owner.user_id
    with services.stores.db.engine.connect() as c:
        assert c.execute(select(audit_log.c.seq)).first() is None


async def test_without_an_oidc_client_only_passwords_are_offered_and_the_oidc_routes_are_404(
    env: Env,
) -> None:
    """OIDC sign-in through a real provider: tests/web/test_oidc.py."""
    options = await env.client.get("/api/v1/auth/providers")
    assert options.status_code == 200
    assert options.json() == {"password": True, "oidc": None}
    for method, path in (
        ("GET", "/api/v1/auth/oidc/login"),
        ("GET", "/api/v1/auth/oidc/callback?code=c&state=s"),
        ("POST", "/api/v1/auth/oidc/session"),
    ):
        body = problem(await env.client.request(method, path), 404)
        assert "AIMA_OIDC_CLIENT_ID" in body["detail"]
