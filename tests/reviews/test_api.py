"""The review routes on the real gateway and real stores (findings written as the steps write them, no
model): who may read and decide, one audit record per call with the decision and reason, bad input,
and a decision that survives re-analysis or is reported as no longer found."""

from __future__ import annotations

from typing import Any

from aima.domain import Step
from aima.storage.findings import FindingRepository
from tests.api.conftest import World
from tests.support import CORRECTING_ROLES, last_seq, records_since

from .seed import SeededFindings, seed_findings, vision_finding

PROBLEM = "application/problem+json"


def seeded(world: World) -> SeededFindings:
    return seed_findings(world.services.stores.documents, world.tenant, world.case_id)


def case_path(world: World) -> str:
    return f"/api/v1/cases/{world.case_id}"


def review_path(world: World, finding_id: str) -> str:
    return f"{case_path(world)}/findings/{finding_id}/review"


async def test_members_read_and_analysts_and_owners_decide(world: World) -> None:
    seed = seeded(world)
    expected = CORRECTING_ROLES
    body = {"decision": "unclear", "reason": "cannot tell from this angle"}
    for caller, (read, change) in expected.items():
        headers = world.headers(caller)
        reads = [
            await world.client.get(f"{case_path(world)}/findings", headers=headers),
            await world.client.get(f"{case_path(world)}/reviews", headers=headers),
        ]
        decided = await world.client.put(review_path(world, seed.restraint), headers=headers, json=body)
        assert [r.status_code for r in reads] == [read, read], caller
        assert decided.status_code == change, (caller, decided.text)


async def test_findings_decisions_and_their_audit(world: World) -> None:
    seed = seeded(world)
    analyst = world.headers("analyst")
    before = last_seq(world)

    listed = await world.client.get(f"{case_path(world)}/findings", headers=analyst)
    assert listed.status_code == 200
    findings = {f["id"]: f for f in listed.json()["findings"]}
    assert set(findings) == {seed.restraint, seed.posture}
    assert {f["review_state"] for f in findings.values()} == {"unreviewed"}
    assert findings[seed.restraint]["kind"] == "restraint"
    assert findings[seed.posture]["evidence"][0]["frame_id"] == "frame-0001"
    assert findings[seed.restraint]["indicator_key"] != findings[seed.posture]["indicator_key"]

    body = {"decision": "confirmed", "reason": "rope visible at both wrists"}
    decided = await world.client.put(review_path(world, seed.restraint), headers=analyst, json=body)
    assert decided.status_code == 200, decided.text
    review = decided.json()
    assert (review["decision"], review["reason"], review["found"]) == ("confirmed", body["reason"], True)
    assert review["reviewer"] == world.users["analyst"].id
    assert review["finding_ids"] == [seed.restraint]
    assert review["indicator_key"] == findings[seed.restraint]["indicator_key"]

    again = {"decision": "rejected", "reason": "a scarf, seen on the next frame"}
    owner = world.headers("owner")
    assert (
        await world.client.put(review_path(world, seed.restraint), headers=owner, json=again)
    ).status_code == 200

    by_state = await world.client.get(f"{case_path(world)}/findings?state=rejected", headers=analyst)
    assert [f["id"] for f in by_state.json()["findings"]] == [seed.restraint]
    by_step = await world.client.get(
        f"{case_path(world)}/findings?step=pose&state=unreviewed", headers=analyst
    )
    assert [f["id"] for f in by_step.json()["findings"]] == [seed.posture]
    other_file = await world.client.get(f"{case_path(world)}/findings?media_id=nothing", headers=analyst)
    assert other_file.json()["findings"] == []

    [listed_review] = (await world.client.get(f"{case_path(world)}/reviews", headers=analyst)).json()[
        "reviews"
    ]
    assert listed_review["decision"] == "rejected"
    assert [(h["decision"], h["reason"]) for h in listed_review["history"]] == [
        ("confirmed", body["reason"]),
        ("rejected", again["reason"]),
    ]
    assert [h["finding_id"] for h in listed_review["history"]] == [seed.restraint, seed.restraint]

    records = records_since(world, before)
    assert [(r["action"], r["object"], r["outcome"]) for r in records] == [
        ("case.read", f"case/{world.case_id}/findings", "allowed"),
        ("case.update", f"finding/{seed.restraint}", "allowed"),
        ("case.update", f"finding/{seed.restraint}", "allowed"),
        ("case.read", f"case/{world.case_id}/findings", "allowed"),
        ("case.read", f"case/{world.case_id}/findings", "allowed"),
        ("case.read", f"case/{world.case_id}/findings", "allowed"),
        ("case.read", f"case/{world.case_id}/reviews", "allowed"),
    ]
    assert records[1]["detail"]["decision"] == "confirmed"
    assert records[1]["detail"]["reason"] == body["reason"]
    assert records[1]["detail"]["indicator_key"] == review["indicator_key"]
    assert records[2]["actor"] == world.users["owner"].id
    assert records[4]["detail"]["state"] == "unreviewed"


