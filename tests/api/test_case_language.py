"""A case's language through the API (issue #14): given at creation, set, kept and cleared by ``PATCH``
(only the members sent change), refused with a problem when it is no ISO 639 code, and audited as
the case's other changes are."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select

from aima.storage.schema import audit_log
from tests.api.conftest import World

PROBLEM = "application/problem+json"


def case_updates(world: World) -> list[dict[str, Any]]:
    """The tenant's ``case.update`` records, oldest first."""
    with world.services.stores.db.engine.connect() as c:
        rows = c.execute(
            select(audit_log)
            .where(audit_log.c.tenant_id == world.tenant, audit_log.c.action == "case.update")
            .order_by(audit_log.c.seq)
        )
        return [dict(row._mapping) for row in rows]


async def patch(world: World, body: Any, caller: str = "owner") -> httpx.Response:
    return await world.client.patch(
        f"/api/v1/cases/{world.case_id}", headers=world.headers(caller), json=body
    )


async def test_a_case_is_created_with_a_language_and_shows_it(world: World) -> None:
    owner = world.headers("owner")
    created = await world.client.post(
        "/api/v1/cases", headers=owner, json={"name": "Interview", "language": "de"}
    )
    assert created.status_code == 201, created.text
    case_id = created.json()["id"]
    assert created.json()["language"] == "de"

    read = await world.client.get(f"/api/v1/cases/{case_id}", headers=owner)
    assert read.json()["language"] == "de"
    listed = await world.client.get("/api/v1/cases", headers=owner)
    languages = {case["id"]: case["language"] for case in listed.json()}
    assert languages == {world.case_id: None, case_id: "de"}
    exported = await world.client.get(f"/api/v1/cases/{case_id}/export", headers=owner)
    assert exported.json()["case"]["language"] == "de"


async def test_patch_sets_keeps_and_clears_the_language_and_each_change_is_audited(world: World) -> None:
    before = len(case_updates(world))

    forced = await patch(world, {"language": "gsw"}, caller="analyst")
    assert forced.status_code == 200, forced.text
    assert (forced.json()["name"], forced.json()["language"]) == ("Harbour fire", "gsw")

    renamed = await patch(world, {"name": "Harbour fire II"})
    assert (renamed.json()["name"], renamed.json()["language"]) == ("Harbour fire II", "gsw")

    both = await patch(world, {"name": "Harbour fire III", "language": "en"})
    assert (both.json()["name"], both.json()["language"]) == ("Harbour fire III", "en")

    cleared = await patch(world, {"language": None})
    assert (cleared.status_code, cleared.json()["language"]) == (200, None)

    untouched = await patch(world, {})
    assert untouched.status_code == 200
    assert (untouched.json()["name"], untouched.json()["language"]) == ("Harbour fire III", None)

    records = case_updates(world)[before:]
    assert {r["detail"].pop("route") for r in records} == {"PATCH /api/v1/cases/{case_id}"}
    summary = [(r["actor"], r["outcome"], r["case_id"], r["object"], r["detail"]) for r in records]
    obj = f"case/{world.case_id}"
    owner, analyst = world.users["owner"].id, world.users["analyst"].id
    assert summary == [
        (analyst, "allowed", world.case_id, obj, {"changed": ["language"], "language": "gsw"}),
        (owner, "allowed", world.case_id, obj, {"changed": ["name"]}),
        (owner, "allowed", world.case_id, obj, {"changed": ["language", "name"], "language": "en"}),
        (owner, "allowed", world.case_id, obj, {"changed": ["language"], "language": None}),
        (owner, "allowed", world.case_id, obj, {"changed": []}),
    ]


async def test_anything_but_an_iso_639_code_is_refused_with_a_problem(world: World) -> None:
    assert (await patch(world, {"language": "de"})).status_code == 200
    before = len(case_updates(world))
    for code in ("DE", "deut", "d", "de-CH", "", 49, ["de"]):
        refused = await patch(world, {"language": code})
        assert refused.status_code == 422, code
        assert refused.headers["content-type"].startswith(PROBLEM)
        problem = refused.json()
        assert problem["type"] == "urn:aima:problem:validation-failed"
        assert [error["loc"] for error in problem["errors"]] == [["body", "language"]], code

        created = await world.client.post(
            "/api/v1/cases", headers=world.headers("owner"), json={"name": "Interview", "language": code}
        )
        assert (created.status_code, created.headers["content-type"]) == (422, PROBLEM), code

    records = case_updates(world)[before:]
    assert {(r["outcome"], r["case_id"]) for r in records} == {("failed", world.case_id)}
    assert len(records) == 7
    read = await world.client.get(f"/api/v1/cases/{world.case_id}", headers=world.headers("owner"))
    assert read.json()["language"] == "de"


async def test_a_name_can_be_left_out_but_not_cleared(world: World) -> None:
    refused = await patch(world, {"name": None, "language": "fr"})
    assert refused.status_code == 422
    assert [error["loc"] for error in refused.json()["errors"]] == [["body", "name"]]
    unknown = await patch(world, {"lang": "fr"})
    assert unknown.status_code == 422
    read = await world.client.get(f"/api/v1/cases/{world.case_id}", headers=world.headers("owner"))
    assert (read.json()["name"], read.json()["language"]) == ("Harbour fire", None)


async def test_only_those_who_may_update_the_case_change_its_language(world: World) -> None:
    assert (await patch(world, {"language": "fr"}, caller="viewer")).status_code == 403
    assert (await patch(world, {"language": "fr"}, caller="nonmember")).status_code == 404
    read = await world.client.get(f"/api/v1/cases/{world.case_id}", headers=world.headers("owner"))
    assert read.json()["language"] is None


async def test_the_openapi_document_describes_the_language(world: World) -> None:
    document = (await world.client.get("/api/v1/openapi.json")).json()
    components = document["components"]["schemas"]
    update = components["CaseUpdate"]["properties"]
    assert "required" not in components["CaseUpdate"]
    assert update["name"]["type"] == "string"  # optional, never null
    assert {"type": "string", "pattern": "^[a-z]{2,3}$"}.items() <= update["language"]["anyOf"][0].items()
    assert {"type": "null"} in update["language"]["anyOf"]
    assert "language" in components["CaseCreate"]["properties"]
    assert "language" in components["CaseOut"]["required"]
