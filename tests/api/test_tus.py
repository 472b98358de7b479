"""A standard tus 1.0.0 client (tuspy, from PyPI) against the gateway served by uvicorn on loopback, with
ingest behind it: creation with metadata, bodies smaller than an object-store part, checksums,
resuming after an interrupted upload, discovery, termination and the version check."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import os
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from tusclient.client import TusClient
from tusclient.exceptions import TusCommunicationError

from aima.access.scope import Scope
from aima.domain import Media
from tests.api.conftest import World
from tests.support import serve

MiB = 1024 * 1024
PNG = b"\x89PNG\r\n\x1a\n"
OFFSET_STREAM = "application/offset+octet-stream"


@pytest.fixture
async def gateway(app: FastAPI, world: World) -> AsyncIterator[str]:
    async with serve(app) as url:
        yield url


def client(world: World, gateway: str, caller: str = "analyst") -> TusClient:
    return TusClient(f"{gateway}/api/v1/cases/{world.case_id}/uploads", headers=world.headers(caller))


def stored(world: World, media_id: str) -> bytes:
    key = f"cases/{world.case_id}/media/{media_id}/original"
    return b"".join(world.services.stores.objects.get(key))


def media_row(world: World, media_id: str) -> Media:
    row = world.services.media.get(Scope.for_tenant(world.tenant, "test"), media_id)
    assert row is not None
    return row


@pytest.mark.parametrize("checksum", [False, True], ids=["plain", "sha1-checksums"])
async def test_a_tus_client_uploads_through_the_gateway_in_bodies_smaller_than_a_part(
    world: World, gateway: str, checksum: bool
) -> None:
    data = PNG + os.urandom(11 * MiB + 123)
    uploader = client(world, gateway).uploader(
        file_stream=io.BytesIO(data),
        chunk_size=2 * MiB,  # below S3's 5 MiB minimum part: the server buffers them
        metadata={"filename": "Überwachung 7.png", "filetype": "image/png"},
        upload_checksum=checksum,
    )
    await asyncio.to_thread(uploader.upload)
    assert uploader.url.startswith(f"{gateway}/api/v1/cases/{world.case_id}/uploads/")
    last = uploader.request
    assert last is not None
    assert (last.status_code, last.response_headers["tus-resumable"]) == (204, "1.0.0")
    assert last.response_headers["upload-offset"] == str(len(data))
    media_id = last.response_headers["x-aima-media-id"]
    assert last.response_headers["x-aima-sha256"] == hashlib.sha256(data).hexdigest()
    assert stored(world, media_id) == data
    row = media_row(world, media_id)
    assert (row.filename, row.content_type, row.size) == (
        "Überwachung 7.png",
        "image/png",
        len(data),
    )

    async with httpx.AsyncClient() as http:  # the result stays visible: HEAD after completion
        head = await http.head(uploader.url, headers=world.headers("analyst") | {"Tus-Resumable": "1.0.0"})
    assert head.status_code == 200
    assert (head.headers["upload-offset"], head.headers["upload-length"]) == (str(len(data)),) * 2
    assert head.headers["x-aima-media-id"] == media_id
    assert head.headers["cache-control"] == "no-store"
    encoded = base64.b64encode("Überwachung 7.png".encode()).decode()
    assert f"filename {encoded}" in head.headers["upload-metadata"]


async def test_a_tus_client_resumes_an_interrupted_upload(world: World, gateway: str) -> None:
    data = PNG + os.urandom(14 * MiB)
    first = client(world, gateway).uploader(file_stream=io.BytesIO(data), chunk_size=3 * MiB)
    await asyncio.to_thread(first.upload, 3 * MiB)  # the client stops after its first body
    url = first.url
    assert first.offset == 3 * MiB

    # then its connection breaks in the middle of the next body: what arrived is kept
    async def cut_off() -> AsyncIterator[bytes]:
        yield data[3 * MiB : 5 * MiB]
        raise ConnectionResetError("the network went away")

    headers = world.headers("analyst") | {
        "Tus-Resumable": "1.0.0",
        "Upload-Offset": str(3 * MiB),
        "Content-Type": OFFSET_STREAM,
        "Content-Length": str(6 * MiB),
    }
    async with httpx.AsyncClient(timeout=30) as http:
        with pytest.raises(ConnectionResetError):
            await http.patch(url, headers=headers, content=cut_off())
        offset = await wait_for_offset(http, url, world, above=3 * MiB)
    assert 3 * MiB < offset <= 5 * MiB

    tus = client(world, gateway)  # a new client asks the server where to go on (HEAD)
    resumed = await asyncio.to_thread(tus.uploader, file_stream=io.BytesIO(data), url=url, chunk_size=4 * MiB)
    assert resumed.offset == offset
    await asyncio.to_thread(resumed.upload)
    assert resumed.request is not None
    media_id = resumed.request.response_headers["x-aima-media-id"]
    assert stored(world, media_id) == data


async def wait_for_offset(http: httpx.AsyncClient, url: str, world: World, *, above: int) -> int:
    """The upload's offset once the server has taken what arrived of a cut-off body."""
    headers = world.headers("analyst") | {"Tus-Resumable": "1.0.0"}
    for _ in range(100):
        offset = int((await http.head(url, headers=headers)).headers["upload-offset"])
        if offset > above:
            return offset
        await asyncio.sleep(0.05)
    return offset


