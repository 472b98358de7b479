"""The ingest function's internal HTTP API: service tokens only, problem+json errors, streamed single
and bulk uploads, and tus-like resumable uploads through real uvicorn servers (a dropped connection,
then a second server instance finishing the upload)."""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from aima.config.service import ConfigService
from aima.storage.documents import DocumentStore
from aima.storage.jobs import JobRepository
from aima.storage.media import MediaRepository
from aima.storage.objects import ObjectStore
from aima.telemetry.health import HealthRegistry
from events.catalogue import JobCreated, MediaUploaded
from functions.ingest.app import NAME, create_app
from functions.ingest.core import IngestCore, object_key
from functions.ingest.sniff import ACCEPTED

from .conftest import CoreFactory, Media, MiB, Recorder, World, leftovers, serve, set_limits

PROBLEM = "application/problem+json"


def app_for(core: IngestCore, world: World) -> FastAPI:
    health = HealthRegistry(timeout=1.0, cache_seconds=0)
    health.add("database", world.db.health)
    return create_app(core, tokens=world.tokens, health=health)


@pytest.fixture
async def client(
    world: World, local_objects: ObjectStore, make_core: CoreFactory
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app_for(make_core(local_objects), world))
    async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as http:
        yield http


def context(world: World, token: str | None = None, **extra: str) -> dict[str, str]:
    """What the gateway sends: its service token and the acting context."""
    return {
        "Authorization": f"Bearer {token or world.service_token}",
        "X-AIMA-Tenant": world.tenant_id,
        "X-AIMA-Actor": world.owner_id,
        "X-AIMA-Request-ID": "req-4711",
        **extra,
    }


