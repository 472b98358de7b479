"""A real database outage: the gateway, the ingest function and an event function on a PostgreSQL
server of the test's own, which is killed mid-upload and started again.

While it is down, every request answers ``503 service-unavailable`` with ``Retry-After`` (never
``500 internal-error``): through the gateway, from ingest itself, and from the function runtime's
CloudEvent endpoint. Nothing is lost: the resumable upload resumes where it was, the upload refused
during the outage left no object behind, and the audit chain is intact. Once the server is back,
everything answers again without a restart.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI

from aima.settings import Settings
from events.bus_memory import MemoryBus
from events.catalogue import RetentionSweepRequested, make_event
from functions.api.forwarding import IngestClient
from functions.ingest.spec import app as ingest_app
from functions.retention.spec import SPEC as RETENTION
from functions.runtime.deps import Deps
from functions.runtime.host import Host
from tests.api.conftest import World, api_settings, unique_png
from tests.api.test_transport import problem
from tests.support import free_port

PART = 5 * 1024 * 1024


class PostgresServer:
    """A PostgreSQL server in a folder of its own on a free loopback port, run as the ``postgres``
    system user when the tests run as root (PostgreSQL refuses root). `stop` is abrupt (immediate
    shutdown: no checkpoint, crash recovery on the next start), as a killed server would be."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not found:
            pytest.fail("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin")
        self.bin = Path(found[-1]).parent
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="aima-pg-"))  # not under pytest's 0700 root folder
        self.data = self.root / "data"
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self._as: dict[str, Any] = {}
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            self._as = {"user": "postgres", "group": "postgres", "extra_groups": []}

    def _run(self, *argv: str) -> None:
        done = subprocess.run(
            [str(self.bin / argv[0]), *argv[1:]], capture_output=True, text=True, timeout=120, **self._as
        )
        assert done.returncode == 0, f"{argv[0]} failed: {done.stdout}{done.stderr}"

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start")
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(
                    f"postgresql://postgres@127.0.0.1:{self.port}/postgres", connect_timeout=2
                ).close()
                return
            except psycopg.OperationalError:
                assert time.monotonic() < deadline, "the PostgreSQL server did not come up"
                time.sleep(0.1)

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                [str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"], **self._as
            )
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.init()
    server.start()
    yield server
    server.remove()


@pytest.fixture
def settings(tmp_path: Path, postgres: PostgresServer) -> Settings:
    """The gateway's and ingest's settings, on the throwaway server; nothing is remembered between
    requests (every request reads the database)."""
    return api_settings(tmp_path, database_url=postgres.url, access_cache_ttl=0)


def unavailable(response: httpx.Response) -> None:
    assert response.headers.get("retry-after") == "5", (response.status_code, response.text)
    if response.request.method == "HEAD":  # no body
        assert response.status_code == 503
        return
    body = problem(response, 503, "service-unavailable")
    assert body["component"] == "database"
    assert "database is unavailable" in body["detail"]


