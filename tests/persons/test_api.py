"""The person routes on the real gateway and real stores (persons and tracks written through the
repository, no face model): the list, a gallery, unassigned tracks, corrections, who may read and
correct, one audit record per call, and problems for what cannot be done."""

from __future__ import annotations

import io
import uuid
from typing import Any

from aima.access.scope import Scope
from aima.storage.persons import PersonRepository
from aima.storage.retention import PROBES
from tests.api.conftest import World, unique_png
from tests.support import CORRECTING_ROLES, add_media, last_seq, records_since

from .seed import REASON, SeededPersons, person_track, seed_persons

PROBLEM = "application/problem+json"


def seeded(world: World) -> SeededPersons:
    return seed_persons(world.services.stores.documents, world.tenant, world.case_id)


def base(world: World) -> str:
    return f"/api/v1/cases/{world.case_id}/persons"


def crop_path(world: World, media_id: str, track_id: str) -> str:
    label = track_id.rsplit("-", 1)[1]
    track = PersonRepository(world.services.stores.documents).tracks_by_id(
        world.tenant, world.case_id, [track_id]
    )[track_id]
    return f"/api/v1/cases/{world.case_id}/media/{media_id}/crops/{track.frame_id}/v1-{label}.jpg"


async def test_members_read_and_analysts_and_owners_correct(world: World) -> None:
    seed = seeded(world)
    expected = CORRECTING_ROLES
    for caller, (read, change) in expected.items():
        headers = world.headers(caller)
        reads = [
            await world.client.get(base(world), headers=headers),
            await world.client.get(f"{base(world)}/unassigned", headers=headers),
            await world.client.get(f"{base(world)}/{seed.first}", headers=headers),
        ]
        changes = [  # allowed: a rename, and refusals that come after the permission check
            await world.client.patch(f"{base(world)}/{seed.first}", headers=headers, json={"name": caller}),
            await world.client.post(
                f"{base(world)}/{seed.first}/split", headers=headers, json={"track_ids": ["x"]}
            ),
            await world.client.post(
                f"{base(world)}/{seed.first}/merge", headers=headers, json={"into": seed.first}
            ),
        ]
        assert [r.status_code for r in reads] == [read] * 3, caller
        allowed = [200, 422, 422] if change == 200 else [change] * 3
        assert [r.status_code for r in changes] == allowed, caller
        for response in [*reads, *changes]:
            if response.status_code >= 400:
                assert response.headers["content-type"] == PROBLEM
    listed = (await world.client.get(base(world), headers=world.headers("viewer"))).json()
    assert [(p["id"], p["display_name"]) for p in listed["persons"]] == [
        (seed.first, "analyst"),
        (seed.second, "Person 2"),
    ]


async def test_the_list_a_gallery_and_the_unassigned_tracks(world: World) -> None:
    seed = seeded(world)
    one, two = seed.media
    headers = world.headers("viewer")
    listed = (await world.client.get(base(world), headers=headers)).json()
    assert listed["unassigned"] == 1
    first, second = listed["persons"]
    assert (first["id"], first["number"], first["name"], first["display_name"], first["origin"]) == (
        seed.first,
        1,
        None,
        "Person 1",
        "analysis",
    )
    assert (first["track_count"], first["media_count"], second["track_count"], second["media_count"]) == (
        3,
        2,
        2,
        1,
    )
    assert {(m["media_id"], m["tracks"], m["first_s"], m["last_s"]) for m in first["media"]} == {
        (one, 2, 1.0, 12.0),
        (two, 1, 0.5, 2.5),
    }
    assert first["best_crop_url"] == crop_path(world, one, seed.first_tracks[0])
    assert second["best_crop_url"] == crop_path(world, one, seed.second_tracks[0])

    gallery = (await world.client.get(f"{base(world)}/{seed.first}", headers=headers)).json()
    assert {k: v for k, v in gallery.items() if k != "gallery"} == first
    assert [t["id"] for t in gallery["gallery"]] == seed.first_tracks
    assert [t["quality"] for t in gallery["gallery"]] == [0.9, 0.7, 0.6]
    best = gallery["gallery"][0]
    assert (best["media_id"], best["label"], best["first_s"], best["last_s"]) == (one, "F3", 10.0, 12.0)
    assert (best["linked_by"], best["score"], best["faces"], best["faces_version"]) == (
        "analysis",
        0.95,
        5,
        1,
    )
    assert best["frame_id"] == "f0000010000"
    assert best["crop_url"] == crop_path(world, one, best["id"])
    assert not {"crop_key", "vector"} & set(best)

    [lone] = (await world.client.get(f"{base(world)}/unassigned", headers=headers)).json()
    assert (lone["id"], lone["media_id"], lone["label"], lone["reason"]) == (
        seed.unassigned,
        two,
        "F2",
        REASON,
    )
    assert lone["crop_url"] == crop_path(world, two, seed.unassigned)
    assert not {"person_id", "linked_by", "score"} & set(lone)


