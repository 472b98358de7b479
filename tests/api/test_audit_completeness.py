"""Every audited route (action kind read, change, export or delete) writes exactly one audit record per
call, denied and failed calls and failed authentications too; a change's record commits with it; the
chain check finds a record edited behind the API's back."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update

from aima.access.policy import ACTION_KIND, Action
from aima.access.scope import Scope
from aima.storage.audit import AuditEntry, AuditLog
from aima.storage.schema import audit_log
from functions.api.security import api_routes, route_action
from tests.api.conftest import CALLS, World, prepared

AUDITED_KINDS = {"read", "change", "export", "delete"}


def audited_routes(app: FastAPI) -> list[tuple[str, str, Action]]:
    """(method, path, action) of every route whose action's kind is audited, from the app itself."""
    found: list[tuple[str, str, Action]] = []
    for path, route in api_routes(app):
        action = route_action(route)
        assert action is not None
        if ACTION_KIND[action] in AUDITED_KINDS:
            found.extend((method, path, action) for method in sorted(route.methods or ()))
    return found


def last_seq(world: World) -> int:
    with world.services.stores.db.engine.connect() as c:
        return int(c.execute(select(func.coalesce(func.max(audit_log.c.seq), 0))).scalar_one())


def records_after(world: World, seq: int) -> list[dict[str, Any]]:
    """Every tenant's records written after ``seq``."""
    with world.services.stores.db.engine.connect() as c:
        rows = c.execute(select(audit_log).where(audit_log.c.seq > seq).order_by(audit_log.c.seq))
        return [dict(row._mapping) for row in rows]


