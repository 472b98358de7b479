"""Internal calls carry a delegation token bound to the tenant, actor and case the gateway authorised:
ingest takes the acting context from the token only, refuses any other credential or binding with a
401/403 problem, and writes an audit record of every refusal."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import select

from aima.access.scope import Scope
from aima.identity.errors import InvalidToken
from aima.identity.users import UserDirectory
from aima.storage.cases import CaseRepository
from aima.storage.media import MediaRepository
from aima.storage.objects import ObjectStore
from aima.storage.schema import audit_log
from aima.telemetry.health import HealthRegistry
from functions.ingest.app import AUDIENCE, create_app

from .conftest import CoreFactory, Media, World

PROBLEM = "application/problem+json"


@pytest.fixture
async def client(world: World, local_objects: ObjectStore, make_core: CoreFactory) -> Any:
    app = create_app(make_core(local_objects), tokens=world.tokens, health=HealthRegistry(timeout=1.0))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest") as http:
        yield http


def delegated(world: World, case_id: str | None = None, **claims: Any) -> str:
    return world.tokens.issue_delegation(
        audience=claims.pop("audience", AUDIENCE),
        tenant_id=claims.pop("tenant_id", world.tenant_id),
        actor=claims.pop("actor", world.owner_id),
        case_id=case_id or world.case_id,
        **claims,
    )


def bearer(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "X-AIMA-Request-ID": "req-4711", **extra}


def refusals(world: World, tenant_id: str) -> list[dict[str, Any]]:
    with world.db.engine.connect() as connection:
        rows = connection.execute(
            select(audit_log)
            .where(audit_log.c.tenant_id == tenant_id, audit_log.c.action == "internal.refused")
            .order_by(audit_log.c.seq)
        )
        return [dict(row._mapping) for row in rows]


def other_tenant(world: World) -> tuple[str, str, str]:
    """Another tenant with a user and a case of that user: (tenant, user, case)."""
    directory = UserDirectory(world.db)
    suffix = uuid.uuid4().hex[:8]
    tenant_id = directory.ensure_tenant(f"victim-{suffix}")
    user = directory.create_user(tenant_id, f"victim-{suffix}", None, "user")
    case_id = str(
        CaseRepository(world.db).create(Scope.for_tenant(tenant_id, user.id), "Theirs", user.id)["id"]
    )
    return tenant_id, user.id, case_id


async def test_a_service_token_with_a_forged_tenant_header_stores_nothing_and_is_audited(
    client: httpx.AsyncClient, world: World, media: Media
) -> None:
    victim_tenant, victim, victim_case = other_tenant(world)
    forged = bearer(world.service_token, **{"X-AIMA-Tenant": victim_tenant, "X-AIMA-Actor": victim})
    response = await client.post(f"/cases/{victim_case}/media", headers=forged, content=media["png"])
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == "urn:aima:problem:delegation-required"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert MediaRepository(world.db).list(Scope.for_tenant(victim_tenant, "test"), victim_case) == []
    [record] = refusals(world, "anonymous")
    assert (record["actor"], record["outcome"], record["case_id"]) == ("anonymous", "denied", victim_case)
    assert record["request_id"] == "req-4711"
    assert record["detail"]["reason"] == "wrong audience"
    assert record["detail"]["route"] == "POST /cases/{case_id}/media"


async def test_a_delegation_is_bound_to_its_tenant_actor_and_case(
    client: httpx.AsyncClient, world: World, media: Media
) -> None:
    victim_tenant, victim, victim_case = other_tenant(world)
    token = delegated(world)
    tried = [
        ("another case of the tenant", f"/cases/{world.other_case_id}/media", {}),
        ("another tenant's case", f"/cases/{victim_case}/media", {}),
        ("a forged tenant header", f"/cases/{world.case_id}/media", {"X-AIMA-Tenant": victim_tenant}),
        ("a forged actor header", f"/cases/{world.case_id}/media", {"X-AIMA-Actor": victim}),
    ]
    for why, path, extra in tried:
        response = await client.post(path, headers=bearer(token, **extra), content=media["png"])
        assert response.status_code == 403, why
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["type"] == "urn:aima:problem:delegation-mismatch"
    records = refusals(world, world.tenant_id)
    assert [(r["actor"], r["outcome"]) for r in records] == [(world.owner_id, "denied")] * len(tried)
    assert [r["case_id"] for r in records[:2]] == [world.other_case_id, victim_case]
    assert all(r["detail"]["delegated_case"] == world.case_id for r in records)
    assert MediaRepository(world.db).list(Scope.for_tenant(victim_tenant, "test"), victim_case) == []
    assert MediaRepository(world.db).list(world.scope(world.other_case_id), world.other_case_id) == []

    response = await client.post(
        f"/cases/{world.case_id}/media",
        headers=bearer(token, **{"X-AIMA-Tenant": world.tenant_id, "X-AIMA-Actor": world.owner_id}),
        content=media["png"],
    )
    assert response.status_code == 201, response.text
    [row] = MediaRepository(world.db).list(world.scope(), world.case_id)
    assert (row.tenant_id, row.id) == (world.tenant_id, response.json()["media_id"])


async def test_tokens_that_are_no_delegation_for_ingest_are_refused(
    client: httpx.AsyncClient, world: World, media: Media
) -> None:
    key = world.tokens.keyring.active()
    now = int(time.time())
    claims = {
        "iss": "aima",
        "aud": AUDIENCE,
        "sub": world.owner_id,
        "tid": world.tenant_id,
        "case": world.case_id,
        "scope": "media.upload",
        "kind": "delegation",
        "iat": now,
        "nbf": now,
        "exp": now + 90,
        "jti": uuid.uuid4().hex,
    }

    def signed(**changes: Any) -> str:
        return jwt.encode(
            {**claims, **changes}, key.private_key, algorithm=key.algorithm, headers={"kid": key.kid}
        )

    cases = {
        "a user's access token": (world.user_token, "wrong audience"),
        "a service token": (world.service_token, "wrong audience"),
        "another function's delegation": (delegated(world, audience="aima-function:probe"), "wrong audience"),
        "a long-lived delegation": (signed(exp=now + 3600), "lifetime too long"),
        "an expired delegation": (signed(iat=now - 200, nbf=now - 200, exp=now - 100), "token expired"),
        "another scope": (signed(scope="case.delete"), "scope does not allow media.upload"),
        "an access token's kind": (signed(kind="human", role="user"), "not a delegation"),
        "a forged signature": (delegated(world)[:-6] + "AAAAAA", "bad signature"),
        "an unknown actor": (signed(sub=str(uuid.uuid4())), "actor unknown or disabled"),
        "no case": (signed(case=None), "missing claim case"),
    }
    for why, (token, reason) in cases.items():
        response = await client.post(
            f"/cases/{world.case_id}/media", headers=bearer(token), content=media["png"]
        )
        assert response.status_code == 401, why
        assert response.json()["type"] == "urn:aima:problem:delegation-required", why
        assert refusals(world, "anonymous")[-1]["detail"]["reason"] == reason, why
    response = await client.post(f"/cases/{world.case_id}/media", headers={}, content=media["png"])
    assert response.status_code == 401
    assert refusals(world, "anonymous")[-1]["detail"]["reason"] == "no bearer token"
    assert MediaRepository(world.db).list(world.scope(), world.case_id) == []


def test_issuing_and_verifying_delegations(world: World) -> None:
    token = delegated(world, ttl=60)
    delegation = world.tokens.verify_delegation(token, audience=AUDIENCE)
    assert (delegation.tenant_id, delegation.actor, delegation.case_id) == (
        world.tenant_id,
        world.owner_id,
        world.case_id,
    )
    assert delegation.scope == "media.upload"
    assert 0 < delegation.expires_at - time.time() <= 60
    header, claims = jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})
    assert header["kid"] == world.tokens.keyring.active().kid
    assert (claims["aud"], claims["kind"], claims["exp"] - claims["iat"]) == (AUDIENCE, "delegation", 60)
    with pytest.raises(InvalidToken, match="wrong audience"):
        world.tokens.verify_delegation(token, audience="aima-function:probe")
    with pytest.raises(InvalidToken):  # no access token either
        world.tokens.verify_access(token)
    with pytest.raises(ValueError, match="lifetime"):
        delegated(world, ttl=121)
    with pytest.raises(ValueError, match="audience"):
        delegated(world, audience="aima-api")
