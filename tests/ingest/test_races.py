"""Resumable uploads under concurrency: two requests completing one upload at once (same bytes and
different bytes), on the local folder and on S3 (moto), in the core and over HTTP; and the resume
path while the last part is being assembled. Exactly one request wins, the other learns the current
offset (409), and no stored object is ever lost to a duplicate check."""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from aima.storage.documents import DocumentStore
from aima.storage.media import MediaRepository
from aima.storage.objects import ObjectStore
from aima.telemetry.health import HealthRegistry
from events.catalogue import MediaUploaded
from functions.ingest.app import create_app
from functions.ingest.core import UPLOADS, Appended, OffsetMismatch, object_key

from .conftest import CoreFactory, Holding, Media, MiB, Recorder, World, leftovers

TUS = {"Tus-Resumable": "1.0.0"}
OFFSET_STREAM = "application/offset+octet-stream"


def chunks(data: bytes, size: int = 256 * 1024) -> Iterator[bytes]:
    for at in range(0, len(data), size):
        yield data[at : at + size]


def payload(media: Media, size: int, seed: int) -> bytes:
    head = media["mp4"][:4096]
    return head + random.Random(seed).randbytes(size - len(head))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read(objects: ObjectStore, key: str) -> bytes:
    return b"".join(objects.get(key))


def delegation(world: World, case_id: str | None = None) -> dict[str, str]:
    token = world.tokens.issue_delegation(
        audience="aima-function:ingest",
        tenant_id=world.tenant_id,
        actor=world.owner_id,
        case_id=case_id or world.case_id,
    )
    return {"Authorization": f"Bearer {token}", **TUS}


@pytest.mark.parametrize("same_bytes", [True, False], ids=["same-bytes", "different-bytes"])
async def test_two_completions_at_once_store_the_file_exactly_once(
    request: pytest.FixtureRequest,
    world: World,
    open_objects: Callable[[], ObjectStore],
    make_core: CoreFactory,
    recorder: Recorder,
    media: Media,
    same_bytes: bool,
) -> None:
    data = payload(media, 12 * MiB, seed=11)
    other = data if same_bytes else data[: 6 * MiB] + random.Random(12).randbytes(6 * MiB)
    scope = world.scope()
    inner = open_objects()
    solo = make_core(inner)
    upload_id = await solo.begin(scope, world.case_id, filename="race.mp4", length=len(data))
    await solo.append(scope, upload_id, 0, chunks(data[: 6 * MiB]), size=6 * MiB)
    racing = Holding(inner)
    racing.meet(2)  # both last parts are surely underway at once
    replicas = [make_core(racing), make_core(racing)]

    outcomes: list[Any] = await asyncio.gather(
        replicas[0].append(scope, upload_id, 6 * MiB, chunks(data[6 * MiB :]), size=6 * MiB),
        replicas[1].append(scope, upload_id, 6 * MiB, chunks(other[6 * MiB :]), size=6 * MiB),
        return_exceptions=True,
    )
    won = [(i, o) for i, o in enumerate(outcomes) if isinstance(o, Appended)]
    lost = [o for o in outcomes if isinstance(o, OffsetMismatch)]
    assert (len(won), len(lost)) == (1, 1), outcomes
    winner, appended = won[0]
    assert appended.result is not None
    assert appended.result.duplicate_of is None
    assert lost[0].current == 12 * MiB
    expected = data if winner == 0 else other
    rows = MediaRepository(world.db).list(scope, world.case_id)
    assert [(row.id, row.status, row.sha256) for row in rows] == [
        (appended.result.media_id, "stored", sha256(expected))
    ]
    key = object_key(world.case_id, appended.result.media_id)
    assert sha256(read(inner, key)) == sha256(expected)  # the original is there, and is the winner's
    [event] = await recorder.of_type(MediaUploaded.TYPE)
    assert (event.data or {})["sha256"] == sha256(expected)
    status = await solo.status(scope, upload_id)
    assert (status.offset, status.result) == (12 * MiB, appended.result)
    assert leftovers(request, inner) == []