async def test_a_crop_url_is_served_by_the_image_route(world: World) -> None:
    stores = world.services.stores
    scope = Scope.for_case(world.tenant, world.case_id, "test")
    media_id, prefix = add_media(
        stores.objects,  # type: ignore[arg-type]
        world.services.media,
        scope,
        world.case_id,
        unique_png(),
        content_type="image/png",
        filename="still.png",
    )
    repository = PersonRepository(stores.documents)
    person = repository.create(world.tenant, world.case_id, str(uuid.uuid4()))
    track = person_track(world.tenant, world.case_id, media_id, "F1", person.id, quality=0.8, first_s=0.0)
    repository.save_tracks([track])
    crop = unique_png()
    assert track.crop_key is not None
    stores.objects.put(track.crop_key, io.BytesIO(crop), content_type="image/png")
    where = {"_id": media_id, "tenant_id": world.tenant, "case_id": world.case_id}
    frame = {"frame_id": track.frame_id, "object_key": f"{prefix}/frames/0.jpg", "timestamp_s": 0.0}
    stores.documents.update_one(PROBES, where, {"$set": {"frames": [frame]}}, upsert=True)

    listed = (await world.client.get(base(world), headers=world.headers("guest_member"))).json()
    [found] = [p for p in listed["persons"] if p["id"] == person.id]
    image = await world.client.get(found["best_crop_url"], headers=world.headers("guest_member"))
    assert image.status_code == 200, image.text
    assert (image.content, image.headers["x-aima-blurred"]) == (crop, "false")


async def test_rename_merge_and_split(world: World) -> None:
    seed = seeded(world)
    headers = world.headers("analyst")
    renamed = await world.client.patch(
        f"{base(world)}/{seed.second}", headers=headers, json={"name": "  Ann  Lee "}
    )
    assert renamed.status_code == 200, renamed.text
    assert (renamed.json()["name"], renamed.json()["display_name"], renamed.json()["track_count"]) == (
        "Ann Lee",
        "Ann Lee",
        2,
    )

    merged = await world.client.post(
        f"{base(world)}/{seed.second}/merge", headers=headers, json={"into": seed.first}
    )
    assert merged.status_code == 200, merged.text
    kept = merged.json()
    assert (kept["id"], kept["name"], kept["track_count"], kept["media_count"]) == (
        seed.first,
        "Ann Lee",
        5,
        2,
    )
    for method, suffix, body in [
        ("GET", "", None),
        ("PATCH", "", {"name": "x"}),
        ("POST", "/merge", {"into": seed.first}),
        ("POST", "/split", {"track_ids": seed.second_tracks[:1]}),
    ]:
        gone = await world.client.request(
            method, f"{base(world)}/{seed.second}{suffix}", headers=headers, json=body
        )
        assert gone.status_code == 404, (method, suffix)
        assert gone.headers["content-type"] == PROBLEM
        assert gone.json()["merged_into"] == seed.first
        assert seed.first in gone.json()["detail"]

    moved = [seed.second_tracks[1], seed.first_tracks[2]]
    split = await world.client.post(
        f"{base(world)}/{seed.first}/split", headers=headers, json={"track_ids": moved, "name": "Bea"}
    )
    assert split.status_code == 201, split.text
    new = split.json()
    assert (new["number"], new["name"], new["origin"], new["track_count"]) == (3, "Bea", "split", 2)
    gallery = (await world.client.get(f"{base(world)}/{new['id']}", headers=headers)).json()
    assert [(t["id"], t["linked_by"], t["score"]) for t in gallery["gallery"]] == [
        (moved[1], "user", None),  # quality 0.6
        (moved[0], "user", None),  # 0.5
    ]
    listed = (await world.client.get(base(world), headers=headers)).json()
    assert [(p["id"], p["display_name"], p["track_count"]) for p in listed["persons"]] == [
        (seed.first, "Ann Lee", 3),
        (new["id"], "Bea", 2),
    ]
    assert listed["unassigned"] == 1

    cleared = await world.client.patch(f"{base(world)}/{seed.first}", headers=headers, json={"name": None})
    assert (cleared.json()["name"], cleared.json()["display_name"]) == (None, "Person 1")


