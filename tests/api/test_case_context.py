"""A case's context (the analyst's free text that goes with its analysis) through the API: given at
creation, returned in every case answer, set, kept and cleared by ``PATCH``, refused with a problem when
it is too long or holds control characters other than newlines and tabs, and audited without its text."""

from __future__ import annotations

from typing import Any

import httpx

from aima.storage.cases import MAX_CONTEXT
from tests.api.conftest import World
from tests.support import last_seq, records_since

PROBLEM = "application/problem+json"
CONTEXT = "Two people were reported missing after the fire.\n\tBoth were last seen at the harbour office."


async def patch(world: World, body: Any, caller: str = "owner") -> httpx.Response:
    return await world.client.patch(
        f"/api/v1/cases/{world.case_id}", headers=world.headers(caller), json=body
    )


async def test_a_case_is_created_with_a_context_and_every_case_answer_shows_it(world: World) -> None:
    owner = world.headers("owner")
    created = await world.client.post(
        "/api/v1/cases", headers=owner, json={"name": "Harbour", "context": f"  {CONTEXT}\n"}
    )
    assert created.status_code == 201, created.text
    case_id = created.json()["id"]
    assert created.json()["context"] == CONTEXT  # trimmed

    read = await world.client.get(f"/api/v1/cases/{case_id}", headers=owner)
    assert read.json()["context"] == CONTEXT
    listed = await world.client.get("/api/v1/cases", headers=owner)
    assert {case["id"]: case["context"] for case in listed.json()} == {world.case_id: None, case_id: CONTEXT}
    exported = await world.client.get(f"/api/v1/cases/{case_id}/export", headers=owner)
    assert exported.json()["case"]["context"] == CONTEXT

    longest = await world.client.post(
        "/api/v1/cases", headers=owner, json={"name": "Long", "context": "x" * MAX_CONTEXT}
    )
    assert (longest.status_code, len(longest.json()["context"])) == (201, MAX_CONTEXT)
    blank = await world.client.post("/api/v1/cases", headers=owner, json={"name": "Blank", "context": " \n "})
    assert (blank.status_code, blank.json()["context"]) == (201, None)


async def test_patch_sets_keeps_and_clears_the_context_audited_without_its_text(world: World) -> None:
    before = last_seq(world)
    given = await patch(world, {"context": CONTEXT}, caller="analyst")
    assert (given.status_code, given.json()["context"]) == (200, CONTEXT)
    renamed = await patch(world, {"name": "Harbour fire II"})
    assert (renamed.json()["name"], renamed.json()["context"]) == ("Harbour fire II", CONTEXT)
    cleared = await patch(world, {"context": None})
    assert (cleared.status_code, cleared.json()["context"]) == (200, None)
    refused = await patch(world, {"context": "not mine to say"}, caller="viewer")
    assert refused.status_code == 403

    records = records_since(world, before)
    assert [(r["action"], r["outcome"], r["detail"]["changed"]) for r in records[:3]] == [
        ("case.update", "allowed", ["context"]),
        ("case.update", "allowed", ["name"]),
        ("case.update", "allowed", ["context"]),
    ]
    assert [(r["action"], r["outcome"]) for r in records[3:]] == [("case.update", "denied")]
    assert all("missing" not in str(r["detail"]) for r in records)


async def test_a_context_too_long_or_with_control_characters_is_refused(world: World) -> None:
    owner = world.headers("owner")
    bad = ["x" * (MAX_CONTEXT + 1), "bell\x07", "carriage\rreturn", "nul\x00", "escape\x1b[0m", 42]
    for context in bad:
        created = await world.client.post(
            "/api/v1/cases", headers=owner, json={"name": "Bad", "context": context}
        )
        assert created.status_code == 422, repr(context)
        assert created.headers["content-type"].startswith(PROBLEM)
        changed = await patch(world, {"context": context})
        assert changed.status_code == 422, repr(context)
    case = await world.client.get(f"/api/v1/cases/{world.case_id}", headers=owner)
    assert case.json()["context"] is None
