"""The audit chains of no tenant through the API: ``?chain=anonymous`` (failed sign-ins and refused
tokens) and ``?chain=system`` (housekeeping). They belong to no tenant, so only the operators, the
admins of the bootstrap tenant, may verify, query and export them; reading one is audited in the
reader's own chain."""

from __future__ import annotations

import json

import pytest

from aima.storage.audit import ANONYMOUS_CHAIN
from tests.api.conftest import PASSWORD, World, login, unique
from tests.api.test_transport import problem


@pytest.fixture
async def operator(world: World) -> dict[str, str]:
    """An admin of the bootstrap tenant (where the first admin is created)."""
    directory = world.services.directory
    tenant = directory.ensure_tenant(world.services.settings.bootstrap_tenant)
    admin = directory.create_user(tenant, unique("operator"), PASSWORD, "admin")
    token = (await login(world.client, admin.username))["access_token"]
    return {"Authorization": f"Bearer {token}", "X-Tenant-Id": tenant}


async def test_operators_verify_query_and_export_the_anonymous_chain(
    world: World, operator: dict[str, str]
) -> None:
    client = world.client
    guessed = await client.post("/api/v1/auth/token", data={"username": "nobody", "password": "x" * 12})
    assert guessed.status_code == 401
    assert (await client.get("/api/v1/cases", headers={"Authorization": "Bearer forged"})).status_code == 401
    headers = {"Authorization": operator["Authorization"]}

    verified = await client.get("/api/v1/audit/verify", params={"chain": "anonymous"}, headers=headers)
    assert verified.status_code == 200, verified.text
    assert verified.json() == {"ok": True, "problems": []}
    page = await client.get("/api/v1/audit", params={"chain": "anonymous", "limit": "10"}, headers=headers)
    assert page.status_code == 200, page.text
    records = page.json()["records"]
    assert {r["tenant_id"] for r in records} == {ANONYMOUS_CHAIN}
    assert {r["action"] for r in records} >= {"auth.login", "auth.authenticate"}
    exported = await client.get(
        "/api/v1/audit/export", params={"chain": "anonymous", "format": "json"}, headers=headers
    )
    assert exported.status_code == 200, exported.text
    assert [r["seq"] for r in json.loads(exported.text)] == sorted(r["seq"] for r in records)
    system = await client.get("/api/v1/audit/verify", params={"chain": "system"}, headers=headers)
    assert system.json() == {"ok": True, "problems": []}

    reads = world.services.audit.query(operator["X-Tenant-Id"], action="audit.read")
    assert [r["detail"]["chain"] for r in reads] == ["system", "anonymous", "anonymous"]
    [export] = world.services.audit.query(operator["X-Tenant-Id"], action="audit.export")
    assert export["detail"]["chain"] == "anonymous"


async def test_other_tenants_admins_may_not_read_the_chains_of_no_tenant(world: World) -> None:
    for caller in ("admin", "other_admin"):
        for path in ("/api/v1/audit/verify", "/api/v1/audit", "/api/v1/audit/export"):
            refused = await world.client.get(
                path, params={"chain": "anonymous"}, headers=world.headers(caller)
            )
            body = problem(refused, 403, "forbidden")
            assert "bootstrap tenant" in body["detail"]
    own = await world.client.get("/api/v1/audit/verify", headers=world.headers("admin"))
    assert own.json() == {"ok": True, "problems": []}  # their own tenant's chain, as before
    unknown = await world.client.get(
        "/api/v1/audit/verify", params={"chain": "x"}, headers=world.headers("admin")
    )
    assert unknown.status_code == 422
