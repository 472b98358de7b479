"""Sensitive images over HTTP through the gateway: frames scored by the real step, the tenant's
threshold set through the configuration API (low, so that a benign frame counts as sensitive), a
sensitive frame served blurred until a member opens it, every opening audited, callers without the
permission refused, thumbnail, preview and crops judged like their frames, and deleting the case
removing scores and blurred derivatives."""

from __future__ import annotations

import io
from typing import Any

import httpx
import numpy as np
from PIL import Image, ImageFilter

from aima.storage.sensitivity import SensitivityRepository
from events.catalogue import FramesExtracted
from functions.api.problems import PROBLEM_JSON
from functions.sensitivity.core import SensitivityCore
from inference.cpu.nsfw import OpenNsfwScorer
from tests.api.conftest import World, unique_png
from tests.api.test_transcripts import last_seq, records
from tests.sensitivity.conftest import put_frames, run, scene

OPENED = "media.sensitive_opened"
FIRST, SECOND = scene(0, (1280, 720)), scene(1, (1280, 720))


async def seeded(world: World, scorer: OpenNsfwScorer, case_id: str | None = None) -> FramesExtracted:
    """A file uploaded by the owner, its frames, thumbnail and preview as the probe stores them, and
    the frames scored by the sensitivity step on the gateway's own stores."""
    case_id = case_id or world.case_id
    response = await world.client.post(
        f"/api/v1/cases/{case_id}/media",
        headers=world.headers("owner") | {"X-AIMA-Filename": "clip.png"},
        content=unique_png(),
    )
    assert response.status_code == 201, response.text
    stores, media_id = world.services.stores, str(response.json()["media_id"])
    data = put_frames(
        stores.objects, stores.documents, world.tenant, case_id, media_id, [(0.0, FIRST), (1.0, SECOND)]
    )
    core = SensitivityCore(
        stores.objects,
        SensitivityRepository(stores.documents),
        world.services.media,
        scorer=lambda: scorer,
        threshold_for=lambda tenant: world.services.config.effective(tenant).thresholds.sensitive_blur,
    )
    await run(core, data)
    return data


async def set_threshold(world: World, value: float) -> None:
    response = await world.client.put(
        "/api/v1/config/thresholds", headers=world.headers("admin"), json={"sensitive_blur": value}
    )
    assert response.status_code == 200, response.text


def url(data: FramesExtracted, suffix: str) -> str:
    return f"/api/v1/cases/{data.case_id}/media/{data.media_id}/{suffix}"


async def get(world: World, caller: str, path: str, **params: str) -> httpx.Response:
    return await world.client.get(path, headers=world.headers(caller), params=params)


def sharpest(body: bytes) -> float:
    grey = Image.open(io.BytesIO(body)).convert("L").filter(ImageFilter.FIND_EDGES)
    return float(np.asarray(grey, dtype=np.float32)[2:-2, 2:-2].max())


def score_of(world: World, data: FramesExtracted, index: int) -> float:
    stored = SensitivityRepository(world.services.stores.documents).latest(
        world.tenant, data.case_id, data.media_id
    )
    assert stored is not None
    return stored.score_of(data.frames[index].frame_id) or 0.0


def opened(world: World, after: int) -> list[dict[str, Any]]:
    return records(world, after, OPENED)