def summary(records: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    return [(r["tenant_id"], r["actor"], r["action"], r["outcome"]) for r in records]


async def test_every_audited_route_writes_exactly_one_record_per_call(world: World, app: FastAPI) -> None:
    routes = audited_routes(app)
    assert len(routes) == 66
    admin = world.users["admin"]
    problems = []
    for method, path, action in routes:
        call = await prepared(CALLS[(method, path)](world))
        before = last_seq(world)
        response = await world.call("admin", call)
        assert response.status_code < 300, (method, path, response.text)
        records = records_after(world, before)
        # a stored file also has ingest's own record, written with its row (who stored which bytes)
        stored = [r for r in records if r["action"] == "media.store"]
        records = [r for r in records if r["action"] != "media.store"]
        if any(
            (r["tenant_id"], r["actor"], r["outcome"]) != (world.tenant, admin.id, "allowed") for r in stored
        ):
            problems.append(f"{method} {path}: media.store {summary(stored)}")
        if stored and action.value != "media.upload":
            problems.append(f"{method} {path}: a file was stored by a route that uploads nothing")
        expected = [(world.tenant, admin.id, action.value, "allowed")]
        if summary(records) != expected:
            problems.append(f"{method} {path}: {summary(records)}")
            continue
        [record] = records
        case_id = response.json()["id"] if (method, path) == ("POST", "/api/v1/cases") else None
        if "{case_id}" in path:
            case_id = call.path.split("/")[4]
        if record["case_id"] != case_id:
            problems.append(f"{method} {path}: case {record['case_id']}, expected {case_id}")
        if record["request_id"] != response.headers["x-request-id"]:
            problems.append(f"{method} {path}: request id {record['request_id']}")
    assert problems == []


async def test_unaudited_kinds_write_nothing(world: World) -> None:
    before = last_seq(world)
    for route in (("GET", "/api/v1/me"), ("GET", "/api/v1/auth/jwks.json"), ("GET", "/healthz")):
        assert (await world.call("viewer", CALLS[route](world))).status_code == 200
    assert records_after(world, before) == []


DENIED = [
    ("viewer", ("PATCH", "/api/v1/cases/{case_id}"), 403),
    ("nonmember", ("GET", "/api/v1/cases/{case_id}"), 404),
    ("guest_member", ("GET", "/api/v1/cases/{case_id}/export"), 403),
    ("owner", ("GET", "/api/v1/audit"), 403),
    ("guest_nonmember", ("POST", "/api/v1/cases"), 403),
    ("analyst", ("DELETE", "/api/v1/cases/{case_id}"), 403),
]


async def test_a_denied_call_writes_one_denied_record(world: World, app: FastAPI) -> None:
    actions = {
        (method, path): route_action(route)
        for path, route in api_routes(app)
        for method in route.methods or ()
    }
    for caller, route, status in DENIED:
        before = last_seq(world)
        response = await world.call(caller, CALLS[route](world))
        assert response.status_code == status, route
        [record] = records_after(world, before)
        action = actions[route]
        assert action is not None
        assert summary([record]) == [(world.tenant, world.users[caller].id, action.value, "denied")]
        assert record["detail"]["reason"]


async def test_a_call_that_fails_writes_one_failed_record(world: World) -> None:
    before = last_seq(world)
    missing = str(uuid.uuid4())
    response = await world.client.get(f"/api/v1/cases/{missing}", headers=world.headers("admin"))
    assert response.status_code == 404
    [record] = records_after(world, before)
    assert summary([record]) == [(world.tenant, world.users["admin"].id, "case.read", "failed")]
    assert (record["case_id"], record["detail"]["error"]) == (missing, "not-found")

    before = last_seq(world)
    renamed = await world.client.patch(
        f"/api/v1/cases/{world.case_id}", headers=world.headers("owner"), json={"name": "   "}
    )
    assert renamed.status_code == 422
    assert summary(records_after(world, before)) == [
        (world.tenant, world.users["owner"].id, "case.update", "failed")
    ]


async def test_a_failed_authentication_writes_one_record(world: World) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-jwt"}):
        before = last_seq(world)
        response = await world.client.get(f"/api/v1/cases/{world.case_id}", headers=headers)
        assert response.status_code == 401
        [record] = records_after(world, before)
        assert summary([record]) == [("anonymous", "anonymous", "auth.authenticate", "denied")]
        assert record["case_id"] == world.case_id
        assert record["detail"]["attempted"] == "case.read"

    before = last_seq(world)
    wrong = {"username": world.users["viewer"].username, "password": "wrong password!"}
    assert (await world.client.post("/api/v1/auth/token", data=wrong)).status_code == 401
    assert summary(records_after(world, before)) == [(world.tenant, "anonymous", "auth.login", "denied")]


async def test_a_change_and_its_record_commit_together(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    original = AuditLog.record_many

    def failing(self: AuditLog, session: Any, tenant_id: str, entries: Sequence[AuditEntry]) -> list[int]:
        if any(entry.action in ("case.create", "case.update") for entry in entries):
            raise RuntimeError("audit log unavailable")
        return original(self, session, tenant_id, entries)

    monkeypatch.setattr(AuditLog, "record_many", failing)
    scope = Scope.for_tenant(world.tenant, "test")
    before = len(world.services.cases.list(scope))
    created = await world.client.post("/api/v1/cases", headers=world.headers("owner"), json={"name": "Ghost"})
    assert created.status_code == 500
    assert len(world.services.cases.list(scope)) == before  # the case was rolled back with its record
    renamed = await world.client.patch(
        f"/api/v1/cases/{world.case_id}", headers=world.headers("owner"), json={"name": "Renamed"}
    )
    assert renamed.status_code == 500
    case = world.services.cases.get(scope, world.case_id)
    assert case is not None
    assert case["name"] == "Harbour fire"


async def test_the_chain_verifies_and_an_edit_through_the_engine_is_reported(world: World) -> None:
    for route in (("GET", "/api/v1/cases/{case_id}"), ("PATCH", "/api/v1/cases/{case_id}")):
        assert (await world.call("owner", CALLS[route](world))).status_code == 200
    clean = await world.client.get("/api/v1/audit/verify", headers=world.headers("admin"))
    assert clean.json() == {"ok": True, "problems": []}

    with world.services.stores.db.engine.begin() as c:
        seq = c.execute(
            select(func.min(audit_log.c.seq)).where(
                audit_log.c.tenant_id == world.tenant, audit_log.c.action == "case.update"
            )
        ).scalar_one()
        c.execute(update(audit_log).where(audit_log.c.seq == seq).values(actor="someone else"))
    tampered = await world.client.get("/api/v1/audit/verify", headers=world.headers("admin"))
    assert tampered.json() == {"ok": False, "problems": [f"record {seq} was edited"]}