async def test_two_completions_at_once_over_http(
    request: pytest.FixtureRequest,
    world: World,
    open_objects: Callable[[], ObjectStore],
    make_core: CoreFactory,
    media: Media,
) -> None:
    data = payload(media, 12 * MiB, seed=13)
    objects = Holding(open_objects())
    health = HealthRegistry(timeout=1.0, cache_seconds=0)
    app = create_app(make_core(objects), tokens=world.tokens, health=health)
    auth = delegation(world)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest") as http:
        begun = await http.post(
            f"/cases/{world.case_id}/uploads", headers={**auth, "Upload-Length": str(len(data))}
        )
        assert begun.status_code == 201, begun.text
        location = begun.headers["location"]

        def patch(offset: int, body: bytes) -> Any:
            headers = {**auth, "Upload-Offset": str(offset), "Content-Type": OFFSET_STREAM}
            return http.patch(location, headers=headers, content=body)

        first = await patch(0, data[: 6 * MiB])
        assert first.status_code == 204, first.text
        objects.meet(2)
        responses = await asyncio.gather(patch(6 * MiB, data[6 * MiB :]), patch(6 * MiB, data[6 * MiB :]))
        statuses = sorted(response.status_code for response in responses)
        assert statuses == [204, 409], [r.text for r in responses]
        [won] = [r for r in responses if r.status_code == 204]
        [lost] = [r for r in responses if r.status_code == 409]
        assert won.headers["upload-offset"] == lost.headers["upload-offset"] == str(12 * MiB)
        assert lost.headers["tus-resumable"] == "1.0.0"
        media_id = won.headers["x-aima-media-id"]
        assert sha256(read(objects.inner, object_key(world.case_id, media_id))) == sha256(data)
        head = await http.head(location, headers=auth)
        assert (head.status_code, head.headers["upload-offset"]) == (200, str(12 * MiB))
        assert head.headers["x-aima-media-id"] == media_id
    assert leftovers(request, objects.inner) == []


async def test_the_resume_path_while_the_last_part_is_assembled_answers_409_then_the_result(
    request: pytest.FixtureRequest,
    world: World,
    open_objects: Callable[[], ObjectStore],
    make_core: CoreFactory,
    media: Media,
) -> None:
    data = payload(media, 7 * MiB, seed=17)
    objects = Holding(open_objects())
    app = create_app(make_core(objects), tokens=world.tokens, health=HealthRegistry(timeout=1.0))
    auth = delegation(world)
    patch = {**auth, "Content-Type": OFFSET_STREAM}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest") as http:
        begun = await http.post(
            f"/cases/{world.case_id}/uploads", headers={**auth, "Upload-Length": str(len(data))}
        )
        location = begun.headers["location"]
        assert (
            await http.patch(location, headers={**patch, "Upload-Offset": "0"}, content=data[: 6 * MiB])
        ).status_code == 204
        objects.hold_completion()
        last = asyncio.create_task(
            http.patch(location, headers={**patch, "Upload-Offset": str(6 * MiB)}, content=data[6 * MiB :])
        )
        assert await asyncio.to_thread(objects.completing.wait, 30)
        head = await http.head(location, headers=auth)
        assert head.status_code == 200
        assert head.headers["upload-offset"] == str(len(data))
        empty = await http.patch(location, headers={**patch, "Upload-Offset": str(len(data))}, content=b"")
        assert empty.status_code == 409, empty.text
        assert empty.headers["upload-offset"] == str(len(data))
        assert empty.headers["content-type"] == "application/problem+json"
        objects.release.set()
        done = await last
        assert done.status_code == 204, done.text
        media_id = done.headers["x-aima-media-id"]
        again = await http.patch(location, headers={**patch, "Upload-Offset": str(len(data))}, content=b"")
        assert (again.status_code, again.headers["x-aima-media-id"]) == (204, media_id)
        assert sha256(read(objects.inner, object_key(world.case_id, media_id))) == sha256(data)
    assert len(MediaRepository(world.db).list(world.scope(), world.case_id)) == 1
    assert leftovers(request, objects.inner) == []


async def test_a_completion_repeated_after_a_crash_keeps_the_file_it_registered(
    world: World,
    open_objects: Callable[[], ObjectStore],
    make_core: CoreFactory,
    documents: DocumentStore,
    media: Media,
) -> None:
    """The process completing an upload died after registering the file and before recording that:
    the next completion finds the row of this very object, which is no duplicate of itself."""
    data = payload(media, 7 * MiB, seed=19)
    scope = world.scope()
    objects = open_objects()
    core = make_core(objects)
    upload_id = await core.begin(scope, world.case_id, filename="crash.mp4", length=len(data))
    done = await core.append(scope, upload_id, 0, chunks(data), size=len(data))
    assert done.result is not None
    crashed = {"state": "completing", "claim": "dead-process", "claim_until": time.time() - 1, "result": None}
    documents.update_one(UPLOADS, {"_id": upload_id}, {"$set": crashed})

    again = await make_core(open_objects()).append(scope, upload_id, len(data), iter(()), size=0)
    assert again.result is not None
    assert (again.result.media_id, again.result.duplicate_of) == (done.result.media_id, None)
    assert sha256(read(objects, object_key(world.case_id, done.result.media_id))) == sha256(data)
    assert [row.id for row in MediaRepository(world.db).list(scope, world.case_id)] == [done.result.media_id]