async def test_every_call_writes_one_audit_record(world: World) -> None:
    seed = seeded(world)
    owner = world.users["owner"].id
    missing = str(uuid.uuid4())
    b = base(world)
    calls: list[tuple[str, str, Any, int, str]] = [
        ("GET", b, None, 200, "allowed"),
        ("GET", f"{b}/unassigned", None, 200, "allowed"),
        ("GET", f"{b}/{seed.first}", None, 200, "allowed"),
        ("GET", f"{b}/{missing}", None, 404, "failed"),
        ("GET", f"{b}/not%20an%20id", None, 422, "failed"),
        ("PATCH", f"{b}/{seed.first}", {"name": "Witness"}, 200, "allowed"),
        ("PATCH", f"{b}/{seed.first}", {"name": "x" * 101}, 422, "failed"),
        ("PATCH", f"{b}/{seed.first}", {"name": "tab\there"}, 422, "failed"),
        ("PATCH", f"{b}/{missing}", {"name": "Witness"}, 404, "failed"),
        ("PATCH", f"{b}/unassigned", {"name": "Witness"}, 404, "failed"),
        ("POST", f"{b}/{seed.first}/merge", {"into": seed.first}, 422, "failed"),
        ("POST", f"{b}/{seed.first}/merge", {"into": missing}, 404, "failed"),
        ("POST", f"{b}/{seed.first}/merge", {"person_id": seed.second}, 422, "failed"),
        ("POST", f"{b}/{seed.first}/split", {"track_ids": seed.first_tracks}, 422, "failed"),
        ("POST", f"{b}/{seed.first}/split", {"track_ids": [seed.second_tracks[0]]}, 422, "failed"),
        ("POST", f"{b}/{seed.first}/split", {"track_ids": [seed.unassigned]}, 422, "failed"),
        ("POST", f"{b}/{seed.first}/split", {"track_ids": []}, 422, "failed"),
        ("POST", f"{b}/{seed.first}/split", {"track_ids": seed.first_tracks[:1]}, 201, "allowed"),
        ("POST", f"{b}/{seed.second}/merge", {"into": seed.first}, 200, "allowed"),
        ("PATCH", f"{b}/{seed.second}", {"name": "again"}, 404, "failed"),
        ("GET", f"{b}/{seed.second}", None, 404, "failed"),
    ]
    details = []
    for method, path, body, status, outcome in calls:
        before = last_seq(world)
        response = await world.client.request(method, path, headers=world.headers("owner"), json=body)
        assert response.status_code == status, (method, path, body, response.text)
        if status >= 400:
            assert response.headers["content-type"] == PROBLEM, (method, path, body)
        [record] = records_since(world, before)
        action = "case.read" if method == "GET" else "case.update"
        assert (record["actor"], record["action"], record["outcome"], record["case_id"]) == (
            owner,
            action,
            outcome,
            world.case_id,
        ), (method, path, body)
        if outcome == "allowed":
            details.append((record["object"], record["detail"]))
    objects = [obj for obj, _ in details]
    assert objects == [
        f"case/{world.case_id}/persons",
        f"case/{world.case_id}/persons/unassigned",
        f"person/{seed.first}",
        f"person/{seed.first}",
        f"person/{seed.first}",
        f"person/{seed.second}",
    ]
    corrections = [detail.get("correction") for _, detail in details]
    assert corrections == [None, None, None, "rename", "split", "merge"]
    assert (details[0][1]["persons"], details[0][1]["unassigned"]) == (2, 1)
    assert (details[4][1]["tracks"], details[5][1]["into"]) == (1, seed.first)
