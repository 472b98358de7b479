"""The ingest function's internal HTTP API: delegation tokens only, problem+json errors, streamed single
and bulk uploads, and tus 1.0.0 resumable uploads through real uvicorn servers (a dropped connection,
then a second server instance finishing the upload)."""

from __future__ import annotations

import base64
import hashlib
import random
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from aima.config.service import ConfigService
from aima.storage.documents import DocumentStore
from aima.storage.jobs import JobRepository
from aima.storage.media import MediaRepository
from aima.storage.objects import ObjectStore
from aima.storage.schema import jobs
from aima.storage.scoped import scoped_session
from aima.telemetry.health import HealthRegistry
from events.catalogue import JobCreated, MediaUploaded
from functions.ingest.app import AUDIENCE, NAME, create_app
from functions.ingest.core import IngestCore, object_key
from functions.ingest.sniff import ACCEPTED
from tests.support import serve

from .conftest import CoreFactory, Media, MiB, Recorder, World, leftovers, set_limits

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


def delegation(world: World, case_id: str | None = None) -> str:
    """What the gateway mints after authorising an upload into the case."""
    return world.tokens.issue_delegation(
        audience=AUDIENCE, tenant_id=world.tenant_id, actor=world.owner_id, case_id=case_id or world.case_id
    )


