"""Uploads through the gateway to a real ingest app (SQLite, local objects, litemongo, MemoryBus):
authorised and audited at the gateway, stored by ingest, its answers relayed unchanged."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from openapi_spec_validator import validate
from sqlalchemy import select

from aima.access.scope import Scope
from aima.samples import write_pattern_png, write_tone_wav
from aima.settings import Settings
from aima.storage.schema import audit_log
from events.bus import Subscription
from events.bus_memory import MemoryBus
from events.catalogue import MediaUploaded
from events.envelope import CloudEvent
from functions.api.app import create_app
from functions.api.problems import PROBLEM_JSON
from functions.api.services import ApiServices
from tests.api.conftest import World, client_for

MiB = 1024 * 1024
OFFSET_STREAM = "application/offset+octet-stream"
TUS = {"Tus-Resumable": "1.0.0"}


async def recorded(bus: MemoryBus) -> list[CloudEvent]:
    """Every event published on ``bus`` from now on (the list fills as they are delivered)."""
    events: list[CloudEvent] = []

    async def record(event: CloudEvent) -> list[CloudEvent]:
        events.append(event)
        return []

    await bus.subscribe(Subscription(consumer="recorder", types=("io.aima.*",), handler=record))
    return events


def stored_bytes(world: World, case_id: str, media_id: str) -> bytes:
    key = f"cases/{case_id}/media/{media_id}/original"
    return b"".join(world.services.stores.objects.get(key))


def records(world: World, case_id: str) -> list[dict[str, Any]]:
    with world.services.stores.db.engine.connect() as c:
        rows = c.execute(select(audit_log).where(audit_log.c.case_id == case_id).order_by(audit_log.c.seq))
        return [dict(row._mapping) for row in rows]


async def test_an_analyst_uploads_a_wav_and_a_png(
    world: World, ingest_bus: MemoryBus, tmp_path: Path
) -> None:
    events = await recorded(ingest_bus)
    files = [write_tone_wav(tmp_path / "tone.wav", seconds=0.5), write_pattern_png(tmp_path / "grid.png")]
    url = f"/api/v1/cases/{world.case_id}/media"
    results = []
    for path in files:
        headers = world.headers("analyst") | {"X-AIMA-Filename": path.name}
        response = await world.client.post(url, content=path.read_bytes(), headers=headers)
        assert response.status_code == 201, response.text
        result = response.json()
        assert result["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert result["filename"] == path.name
        assert stored_bytes(world, world.case_id, result["media_id"]) == path.read_bytes()
        results.append(result)
    assert [r["kind"] for r in results] == ["audio", "image"]

    again = await world.client.post(url, content=files[1].read_bytes(), headers=world.headers("analyst"))
    assert (again.status_code, again.json()["duplicate_of"]) == (200, results[1]["media_id"])

    await ingest_bus.drain()
    uploaded = [e for e in events if e.type == MediaUploaded.TYPE]
    assert [e.data["media_id"] for e in uploaded] == [r["media_id"] for r in results]
    listed = world.services.media.list(Scope.for_tenant(world.tenant, "test"), world.case_id)
    assert {row.id for row in listed} == {r["media_id"] for r in results}
    audited = [r for r in records(world, world.case_id) if r["action"] == "media.upload"]
    assert [(r["actor"], r["outcome"], r["object"]) for r in audited] == [
        (world.users["analyst"].id, "allowed", f"media/{r['media_id']}") for r in (*results, again.json())
    ]


async def test_who_may_not_upload_is_refused_before_ingest(world: World, ingest_bus: MemoryBus) -> None:
    events = await recorded(ingest_bus)
    url = f"/api/v1/cases/{world.case_id}/media"
    for caller, status in (("viewer", 403), ("nonmember", 404), ("anonymous", 401)):
        response = await world.client.post(
            url, content=b"\x89PNG\r\n\x1a\n" + b"x" * 64, headers=world.headers(caller)
        )
        assert response.status_code == status, caller
        assert response.headers["content-type"] == PROBLEM_JSON
    await ingest_bus.drain()
    assert events == []
    assert world.services.media.list(Scope.for_tenant(world.tenant, "test"), world.case_id) == []


async def test_an_unsupported_file_gets_ingests_415_problem(world: World) -> None:
    url = f"/api/v1/cases/{world.case_id}/media"
    response = await world.client.post(
        url, content=b"root:x:0:0:root:/root:/bin/bash\n", headers=world.headers("owner")
    )
    assert response.status_code == 415
    assert response.headers["content-type"] == PROBLEM_JSON
    problem = response.json()
    assert problem["type"] == "urn:aima:problem:unsupported-media"
    assert problem["instance"] == response.headers["x-request-id"]
    assert "accepted" in problem
    [record] = [r for r in records(world, world.case_id) if r["action"] == "media.upload"]
    assert (record["outcome"], record["detail"]["error"]) == ("failed", "unsupported-media")


async def test_a_resumable_upload_survives_a_part_cut_off(world: World) -> None:
    data = b"\x89PNG\r\n\x1a\n" + os.urandom(12 * MiB - 8)
    auth = world.headers("analyst")
    begun = await world.client.post(
        f"/api/v1/cases/{world.case_id}/uploads",
        headers=auth | TUS | {"Upload-Length": str(len(data)), "X-AIMA-Filename": "big.png"},
    )
    assert begun.status_code == 201, begun.text
    location = begun.headers["location"]
    assert location == f"/api/v1/cases/{world.case_id}/uploads/{begun.json()['upload_id']}"

    async def patch(offset: int, size: int, *, cut_at: int | None = None) -> httpx.Response:
        async def body() -> AsyncIterator[bytes]:
            end = offset + (size if cut_at is None else cut_at)
            for start in range(offset, end, MiB):
                yield data[start : min(start + MiB, end)]

        headers = (
            auth
            | TUS
            | {
                "Upload-Offset": str(offset),
                "Content-Type": OFFSET_STREAM,
                "Content-Length": str(size),
            }
        )
        return await world.client.patch(location, content=body(), headers=headers)

    first = await patch(0, 5 * MiB)
    assert (first.status_code, first.headers["upload-offset"]) == (204, str(5 * MiB))
    assert first.headers["tus-resumable"] == "1.0.0"
    cut = await patch(5 * MiB, 5 * MiB, cut_at=5 * MiB // 2)
    assert cut.status_code == 400
    assert cut.json()["type"] == "urn:aima:problem:incomplete-body"
    assert cut.headers["upload-offset"] == str(5 * MiB + 5 * MiB // 2)  # what arrived was kept
    head = await world.client.head(location, headers=auth | TUS)
    assert head.status_code == 200
    kept = int(head.headers["upload-offset"])
    assert (kept, head.headers["upload-length"]) == (5 * MiB + 5 * MiB // 2, str(len(data)))
    assert head.content == b""
    second = await patch(kept, 10 * MiB - kept)
    assert (second.status_code, second.headers["upload-offset"]) == (204, str(10 * MiB))
    last = await patch(10 * MiB, len(data) - 10 * MiB)
    assert (last.status_code, last.content) == (204, b""), last.text
    assert last.headers["x-aima-sha256"] == hashlib.sha256(data).hexdigest()
    media_id = last.headers["x-aima-media-id"]
    stored = stored_bytes(world, world.case_id, media_id)
    assert hashlib.sha256(stored).hexdigest() == hashlib.sha256(data).hexdigest()
    done = await world.client.head(location, headers=auth | TUS)
    assert (done.status_code, done.headers["x-aima-media-id"]) == (200, media_id)
    audited = [r for r in records(world, world.case_id) if r["action"] == "media.upload"]
    assert audited[-1]["object"] == f"media/{media_id}"
    assert audited[-1]["detail"]["sha256"] == hashlib.sha256(data).hexdigest()


async def test_ingest_unreachable_answers_503(settings: Settings, world: World) -> None:
    down = settings.model_copy(update={"function_urls": {"ingest": "http://127.0.0.1:9"}})
    services = ApiServices.open(down)
    try:
        async with client_for(create_app(services)) as client:
            response = await client.post(
                f"/api/v1/cases/{world.case_id}/media", content=b"x" * 64, headers=world.headers("owner")
            )
    finally:
        await services.close()
    assert response.status_code == 503
    assert response.json()["type"] == "urn:aima:problem:ingest-unavailable"
    [record] = [r for r in records(world, world.case_id) if r["action"] == "media.upload"]
    assert (record["outcome"], record["detail"]["error"]) == ("failed", "ingest-unavailable")


def test_the_openapi_document_is_valid(app: FastAPI) -> None:
    schema = app.openapi()
    validate(schema)
    head = schema["paths"]["/api/v1/cases/{case_id}/uploads/{upload_id}"]["head"]
    assert "content" not in head["responses"]["200"]
    assert head["x-aima-action"] == "media.upload"
