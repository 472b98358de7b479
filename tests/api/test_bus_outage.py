"""A real event-bus outage: ingest publishes on a NATS JetStream server of the test's own, which is
killed and started again on the same port and store.

While NATS is down an upload cannot be announced, so ingest undoes it and answers ``503
service-unavailable`` with ``Retry-After``, which the gateway relays as it is (not ``500``); nothing of
the refused upload is kept. Once NATS is back the same upload succeeds.
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
from functions.api.app import create_app
from functions.api.services import ApiServices
from functions.ingest.spec import app as ingest_app
from functions.runtime.deps import Deps
from tests.api.conftest import World, api_settings, client_for, unique_png
from tests.api.test_transport import problem
from tests.support import free_port


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


@pytest.fixture
async def world(settings: Settings) -> AsyncIterator[World]:
    """The gateway and an ingest function publishing on NATS; ingest is called as a server would
    answer (its response, not its exception)."""
    deps = Deps(settings)
    await deps.bus.start()
    ingest = ingest_app(deps)
    transport = httpx.ASGITransport(app=ingest, raise_app_exceptions=False)
    services = ApiServices.open(settings, ingest_transport=transport)
    async with client_for(create_app(services)) as client:
        yield await World.build(services, client)
    await services.close()
    await deps.bus.close()
    deps.close()


async def test_an_upload_while_the_bus_is_down_answers_503_keeps_nothing_and_succeeds_later(
    world: World, nats: NatsServer
) -> None:
    media = f"/api/v1/cases/{world.case_id}/media"
    headers = world.headers("owner") | {"X-AIMA-Filename": "scene.png"}
    first = await world.client.post(media, headers=headers, content=unique_png())
    assert first.status_code == 201, first.text
    objects = world.services.stores.objects

    nats.stop()
    refused = await world.client.post(media, headers=headers, content=(later := unique_png()))

    body = problem(refused, 503, "service-unavailable")
    assert refused.headers["retry-after"] == "5"
    assert body["component"] == "event bus"
    listed = await world.client.get(media, headers=world.headers("owner"))
    assert [row["id"] for row in listed.json()] == [first.json()["media_id"]]
    assert [info.key for info in objects.list(f"cases/{world.case_id}/media/")] == [
        f"cases/{world.case_id}/media/{first.json()['media_id']}/original"
    ]
    [record] = world.services.audit.query(world.tenant, action="media.upload", limit=1)
    assert (record["outcome"], record["detail"]["status"]) == ("failed", 503)

    nats.start()  # same port, same store
    deadline = time.monotonic() + 30
    while True:
        again = await world.client.post(media, headers=headers, content=later)
        if again.status_code != 503 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)  # the client reconnects on its own schedule
    assert again.status_code == 201, again.text
    assert len((await world.client.get(media, headers=world.headers("owner"))).json()) == 2
    assert world.services.audit.verify(world.tenant) == []