async def _body(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.fixture
async def ingest_direct(settings: Settings) -> AsyncIterator[tuple[FastAPI, Deps]]:
    """A second ingest app on the same stores, to call without the gateway."""
    deps = Deps(settings, bus=MemoryBus())
    yield ingest_app(deps), deps
    deps.close()


async def test_a_database_outage_answers_503_with_retry_after_loses_nothing_and_recovers(
    world: World, postgres: PostgresServer, ingest_direct: tuple[FastAPI, Deps], settings: Settings
) -> None:
    client, owner = world.client, world.headers("owner") | {"Tus-Resumable": "1.0.0"}
    media = f"/api/v1/cases/{world.case_id}/media"
    first = await client.post(media, headers=owner | {"X-AIMA-Filename": "one.png"}, content=unique_png())
    assert first.status_code == 201, first.text
    # a resumable upload of two parts, the first one sent
    second_file = unique_png() + b"\0" * (2 * PART)
    begun = await client.post(
        f"/api/v1/cases/{world.case_id}/uploads",
        headers=owner | {"Upload-Length": str(len(second_file)), "X-AIMA-Filename": "two.png"},
    )
    assert begun.status_code == 201, begun.text
    upload = begun.headers["location"]
    stream = {"Content-Type": "application/offset+octet-stream"}
    sent = await client.patch(
        upload, headers=owner | stream | {"Upload-Offset": "0"}, content=second_file[:PART]
    )
    assert sent.status_code == 204, sent.text
    # what ingest and an event function are called with during the outage, prepared while the server is up
    ingest, _ = ingest_direct
    internal = upload.removeprefix("/api/v1")
    direct = IngestClient.from_settings(
        settings,
        tokens=world.services.tokens,
        transport=httpx.ASGITransport(app=ingest, raise_app_exceptions=False),  # as a server answers
    )
    context: dict[str, Any] = {
        "tenant_id": world.tenant,
        "actor": world.users["owner"].id,
        "request_id": None,
    }
    tus = {"Tus-Resumable": "1.0.0"}
    assert (await direct.send("HEAD", internal, headers=tus, **context)).status_code == 200
    retention = Host(Deps(settings.model_copy(update={"delivery": "http"}), bus=MemoryBus()), [RETENTION])
    sweep = retention.deps.signer.sign(make_event(RetentionSweepRequested(), source="/aima/test/schedule"))
    retention_app = retention.app(RETENTION)

    postgres.stop()  # the database dies mid-upload

    for response in (
        await client.get("/api/v1/cases", headers=owner),
        await client.get(f"/api/v1/cases/{world.case_id}", headers=world.headers("admin")),
        await client.post(media, headers=owner | {"X-AIMA-Filename": "three.png"}, content=unique_png()),
        await client.head(upload, headers=owner),
        await client.patch(
            upload, headers=owner | stream | {"Upload-Offset": str(PART)}, content=second_file[PART:]
        ),
        await client.post("/api/v1/auth/token", data={"username": "someone", "password": "x" * 12}),
    ):
        unavailable(response)
    refused = await direct.send(
        "POST",
        f"/cases/{world.case_id}/media",
        headers={"X-AIMA-Filename": "four.png"},
        content=_body(unique_png()),
        **context,
    )
    unavailable(refused)
    await direct.close()
    transport = httpx.ASGITransport(app=retention_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://retention") as function:
        delivered = await function.post(
            "/", headers={"content-type": "application/cloudevents+json"}, content=sweep.to_json()
        )
    unavailable(delivered)

    postgres.start()  # back on the same port, after crash recovery

    offset = await client.head(upload, headers=owner)
    assert offset.status_code == 200, offset.text
    assert offset.headers["upload-offset"] == str(PART)  # the part sent before the outage is kept
    done = await client.patch(
        upload, headers=owner | stream | {"Upload-Offset": str(PART)}, content=second_file[PART:]
    )
    assert done.status_code == 204, done.text
    again = await client.post(media, headers=owner | {"X-AIMA-Filename": "three.png"}, content=unique_png())
    assert again.status_code == 201, again.text
    listed = await client.get(media, headers=owner)
    assert listed.status_code == 200
    rows = listed.json()
    assert sorted(row["filename"] for row in rows) == ["one.png", "three.png", "two.png"]
    originals = [info.key for info in world.services.stores.objects.list(f"cases/{world.case_id}/media/")]
    assert sorted(originals) == sorted(f"cases/{world.case_id}/media/{row['id']}/original" for row in rows)
    assert world.services.audit.verify(world.tenant) == []
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=retention_app), base_url="http://retention"
    ) as function:
        swept = await function.post(
            "/", headers={"content-type": "application/cloudevents+json"}, content=sweep.to_json()
        )
    assert swept.status_code == 202, swept.text
    retention.deps.close()