async def test_bad_input_and_unknown_findings(world: World) -> None:
    seed = seeded(world)
    analyst = world.headers("analyst")
    before = last_seq(world)
    bad_bodies: list[dict[str, Any]] = [
        {"decision": "approved", "reason": "fine"},
        {"decision": "confirmed"},
        {"decision": "confirmed", "reason": ""},
        {"decision": "confirmed", "reason": "   "},
        {"decision": "confirmed", "reason": "x" * 2001},
        {"decision": "confirmed", "reason": "two\nlines"},
        {"decision": "confirmed", "reason": "ok", "extra": 1},
    ]
    for body in bad_bodies:
        answer = await world.client.put(review_path(world, seed.restraint), headers=analyst, json=body)
        assert answer.status_code == 422, body
        assert answer.headers["content-type"].startswith(PROBLEM)
    missing = await world.client.put(
        review_path(world, "no-such-finding"), headers=analyst, json={"decision": "unclear", "reason": "?"}
    )
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith(PROBLEM)
    assert missing.json()["detail"] == "No such finding."
    unknown_query = await world.client.get(f"{case_path(world)}/findings?stat=confirmed", headers=analyst)
    assert unknown_query.status_code == 422
    bad_state = await world.client.get(f"{case_path(world)}/findings?state=maybe", headers=analyst)
    assert bad_state.status_code == 422
    assert (await world.client.get(f"{case_path(world)}/reviews", headers=analyst)).json()["reviews"] == []
    records = records_since(world, before)
    # an undeclared query parameter is refused before the gate (as on every route): no record
    assert [(r["outcome"], r["detail"].get("error")) for r in records] == [
        *[("failed", "validation-failed")] * len(bad_bodies),
        ("failed", "not-found"),
        ("failed", "validation-failed"),
        ("allowed", None),
    ]


async def test_a_decision_survives_reanalysis_and_is_reported_when_no_longer_found(world: World) -> None:
    seed = seeded(world)
    analyst = world.headers("analyst")
    documents = world.services.stores.documents
    body = {"decision": "confirmed", "reason": "rope visible at both wrists"}
    assert (
        await world.client.put(review_path(world, seed.restraint), headers=analyst, json=body)
    ).status_code == 200

    # the vision step runs again: the same indicator on the same frame, under a new id
    rerun = vision_finding(world.tenant, world.case_id, seed.media_id, run="run-2", confidence=0.5)
    FindingRepository(documents).replace_media(
        world.tenant, world.case_id, seed.media_id, Step.VISION, [rerun], run="run-2"
    )
    findings = (await world.client.get(f"{case_path(world)}/findings", headers=analyst)).json()["findings"]
    states = {f["id"]: f["review_state"] for f in findings}
    assert states == {rerun.id: "confirmed", seed.posture: "unreviewed"}
    [review] = (await world.client.get(f"{case_path(world)}/reviews", headers=analyst)).json()["reviews"]
    assert (review["found"], review["finding_ids"]) == (True, [rerun.id])
    assert review["history"][0]["finding_id"] == seed.restraint

    # a third run sees the restraint on another frame only: the decision is no longer found
    moved = vision_finding(world.tenant, world.case_id, seed.media_id, run="run-3", frame_id="frame-0009")
    FindingRepository(documents).replace_media(
        world.tenant, world.case_id, seed.media_id, Step.VISION, [moved], run="run-3"
    )
    [review] = (await world.client.get(f"{case_path(world)}/reviews", headers=analyst)).json()["reviews"]
    assert (review["found"], review["finding_ids"], review["decision"]) == (False, [], "confirmed")
    findings = (await world.client.get(f"{case_path(world)}/findings", headers=analyst)).json()["findings"]
    assert {f["id"]: f["review_state"] for f in findings} == {
        moved.id: "unreviewed",
        seed.posture: "unreviewed",
    }