async def test_a_sensitive_frame_is_served_blurred_until_opened_and_each_opening_is_audited(
    world: World, scorer: OpenNsfwScorer
) -> None:
    data = await seeded(world, scorer)
    frame = data.frames[0]
    await set_threshold(world, 0.0)  # every scored frame is at or above it
    before = last_seq(world)

    for _ in range(2):  # blurred, however often it is read
        blurred = await get(world, "viewer", url(data, f"frames/{frame.frame_id}"))
        assert blurred.status_code == 200, blurred.text
        assert blurred.headers["content-type"] == "image/jpeg"
        assert blurred.headers["x-aima-blurred"] == "true"
        assert blurred.headers["x-aima-sensitivity-threshold"] == "0"
        assert float(blurred.headers["x-aima-sensitivity-score"]) == round(score_of(world, data, 0), 6)
        assert blurred.content != FIRST
        assert Image.open(io.BytesIO(blurred.content)).size == (1280, 720)
        assert sharpest(FIRST) > 200
        assert sharpest(blurred.content) < 16  # no line, corner or letter is left
        assert opened(world, before) == []

    original = await get(world, "viewer", url(data, f"frames/{frame.frame_id}"), original="true")
    assert original.status_code == 200, original.text
    assert original.content == FIRST
    assert original.headers["x-aima-blurred"] == "false"
    [record] = opened(world, before)
    assert (record["actor"], record["outcome"], record["case_id"]) == (
        world.users["viewer"].id,
        "allowed",
        data.case_id,
    )
    assert record["object"] == f"media/{data.media_id}/frames/{frame.frame_id}"
    assert record["detail"]["frame_id"] == frame.frame_id
    assert record["detail"]["score"] == score_of(world, data, 0)
    assert record["detail"]["threshold"] == 0.0
    reads = records(world, before, "media.read")
    assert len(reads) == 2
    assert all(r["detail"]["blurred"] is True for r in reads)

    again = await get(world, "analyst", url(data, f"frames/{frame.frame_id}"))
    assert again.headers["x-aima-blurred"] == "true"  # opening is one request's, not the frame's state
    await get(world, "analyst", url(data, f"frames/{frame.frame_id}"), original="true")
    assert [r["actor"] for r in opened(world, before)] == [
        world.users["viewer"].id,
        world.users["analyst"].id,
    ]


async def test_a_caller_without_the_permission_cannot_open_it(world: World, scorer: OpenNsfwScorer) -> None:
    data = await seeded(world, scorer)
    await set_threshold(world, 0.0)
    before = last_seq(world)
    path = url(data, f"frames/{data.frames[0].frame_id}")
    for caller, status in (
        ("nonmember", 404),
        ("guest_nonmember", 404),
        ("other_admin", 404),
        ("anonymous", 401),
    ):
        response = await get(world, caller, path, original="true")
        assert response.status_code == status, caller
        assert response.headers["content-type"] == PROBLEM_JSON
        assert FIRST not in response.content
    assert opened(world, before) == []
    refused = {r["actor"]: r["outcome"] for r in records(world, before, "media.read")}
    assert refused[world.users["nonmember"].id] == refused[world.users["guest_nonmember"].id] == "denied"
    assert refused[world.users["other_admin"].id] == "failed"  # another tenant's admin: no such case


async def test_below_the_threshold_the_original_is_served(world: World, scorer: OpenNsfwScorer) -> None:
    data = await seeded(world, scorer)  # the default threshold, 0.8: a benign scene is far below it
    before = last_seq(world)
    response = await get(world, "viewer", url(data, f"frames/{data.frames[1].frame_id}"))
    assert response.status_code == 200
    assert response.content == SECOND
    assert response.headers["x-aima-blurred"] == "false"
    assert response.headers["x-aima-sensitivity-threshold"] == "0.8"
    asked = await get(world, "viewer", url(data, f"frames/{data.frames[1].frame_id}"), original="true")
    assert asked.content == SECOND
    assert opened(world, before) == []  # nothing sensitive was opened: two plain reads
    assert len(records(world, before, "media.read")) == 2