def problem(response: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert (body["type"], body["status"]) == (f"urn:aima:problem:{kind}", status)
    return body


def keys(objects: ObjectStore, world: World) -> list[str]:
    return [info.key for info in objects.list(f"cases/{world.case_id}/")]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_internal_endpoints_refuse_callers_without_a_service_token(
    client: httpx.AsyncClient, world: World, local_objects: ObjectStore, media: Media
) -> None:
    case = f"/cases/{world.case_id}"
    routes: list[tuple[str, str]] = [
        ("POST", f"{case}/media"),
        ("POST", f"{case}/media:bulk"),
        ("POST", f"{case}/uploads"),
        ("HEAD", f"{case}/uploads/{uuid.uuid4().hex}"),
        ("PATCH", f"{case}/uploads/{uuid.uuid4().hex}"),
        ("DELETE", f"{case}/uploads/{uuid.uuid4().hex}"),
    ]
    user = context(world, world.user_token)
    refusals = {
        "no token": {k: v for k, v in context(world).items() if k != "Authorization"},
        "a user's token": user,
        "a forged token": context(world, world.service_token[:-4] + "AAAA"),
        "basic auth": {**context(world), "Authorization": "Basic Z2F0ZXdheTpwdw=="},
    }
    for method, url in routes:
        for why, headers in refusals.items():
            response = await client.request(
                method, url, headers={**headers, "Upload-Length": "10"}, content=b""
            )
            assert response.status_code == 401, (method, url, why)
            assert response.headers["www-authenticate"].startswith("Bearer")
            if method != "HEAD":
                problem(response, 401, "service-token-required")
    response = await client.post(f"{case}/media", headers=user, content=media["png"])
    assert "not users" in problem(response, 401, "service-token-required")["detail"]
    no_tenant = {k: v for k, v in context(world).items() if k != "X-AIMA-Tenant"}
    response = await client.post(f"{case}/media", headers=no_tenant, content=media["png"])
    problem(response, 400, "missing-context")
    assert keys(local_objects, world) == []


async def test_single_upload_round_trip_and_duplicate(
    client: httpx.AsyncClient, world: World, local_objects: ObjectStore, recorder: Recorder, media: Media
) -> None:
    data = media["mp4"]
    headers = context(world, **{"X-AIMA-Filename": "Beweis%20%C3%BCber%2F..%2Fclip.mp4"})
    response = await client.post(f"/cases/{world.case_id}/media", headers=headers, content=data)
    assert response.status_code == 201, response.text
    assert response.headers["x-request-id"] == "req-4711"
    result = response.json()
    assert (result["sha256"], result["size"], result["kind"]) == (sha256(data), len(data), "video")
    assert (result["content_type"], result["duplicate_of"], result["filename"]) == (
        "video/mp4",
        None,
        "clip.mp4",
    )
    key = object_key(world.case_id, result["media_id"])
    assert b"".join(local_objects.get(key)) == data
    [event] = await recorder.of_type(MediaUploaded.TYPE)
    assert (event.data or {})["media_id"] == result["media_id"]

    async def body() -> AsyncIterator[bytes]:  # chunked: no Content-Length
        for at in range(0, len(data), 1000):
            yield data[at : at + 1000]

    again = await client.post(f"/cases/{world.case_id}/media", headers=context(world), content=body())
    assert again.status_code == 200, again.text
    assert again.json()["duplicate_of"] == result["media_id"]
    assert keys(local_objects, world) == [key]
    assert len(await recorder.of_type(MediaUploaded.TYPE)) == 1


async def test_an_unsupported_upload_is_a_415_problem_and_stores_nothing(
    client: httpx.AsyncClient, world: World, local_objects: ObjectStore, recorder: Recorder, media: Media
) -> None:
    url = f"/cases/{world.case_id}/media"
    earlier = (await client.post(url, headers=context(world), content=media["png"])).json()
    before = keys(local_objects, world)
    for name, reason in (
        ("pdf", "a PDF document"),
        ("html", "an HTML page"),
        ("zip", "a ZIP archive"),
        ("empty", "empty"),
    ):
        response = await client.post(
            url, headers=context(world, **{"X-AIMA-Filename": "x.mp4"}), content=media[name]
        )
        body = problem(response, 415, "unsupported-media")
        assert body["reason"].startswith(reason)
        assert body["accepted"] == [entry.name for entry in ACCEPTED]
        assert reason in body["detail"]
        assert "JPEG" in body["detail"]
        assert "MP4" in body["detail"]
        assert body["instance"] == "req-4711"
    assert keys(local_objects, world) == before
    assert b"".join(local_objects.get(object_key(world.case_id, earlier["media_id"]))) == media["png"]
    assert len(MediaRepository(world.db).list(world.scope(), world.case_id)) == 1
    assert len(await recorder.of_type(MediaUploaded.TYPE)) == 1


async def test_an_upload_over_the_limit_is_a_413_problem_and_leaves_nothing(
    request: pytest.FixtureRequest,
    client: httpx.AsyncClient,
    world: World,
    local_objects: ObjectStore,
    config: ConfigService,
    media: Media,
) -> None:
    set_limits(config, world, max_upload_bytes=2 * MiB)
    data = media["wav"] + random.Random(5).randbytes(3 * MiB)
    url = f"/cases/{world.case_id}/media"
    declared = await client.post(url, headers=context(world), content=data)
    assert problem(declared, 413, "too-large")["limit"] == 2 * MiB

    async def chunked() -> AsyncIterator[bytes]:
        for at in range(0, len(data), 64 * 1024):
            yield data[at : at + 64 * 1024]

    streamed = await client.post(url, headers=context(world), content=chunked())
    problem(streamed, 413, "too-large")
    assert keys(local_objects, world) == []
    assert leftovers(request, local_objects) == []


async def test_unknown_cases_and_uploads_are_404_problems(
    client: httpx.AsyncClient, world: World, media: Media
) -> None:
    missing = str(uuid.uuid4())
    response = await client.post(f"/cases/{missing}/media", headers=context(world), content=media["png"])
    problem(response, 404, "case-not-found")
    begun = await client.post(
        f"/cases/{world.case_id}/uploads", headers=context(world, **{"Upload-Length": "100"})
    )
    location = begun.headers["location"]
    elsewhere = location.replace(world.case_id, world.other_case_id)
    response = await client.patch(
        elsewhere,
        headers=context(world, **{"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}),
        content=media["png"],
    )
    problem(response, 404, "upload-not-found")
    assert (await client.head(elsewhere, headers=context(world))).status_code == 404
    problem(await client.get(f"/cases/{world.case_id}/nothing", headers=context(world)), 404, "not-found")


async def test_bulk_upload_makes_one_parent_and_a_child_job_per_stored_file(
    client: httpx.AsyncClient, world: World, recorder: Recorder, media: Media
) -> None:
    files: list[tuple[str, tuple[str | None, bytes] | tuple[str, bytes, str]]] = [
        ("files", ("clip.mp4", media["mp4"], "video/mp4")),
        ("files", ("invoice.jpg", media["pdf"], "image/jpeg")),  # claims to be a JPEG: the bytes decide
        ("note", (None, b"a form field, not a file")),
        ("files", ("song.mp3", media["mp3"], "audio/mpeg")),
    ]
    response = await client.post(f"/cases/{world.case_id}/media:bulk", headers=context(world), files=files)
    assert response.status_code == 201, response.text
    body = response.json()
    assert [entry["filename"] for entry in body["results"]] == ["clip.mp4", "invoice.jpg", "song.mp3"]
    assert [entry["status"] for entry in body["results"]] == ["stored", "refused", "stored"]
    error = body["results"][1]["error"]
    assert (error["type"], error["status"], error["reason"]) == (
        "urn:aima:problem:unsupported-media", 415, "a PDF document",
    )  # fmt: skip
    stored = [entry["result"] for entry in body["results"] if entry["status"] == "stored"]
    assert [entry["content_type"] for entry in stored] == ["video/mp4", "audio/mpeg"]

    children = JobRepository(world.db).children(world.scope(), body["parent_job_id"])
    assert sorted(child["id"] for child in children) == sorted(entry["job_id"] for entry in stored)
    assert sorted(child["media_id"] for child in children) == sorted(entry["media_id"] for entry in stored)
    created = await recorder.of_type(JobCreated.TYPE)
    assert len(created) == 3
    assert (created[0].data or {})["job_id"] == body["parent_job_id"]
    uploaded = await recorder.of_type(MediaUploaded.TYPE)
    assert sorted((e.data or {})["job_id"] for e in uploaded) == sorted(entry["job_id"] for entry in stored)


async def test_a_bulk_file_over_the_limit_is_skipped_and_the_next_one_stored(
    client: httpx.AsyncClient, world: World, local_objects: ObjectStore, config: ConfigService, media: Media
) -> None:
    set_limits(config, world, max_upload_bytes=MiB)
    big = media["wav"] + random.Random(9).randbytes(3 * MiB)
    files = [
        ("files", ("a.png", media["png"], "image/png")),
        ("files", ("big.wav", big, "audio/wav")),
        ("files", ("c.jpg", media["jpeg"], "image/jpeg")),
    ]
    response = await client.post(f"/cases/{world.case_id}/media:bulk", headers=context(world), files=files)
    assert response.status_code == 201, response.text
    results = response.json()["results"]
    assert [entry["status"] for entry in results] == ["stored", "refused", "stored"]
    assert results[1]["error"]["type"] == "urn:aima:problem:too-large"
    stored = b"".join(local_objects.get(object_key(world.case_id, results[2]["result"]["media_id"])))
    assert stored == media["jpeg"]  # the rest of the big part was skipped, not taken for the next file


async def test_bulk_refusals(
    client: httpx.AsyncClient,
    world: World,
    local_objects: ObjectStore,
    config: ConfigService,
    recorder: Recorder,
    media: Media,
) -> None:
    url = f"/cases/{world.case_id}/media:bulk"
    set_limits(config, world, max_files_per_request=2)
    files = [("files", (f"{n}.bin", media[n], "application/octet-stream")) for n in ("png", "jpeg", "wav")]
    problem(await client.post(url, headers=context(world), files=files), 413, "too-many-files")
    response = await client.post(url, headers=context(world), content=media["png"])
    problem(response, 415, "unsupported-content-type")
    cut = b"--b\r\nContent-Disposition: form-data; name=f; filename=a.png\r\n\r\n" + media["png"]
    response = await client.post(
        url, headers=context(world, **{"Content-Type": "multipart/form-data; boundary=b"}), content=cut
    )
    problem(response, 400, "invalid-multipart")
    assert keys(local_objects, world) == []
    assert MediaRepository(world.db).list(world.scope(), world.case_id) == []
    assert await recorder.settled() == []


async def test_tus_session_rules(
    client: httpx.AsyncClient, world: World, config: ConfigService, media: Media
) -> None:
    base = f"/cases/{world.case_id}/uploads"
    problem(await client.post(base, headers=context(world)), 400, "invalid-header")
    problem(await client.post(base, headers=context(world, **{"Upload-Length": "-1"})), 400, "invalid-header")
    set_limits(config, world, max_upload_bytes=10 * MiB)
    problem(
        await client.post(base, headers=context(world, **{"Upload-Length": str(11 * MiB)})), 413, "too-large"
    )

    begun = await client.post(base, headers=context(world, **{"Upload-Length": str(6 * MiB)}))
    assert begun.status_code == 201
    location = begun.headers["location"]
    assert begun.headers["upload-offset"] == "0"
    patch = context(world, **{"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
    wrong_type = {**patch, "Content-Type": "application/octet-stream"}
    problem(await client.patch(location, headers=wrong_type, content=b"x"), 415, "unsupported-content-type")
    small = await client.patch(location, headers=patch, content=media["png"])
    problem(small, 400, "part-rejected")
    mismatch = await client.patch(location, headers={**patch, "Upload-Offset": "5"}, content=media["png"])
    problem(mismatch, 409, "offset-mismatch")
    assert mismatch.headers["upload-offset"] == "0"
    assert (await client.delete(location, headers=context(world))).status_code == 204
    problem(await client.delete(location, headers=context(world)), 404, "upload-not-found")


async def test_a_resumable_upload_over_http_survives_a_dropped_connection_and_a_restart(
    request: pytest.FixtureRequest,
    world: World,
    open_objects: Callable[[], ObjectStore],
    make_core: CoreFactory,
    recorder: Recorder,
    media: Media,
    documents_path: Path,
) -> None:
    data = media["webm"] + random.Random(7).randbytes(20 * MiB - len(media["webm"]))
    headers = context(world)
    patch = {**headers, "Content-Type": "application/offset+octet-stream"}
    timeout = httpx.Timeout(30.0)

    async with (
        serve(app_for(make_core(open_objects()), world)) as url,
        httpx.AsyncClient(timeout=timeout) as http,
    ):
        begun = await http.post(
            f"{url}/cases/{world.case_id}/uploads",
            headers={**headers, "Upload-Length": str(len(data)), "X-AIMA-Filename": "dash%20cam.webm"},
        )
        assert begun.status_code == 201, begun.text
        assert begun.headers["upload-offset"] == "0"
        location = begun.headers["location"]
        first = await http.patch(
            url + location, headers={**patch, "Upload-Offset": "0"}, content=data[: 8 * MiB]
        )
        assert (first.status_code, first.headers["upload-offset"]) == (204, str(8 * MiB))

        async def dropped() -> AsyncIterator[bytes]:
            yield data[8 * MiB : 11 * MiB]
            raise ConnectionResetError("the client's network went away")

        with pytest.raises(ConnectionResetError):
            await http.patch(
                url + location,
                headers={**patch, "Upload-Offset": str(8 * MiB), "Content-Length": str(8 * MiB)},
                content=dropped(),
            )
        head = await http.head(url + location, headers=headers)
        assert head.status_code == 200
        assert (head.headers["upload-offset"], head.headers["upload-length"]) == (str(8 * MiB), str(20 * MiB))
        assert head.headers["cache-control"] == "no-store"

    replica_documents = DocumentStore.from_uri(f"litemongo://{documents_path}", "aima")
    try:
        replica_objects = open_objects()
        replica = make_core(replica_objects, documents_store=replica_documents)
        async with serve(app_for(replica, world)) as url, httpx.AsyncClient(timeout=timeout) as http:
            head = await http.head(url + location, headers=headers)
            assert head.headers["upload-offset"] == str(8 * MiB)
            stale = await http.patch(
                url + location, headers={**patch, "Upload-Offset": "0"}, content=data[: 8 * MiB]
            )
            problem(stale, 409, "offset-mismatch")
            assert stale.headers["upload-offset"] == str(8 * MiB)
            second = await http.patch(
                url + location,
                headers={**patch, "Upload-Offset": str(8 * MiB)},
                content=data[8 * MiB : 16 * MiB],
            )
            assert (second.status_code, second.headers["upload-offset"]) == (204, str(16 * MiB))
            last = await http.patch(
                url + location, headers={**patch, "Upload-Offset": str(16 * MiB)}, content=data[16 * MiB :]
            )
            assert last.status_code == 200, last.text
            assert last.headers["upload-offset"] == str(20 * MiB)
            result = last.json()
            assert (result["sha256"], result["size"], result["filename"]) == (
                sha256(data),
                len(data),
                "dash cam.webm",
            )
            assert result["content_type"] == "video/webm"
            stored = b"".join(replica_objects.get(object_key(world.case_id, result["media_id"])))
            assert sha256(stored) == sha256(data)
            assert (await http.head(url + location, headers=headers)).status_code == 404
    finally:
        replica_documents.close()
    [event] = await recorder.of_type(MediaUploaded.TYPE)
    assert (event.data or {})["sha256"] == sha256(data)
    assert leftovers(request, replica_objects) == []


async def test_health_and_metrics(client: httpx.AsyncClient, world: World, media: Media) -> None:
    assert (await client.get("/healthz")).json() == {"status": "alive"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["components"]["database"]["status"] == "up"
    await client.post(f"/cases/{world.case_id}/media", headers=context(world), content=media["png"])
    metrics = (await client.get("/metrics")).text
    assert (
        f'aima_http_requests_total{{method="POST",route="/cases/{{case_id}}/media",service="{NAME}",status="201"}}'
        in metrics
    )