async def test_discovery_version_checksum_termination_and_refusals(world: World, gateway: str) -> None:
    base = f"{gateway}/api/v1/cases/{world.case_id}/uploads"
    auth = world.headers("analyst")
    tus = {"Tus-Resumable": "1.0.0"}
    async with httpx.AsyncClient(timeout=30) as http:
        options = await http.options(base, headers=auth)
        assert options.status_code == 204
        assert options.headers["tus-resumable"] == options.headers["tus-version"] == "1.0.0"
        assert options.headers["tus-extension"] == "creation,termination,checksum"
        assert options.headers["tus-checksum-algorithm"] == "md5,sha1,sha256"
        assert int(options.headers["tus-max-size"]) > 0

        old = await http.post(base, headers=auth | {"Tus-Resumable": "0.2.2", "Upload-Length": "10"})
        assert (old.status_code, old.headers["tus-version"], old.headers["tus-resumable"]) == (
            412,
            "1.0.0",
            "1.0.0",
        )
        anonymous = await http.post(base, headers=tus | {"Upload-Length": "10"})
        assert (anonymous.status_code, anonymous.headers["tus-resumable"]) == (401, "1.0.0")
        viewer = await http.post(base, headers=world.headers("viewer") | tus | {"Upload-Length": "10"})
        assert (viewer.status_code, viewer.headers["tus-resumable"]) == (403, "1.0.0")

        data = PNG + os.urandom(1000)
        created = await http.post(base, headers=auth | tus | {"Upload-Length": str(len(data))})
        assert created.status_code == 201
        location = created.headers["location"]
        assert location.startswith(f"/api/v1/cases/{world.case_id}/uploads/")
        url = gateway + location
        wrong = base64.b64encode(hashlib.sha256(b"not these bytes").digest()).decode()
        patch = auth | tus | {"Upload-Offset": "0", "Content-Type": OFFSET_STREAM}
        mismatch = await http.patch(url, headers=patch | {"Upload-Checksum": f"sha256 {wrong}"}, content=data)
        assert (mismatch.status_code, mismatch.json()["type"]) == (460, "urn:aima:problem:checksum-mismatch")
        assert (await http.head(url, headers=auth | tus)).headers["upload-offset"] == "0"
        stale = await http.patch(url, headers=patch | {"Upload-Offset": "7"}, content=data)
        assert (stale.status_code, stale.headers["upload-offset"]) == (409, "0")

        ended = await http.delete(url, headers=auth | tus)
        assert (ended.status_code, ended.headers["tus-resumable"]) == (204, "1.0.0")
        gone = await http.head(url, headers=auth | tus)
        assert gone.status_code == 404
    with pytest.raises(TusCommunicationError):  # a tus client told the upload is gone
        await asyncio.to_thread(client(world, gateway).uploader, file_stream=io.BytesIO(data), url=url)
