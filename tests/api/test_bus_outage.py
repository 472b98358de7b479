"""A real event-bus outage: ingest publishes on a NATS JetStream server of the test's own, which is
killed and started again on the same port and store.

While NATS is down an upload still succeeds: its row, its audit record and its ``media.uploaded``
commit together, the event in the outbox, and the relay publishes it once NATS is back; nothing is
published for an upload that was undone, and nothing is lost.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from aima.settings import Settings
from events.bus import Subscription
from events.catalogue import MediaUploaded
from events.envelope import CloudEvent, derived_event_id
from functions.api.app import create_app
from functions.api.services import ApiServices
from functions.ingest.spec import app as ingest_app
from functions.runtime.deps import Deps
from tests.api.conftest import World, api_settings, client_for, unique_png
from tests.support import eventually, free_port


class NatsServer:
    """A nats-server with JetStream on a fixed free port and its own store; `stop` kills it."""

    def __init__(self, store: Path) -> None:
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.store = store
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        argv = [binary, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store)]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                assert self.process.poll() is None, "nats-server exited"
                assert time.monotonic() < deadline, "nats-server did not answer"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "jetstream")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def settings(tmp_path: Path, nats: NatsServer) -> Settings:
    return api_settings(tmp_path, bus="nats", nats_url=nats.url)


world_deps: list[Deps] = []


@pytest.fixture
async def world(settings: Settings) -> AsyncIterator[World]:
    """The gateway and an ingest function publishing on NATS; ingest is called as a server would
    answer (its response, not its exception)."""
    deps = Deps(settings)
    await deps.bus.start()
    await deps.relay.start()
    world_deps.append(deps)
    ingest = ingest_app(deps)
    transport = httpx.ASGITransport(app=ingest, raise_app_exceptions=False)
    services = ApiServices.open(settings, ingest_transport=transport)
    async with client_for(create_app(services)) as client:
        yield await World.build(services, client)
    await services.close()
    await deps.relay.stop()
    await deps.bus.close()
    deps.close()
    world_deps.clear()


async def test_an_upload_while_the_bus_is_down_is_kept_audited_and_announced_when_it_is_back(
    world: World, nats: NatsServer
) -> None:
    [deps] = world_deps
    media = f"/api/v1/cases/{world.case_id}/media"
    headers = world.headers("owner") | {"X-AIMA-Filename": "scene.png"}
    first = await world.client.post(media, headers=headers, content=unique_png())
    assert first.status_code == 201, first.text

    nats.stop()
    during = await world.client.post(media, headers=headers, content=unique_png())
    assert during.status_code == 201, during.text
    stored = during.json()["media_id"]
    listed = await world.client.get(media, headers=world.headers("owner"))
    assert {row["id"] for row in listed.json()} == {first.json()["media_id"], stored}
    [record] = world.services.audit.query(world.tenant, action="media.store", limit=1)
    assert record["object"] == f"media/{stored}"
    waiting = [p.event.id for p in deps.outbox.pending() if p.event.type == MediaUploaded.TYPE]
    assert waiting == [derived_event_id(stored, MediaUploaded.TYPE)]

    nats.start()  # same port, same store: the relay's sweep publishes what waited
    await eventually(lambda: not deps.outbox.pending(), timeout=60)
    announced: list[str] = []

    async def record_uploaded(event: CloudEvent) -> list[CloudEvent]:
        announced.append(str((event.data or {})["media_id"]))
        return []

    await deps.bus.subscribe(Subscription("observer", (MediaUploaded.TYPE,), record_uploaded))
    await eventually(lambda: len(announced) >= 2, timeout=30)
    await asyncio.sleep(0.5)  # nothing more arrives: each upload is announced once
    assert sorted(announced) == sorted([first.json()["media_id"], stored])
    assert world.services.audit.verify(world.tenant) == []
