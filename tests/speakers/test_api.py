"""The speaker routes on the real gateway: who may read and correct, one audit record per call, problems
for corrections that cannot be made, and corrections made over HTTP applied to a re-analysis."""

from __future__ import annotations

import uuid
from typing import Any

from inference.cpu.voices import ResemblyzerVoiceEmbedder
from tests.api.conftest import World
from tests.support import CORRECTING_ROLES, last_seq, records_since

from .conftest import MAN, WOMAN, Recording
from .env import Env
from .seed import seed_speakers


def seeded(world: World) -> Any:
    stores = world.services.stores
    return seed_speakers(stores.documents, stores.vectors, world.tenant, world.case_id)


def base(world: World) -> str:
    return f"/api/v1/cases/{world.case_id}/speakers"


async def test_members_read_and_analysts_and_owners_correct(world: World) -> None:
    seed = seeded(world)
    expected = CORRECTING_ROLES
    for caller, (read, change) in expected.items():
        listed = await world.client.get(base(world), headers=world.headers(caller))
        renamed = await world.client.patch(
            f"{base(world)}/{seed.first}", headers=world.headers(caller), json={"name": f"by {caller}"}
        )
        assert (listed.status_code, renamed.status_code) == (read, change), caller
    listed = await world.client.get(base(world), headers=world.headers("viewer"))
    first, second = listed.json()
    assert (first["id"], first["display_name"], first["name"]) == (seed.first, "by analyst", "by analyst")
    assert (second["display_name"], second["name"]) == ("Speaker 2", None)
    [media] = first["media"]
    assert (media["media_id"], media["labels"], media["transcript_version"]) == (seed.media_id, ["S1"], 1)
    assert [turn["segment_id"] for turn in media["turns"]] == seed.segments[0::2]
    assert media["seconds"] == first["seconds"] == 4.0


async def test_every_call_writes_one_audit_record(world: World) -> None:
    seed = seeded(world)
    owner = world.users["owner"].id
    calls = [
        ("GET", base(world), None, 200, "allowed"),
        ("PATCH", f"{base(world)}/{seed.first}", {"name": "Witness"}, 200, "allowed"),
        ("POST", f"{base(world)}/{seed.first}/merge", {"speaker_id": seed.first}, 422, "failed"),
        ("POST", f"{base(world)}/{seed.first}/merge", {"speaker_id": str(uuid.uuid4())}, 404, "failed"),
        ("POST", f"{base(world)}/{seed.first}/split", {"media_id": seed.media_id}, 422, "failed"),
        (
            "POST",
            f"{base(world)}/{seed.first}/split",
            {"media_id": seed.media_id, "speaker": "S1"},
            422,
            "failed",
        ),
        (
            "POST",
            f"{base(world)}/{seed.first}/split",
            {"media_id": seed.media_id, "segment_ids": ["nope"]},
            422,
            "failed",
        ),
        (
            "POST",
            f"{base(world)}/{seed.first}/split",
            {"media_id": seed.media_id, "segment_ids": seed.segments[:1]},
            201,
            "allowed",
        ),
        ("POST", f"{base(world)}/{seed.second}/merge", {"speaker_id": seed.first}, 200, "allowed"),
        ("PATCH", f"{base(world)}/{seed.first}", {"name": "again"}, 404, "failed"),
    ]
    for method, path, body, status, outcome in calls:
        before = last_seq(world)
        response = await world.client.request(method, path, headers=world.headers("owner"), json=body)
        assert response.status_code == status, (method, path, body, response.text)
        if status >= 400:
            assert response.headers["content-type"] == "application/problem+json"
        [record] = records_since(world, before)
        action = "case.read" if method == "GET" else "case.update"
        assert (record["actor"], record["action"], record["outcome"], record["case_id"]) == (
            owner,
            action,
            outcome,
            world.case_id,
        ), (method, path, body)
        if method != "GET" and outcome == "allowed":
            assert record["object"] == f"speaker/{path.split('/')[6]}"
            assert record["detail"]["correction"] in ("rename", "merge", "split")
    merged = await world.client.patch(
        f"{base(world)}/{seed.first}", headers=world.headers("owner"), json={"name": "x"}
    )
    assert seed.second in merged.json()["detail"]
    listed = (await world.client.get(base(world), headers=world.headers("owner"))).json()
    assert next((s["id"], s["display_name"], s["origin"]) for s in listed) == (
        seed.second,
        "Witness",
        "analysis",
    )
    [split] = [s for s in listed if s["origin"] == "split"]
    assert [t["segment_id"] for m in split["media"] for t in m["turns"]] == seed.segments[:1]
    transcript = world.services.stores.documents.find_one(
        "transcripts", {"tenant_id": world.tenant, "case_id": world.case_id, "media_id": seed.media_id}
    )
    assert transcript is not None
    labels = [(s["speaker"], s["case_speaker_id"]) for s in transcript["segments"]]
    assert labels == [("S3", split["id"]), ("S2", seed.second), ("S1", seed.second), ("S2", seed.second)]


async def test_corrections_made_over_http_hold_when_the_file_is_analysed_again(
    world: World,
    embedder: ResemblyzerVoiceEmbedder,
    alternating: Recording,
) -> None:
    stores = world.services.stores
    env = Env(stores.documents, stores.objects, stores.vectors, lambda: embedder, world.tenant, world.case_id)
    media_id = str(uuid.uuid4())
    first = await env.analyse(alternating, media_id)
    ids = dict(zip(alternating.voices(), first.case_speakers(), strict=False))
    headers = world.headers("analyst")
    assert (
        await world.client.patch(f"{base(world)}/{ids[WOMAN]}", headers=headers, json={"name": "Anna"})
    ).status_code == 200
    split = await world.client.post(
        f"{base(world)}/{ids[MAN]}/split",
        headers=headers,
        json={"media_id": media_id, "segment_ids": [first.transcript.speech[5].id], "name": "Ben"},  # type: ignore[union-attr]
    )
    assert split.status_code == 201, split.text
    again = await env.analyse(alternating, media_id, shift=0.03)
    names = env.speakers.display_names(world.tenant, world.case_id)
    assert [names[sid] for sid in again.case_speakers() if sid] == [
        "Anna",
        "Speaker 2",
        "Anna",
        "Speaker 2",
        "Anna",
        "Ben",
    ]