def context(world: World, token: str | None = None, **extra: str) -> dict[str, str]:
    """What the gateway sends: a delegation for the case, the request id, and tus' version."""
    return {
        "Authorization": f"Bearer {token or delegation(world)}",
        "X-AIMA-Request-ID": "req-4711",
        "Tus-Resumable": "1.0.0",
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


async def test_internal_endpoints_refuse_callers_without_a_delegation(
    client: httpx.AsyncClient, world: World, local_objects: ObjectStore, media: Media
) -> None:
    case = f"/cases/{world.case_id}"
    routes: list[tuple[str, str]] = [
        ("POST", f"{case}/media"),
        ("POST", f"{case}/media:bulk"),
        ("OPTIONS", f"{case}/uploads"),
        ("POST", f"{case}/uploads"),
        ("HEAD", f"{case}/uploads/{uuid.uuid4().hex}"),
        ("PATCH", f"{case}/uploads/{uuid.uuid4().hex}"),
        ("DELETE", f"{case}/uploads/{uuid.uuid4().hex}"),
    ]
    refusals = {
        "no token": {k: v for k, v in context(world).items() if k != "Authorization"},
        "a user's token": context(world, world.user_token),
        "a service token": context(world, world.service_token),
        "a forged token": context(world, delegation(world)[:-4] + "AAAA"),
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
                problem(response, 401, "delegation-required")
    response = await client.post(
        f"{case}/media", headers=context(world, world.user_token), content=media["png"]
    )
    assert "wrong audience" in problem(response, 401, "delegation-required")["detail"]
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
    headers = context(world, delegation(world, missing))
    response = await client.post(f"/cases/{missing}/media", headers=headers, content=media["png"])
    problem(response, 404, "case-not-found")
    begun = await client.post(
        f"/cases/{world.case_id}/uploads", headers=context(world, **{"Upload-Length": "100"})
    )
    location = begun.headers["location"]
    elsewhere = location.replace(world.case_id, world.other_case_id)
    other = context(world, delegation(world, world.other_case_id))
    response = await client.patch(
        elsewhere,
        headers={**other, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
        content=media["png"],
    )
    problem(response, 404, "upload-not-found")
    assert (await client.head(elsewhere, headers=other)).status_code == 404
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
    assert sorted(child.id for child in children) == sorted(entry["job_id"] for entry in stored)
    assert sorted(child.media_id for child in children) == sorted(entry["media_id"] for entry in stored)
    created = await recorder.of_type(JobCreated.TYPE)
    assert len(created) == 3
    assert (created[0].data or {})["job_id"] == body["parent_job_id"]
    # the files wait in the queue: the scheduler starts them (media.uploaded), not ingest
    assert await recorder.of_type(MediaUploaded.TYPE) == []


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
    fields_only = await client.post(url, headers=context(world), files=[("note", (None, b"no file here"))])
    problem(fields_only, 400, "no-files")
    with scoped_session(world.db, world.scope()) as session:  # no parent job stayed behind
        assert session.execute(select(func.count()).select_from(jobs)).scalar_one() == 0
    assert keys(local_objects, world) == []
    assert MediaRepository(world.db).list(world.scope(), world.case_id) == []
    assert await recorder.settled() == []


async def test_tus_session_rules(
    client: httpx.AsyncClient, world: World, config: ConfigService, media: Media
) -> None:
    base = f"/cases/{world.case_id}/uploads"
    problem(await client.post(base, headers=context(world)), 400, "invalid-header")
    problem(await client.post(base, headers=context(world, **{"Upload-Length": "-1"})), 400, "invalid-header")
    deferred = context(world, **{"Upload-Defer-Length": "1"})
    problem(await client.post(base, headers=deferred), 400, "invalid-header")
    for bad in ("filename YQ== Yg==", "filename YQ==,filename Yg==", "filename !!!", "name a"):
        response = await client.post(
            base, headers=context(world, **{"Upload-Length": "9", "Upload-Metadata": bad})
        )
        problem(response, 400, "invalid-header")
    set_limits(config, world, max_upload_bytes=10 * MiB)
    problem(
        await client.post(base, headers=context(world, **{"Upload-Length": str(11 * MiB)})), 413, "too-large"
    )
    options = await client.options(base, headers={"Authorization": context(world)["Authorization"]})
    assert options.status_code == 204
    assert {name: options.headers[name] for name in ("tus-resumable", "tus-version", "tus-extension")} == {
        "tus-resumable": "1.0.0",
        "tus-version": "1.0.0",
        "tus-extension": "creation,termination,checksum",
    }
    assert (options.headers["tus-max-size"], options.headers["tus-checksum-algorithm"]) == (
        str(10 * MiB),
        "md5,sha1,sha256",
    )

    for version, status, kind in (("0.2.2", 412, "unsupported-tus-version"), (None, 400, "invalid-header")):
        headers = {k: v for k, v in context(world, **{"Upload-Length": "10"}).items() if k != "Tus-Resumable"}
        if version is not None:
            headers["Tus-Resumable"] = version
        refused = await client.post(base, headers=headers)
        problem(refused, status, kind)
        assert (refused.headers["tus-version"], refused.headers["tus-resumable"]) == ("1.0.0", "1.0.0")

    png = media["png"]
    metadata = "filename " + base64.b64encode("Übersicht 1.png".encode()).decode() + ",is_confidential"
    begun = await client.post(
        base, headers=context(world, **{"Upload-Length": str(len(png)), "Upload-Metadata": metadata})
    )
    assert begun.status_code == 201
    assert begun.headers["tus-resumable"] == "1.0.0"
    location = begun.headers["location"]
    assert location == f"{base}/{begun.json()['upload_id']}"
    patch = context(world, **{"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
    wrong_type = {**patch, "Content-Type": "application/octet-stream"}
    problem(await client.patch(location, headers=wrong_type, content=b"x"), 415, "unsupported-content-type")
    mismatch = await client.patch(location, headers={**patch, "Upload-Offset": "5"}, content=png[:100])
    problem(mismatch, 409, "offset-mismatch")
    assert mismatch.headers["upload-offset"] == "0"
    for checksum, status, kind in (
        ("crc32 AAAAAA==", 400, "unsupported-checksum"),
        ("sha1 not-base64", 400, "invalid-header"),
        (
            "sha1 " + base64.b64encode(hashlib.sha1(b"other", usedforsecurity=False).digest()).decode(),
            460,
            "checksum-mismatch",
        ),
    ):
        response = await client.patch(
            location, headers={**patch, "Upload-Checksum": checksum}, content=png[:100]
        )
        problem(response, status, kind)
    head = await client.head(location, headers=context(world))
    assert (head.headers["upload-offset"], head.headers["upload-metadata"]) == ("0", metadata)
    assert head.headers["tus-resumable"] == "1.0.0"

    small = await client.patch(location, headers=patch, content=png[:100])  # any size is taken
    assert (small.status_code, small.headers["upload-offset"]) == (204, "100")
    md5 = base64.b64encode(hashlib.md5(png[100:], usedforsecurity=False).digest()).decode()
    last = await client.patch(
        location,
        headers={**patch, "Upload-Offset": "100", "Upload-Checksum": f"md5 {md5}"},
        content=png[100:],
    )
    assert (last.status_code, last.content) == (204, b"")
    assert last.headers["upload-offset"] == str(len(png))
    assert last.headers["x-aima-sha256"] == sha256(png)
    assert "x-aima-duplicate-of" not in last.headers
    [row] = MediaRepository(world.db).list(world.scope(), world.case_id)
    assert (row.id, row.filename) == (last.headers["x-aima-media-id"], "Übersicht 1.png")
    done = await client.head(location, headers=context(world))
    assert (done.headers["upload-offset"], done.headers["x-aima-media-id"]) == (str(len(png)), row.id)
    assert (await client.delete(location, headers=context(world))).status_code == 204
    problem(await client.delete(location, headers=context(world)), 404, "upload-not-found")
    assert MediaRepository(world.db).get(world.scope(), row.id) is not None  # the file stays

    again = await client.post(base, headers=context(world, **{"Upload-Length": str(len(png))}))
    duplicate = await client.patch(again.headers["location"], headers=patch, content=png)
    assert duplicate.headers["x-aima-duplicate-of"] == duplicate.headers["x-aima-media-id"] == row.id


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
        assert 8 * MiB <= int(head.headers["upload-offset"]) <= 11 * MiB
        assert head.headers["upload-length"] == str(20 * MiB)
        assert head.headers["cache-control"] == "no-store"
    # the server has shut down gracefully: the cut-off request is done, and kept what arrived of it

    replica_documents = DocumentStore.from_uri(f"litemongo://{documents_path}", "aima")
    try:
        replica_objects = open_objects()
        replica = make_core(replica_objects, documents_store=replica_documents)
        async with serve(app_for(replica, world)) as url, httpx.AsyncClient(timeout=timeout) as http:
            head = await http.head(url + location, headers=headers)
            kept = int(head.headers["upload-offset"])
            assert 8 * MiB <= kept <= 11 * MiB
            stale = await http.patch(
                url + location, headers={**patch, "Upload-Offset": "0"}, content=data[: 8 * MiB]
            )
            problem(stale, 409, "offset-mismatch")
            assert stale.headers["upload-offset"] == str(kept)
            second = await http.patch(
                url + location,
                headers={**patch, "Upload-Offset": str(kept)},
                content=data[kept : 16 * MiB],
            )
            assert (second.status_code, second.headers["upload-offset"]) == (204, str(16 * MiB))
            last = await http.patch(
                url + location, headers={**patch, "Upload-Offset": str(16 * MiB)}, content=data[16 * MiB :]
            )
            assert (last.status_code, last.content) == (204, b""), last.text
            assert last.headers["upload-offset"] == str(20 * MiB)
            media_id = last.headers["x-aima-media-id"]
            assert last.headers["x-aima-sha256"] == sha256(data)
            row = MediaRepository(world.db).get(world.scope(), media_id)
            assert row is not None
            assert (row.size, row.filename, row.content_type) == (
                len(data),
                "dash cam.webm",
                "video/webm",
            )
            stored = b"".join(replica_objects.get(object_key(world.case_id, media_id)))
            assert sha256(stored) == sha256(data)
            done = await http.head(url + location, headers=headers)
            assert (done.status_code, done.headers["upload-offset"]) == (200, str(20 * MiB))
            assert done.headers["x-aima-media-id"] == media_id
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