async def test_thumbnail_preview_and_crops_are_judged_by_their_frames(
    world: World, scorer: OpenNsfwScorer
) -> None:
    data = await seeded(world, scorer)
    low, high = sorted([(score_of(world, data, 0), 0), (score_of(world, data, 1), 1)])
    assert low[0] < high[0]
    await set_threshold(world, round((low[0] + high[0]) / 2, 6))  # one frame sensitive, one not
    frames = data.frames
    stores = world.services.stores
    for index in (0, 1):
        key = f"cases/{data.case_id}/media/{data.media_id}/crops/{frames[index].frame_id}/face-0.jpg"
        stores.objects.put(key, io.BytesIO(scene(5, (160, 160))), content_type="image/jpeg")

    def blurred(response: httpx.Response) -> bool:
        assert response.status_code == 200, response.text
        return response.headers["x-aima-blurred"] == "true"

    assert blurred(await get(world, "viewer", url(data, f"frames/{frames[high[1]].frame_id}")))
    assert not blurred(await get(world, "viewer", url(data, f"frames/{frames[low[1]].frame_id}")))
    assert blurred(await get(world, "viewer", url(data, f"crops/{frames[high[1]].frame_id}/face-0.jpg")))
    crop = await get(world, "viewer", url(data, f"crops/{frames[low[1]].frame_id}/face-0.jpg"))
    assert not blurred(crop)
    assert crop.content == scene(5, (160, 160))
    for whole in ("thumbnail", "preview"):  # the file's highest score counts
        response = await get(world, "viewer", url(data, whole))
        assert blurred(response)
        assert float(response.headers["x-aima-sensitivity-score"]) == round(high[0], 6)

    before = last_seq(world)
    opened_thumb = await get(world, "owner", url(data, "thumbnail"), original="true")
    assert not blurred(opened_thumb)
    [record] = opened(world, before)
    assert record["detail"]["image"] == "thumbnail"
    assert record["detail"]["frame_id"] == frames[high[1]].frame_id  # the frame whose score counted

    listing = await get(world, "viewer", url(data, "frames"))
    assert listing.status_code == 200
    body = listing.json()
    assert (body["scoring"], body["version"], body["thumbnail_blurred"]) == ("completed", 1, True)
    assert [f["frame_id"] for f in body["frames"]] == [f.frame_id for f in frames]
    assert [f["blurred"] for f in body["frames"]] == [high[1] == 0, high[1] == 1]


async def test_unknown_images_and_crafted_names_are_problems(world: World, scorer: OpenNsfwScorer) -> None:
    data = await seeded(world, scorer)
    frame_id = data.frames[0].frame_id
    for suffix in ("frames/no-such-frame", "crops/no-such-frame/face-0.jpg", f"crops/{frame_id}/face-9.jpg"):
        response = await get(world, "viewer", url(data, suffix))
        assert response.status_code == 404, suffix
        assert response.headers["content-type"] == PROBLEM_JSON
    for name in ("original", "..", "face.png", "%2E%2E%2Foriginal", "..%2F..%2Foriginal"):
        response = await get(world, "viewer", url(data, f"crops/{frame_id}/{name}"))
        assert response.status_code in (404, 422), name
        assert response.headers["content-type"] == PROBLEM_JSON
    unknown_query = await world.client.get(
        url(data, "thumbnail"), headers=world.headers("viewer"), params={"orginal": "true"}
    )
    assert unknown_query.status_code == 422


async def test_deleting_the_case_removes_scores_and_blurred_derivatives(
    world: World, scorer: OpenNsfwScorer
) -> None:
    case_id = world.new_case("Quarry")
    data = await seeded(world, scorer, case_id)
    await set_threshold(world, 0.0)
    assert (await get(world, "owner", url(data, f"frames/{data.frames[0].frame_id}"))).headers[
        "x-aima-blurred"
    ] == "true"
    stores = world.services.stores
    prefix = f"cases/{case_id}/media/{data.media_id}/blurred/"
    assert len(list(stores.objects.list(prefix))) == 1
    results = SensitivityRepository(stores.documents)
    assert results.latest(world.tenant, case_id, data.media_id) is not None

    deleted = await world.client.delete(f"/api/v1/cases/{case_id}", headers=world.headers("owner"))
    assert deleted.status_code == 204
    assert list(stores.objects.list(f"cases/{case_id}/")) == []
    assert results.latest(world.tenant, case_id, data.media_id) is None
