"""Functions under Knative Eventing: results published to the Broker's ingress over HTTP (``AIMA_BUS=http``,
``K_SINK``), and the Trigger's dead-letter sink at ``POST /dead-letter``.

The sink is a real HTTP server on loopback that parses each request with the CloudEvents binding, as a
Broker ingress does, and answers what the test tells it to."""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request, Response

from aima.settings import Settings, SettingsError, load_settings
from events.bus import BusError, Subscription, Unretryable
from events.bus_http import HttpBus
from events.catalogue import EventData, MediaFailed, MediaProbed, MediaUploaded, make_event, parse_data
from events.envelope import CloudEvent
from events.factory import bus_from_settings
from events.http import from_http, to_binary
from functions.runtime.app import DEAD_LETTER_PATH, EMITTED_IDS
from functions.runtime.context import Context
from functions.runtime.deps import Deps
from functions.runtime.host import Host
from functions.runtime.spec import FunctionSpec

SHA = "0" * 64


class Sink:
    """A Broker ingress stand-in on loopback: records what it accepts, answers ``status``."""

    def __init__(self) -> None:
        self.received: list[CloudEvent] = []
        self.status = 202
        app = FastAPI()

        @app.post("/{namespace}/{broker}")
        async def ingress(namespace: str, broker: str, request: Request) -> Response:
            event = from_http(request.headers, await request.body())
            if self.status < 300:
                self.received.append(event)
            return Response(status_code=self.status, content=b"" if self.status < 300 else b"no")

        @app.options("/{namespace}/{broker}")
        async def options(namespace: str, broker: str) -> Response:
            return Response(status_code=200)

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error"))
        self.url = f"http://127.0.0.1:{self.port}/aima/aima"


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    sink = Sink()
    task = asyncio.create_task(sink.server.serve())
    while not sink.server.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
        await asyncio.sleep(0.01)
    yield sink
    sink.server.should_exit = True
    await task


class Probe:
    async def handle(self, data: MediaUploaded, ctx: Context) -> Sequence[EventData]:
        if data.filename == "fail":
            raise RuntimeError("model crashed")
        return [
            MediaProbed(tenant_id=data.tenant_id, case_id=data.case_id, media_id=data.media_id, kind="image")
        ]


def probe_spec() -> FunctionSpec:
    """A function that answers media.uploaded with media.probed (and fails on a file called ``fail``)."""
    return FunctionSpec(
        name="probe-k",
        description="t",
        consumes=(MediaUploaded,),
        emits=(MediaProbed,),
        build=lambda d: Probe(),
    )


def uploaded(filename: str = "a.png", media_id: str = "m1") -> CloudEvent:
    data = MediaUploaded(
        tenant_id="t1",
        case_id="c1",
        media_id=media_id,
        job_id="j1",
        object_key=f"cases/c1/media/{media_id}/original",
        sha256=SHA,
        size=1,
        content_type="image/png",
        filename=filename,
    )
    return make_event(data, source="/aima/functions/ingest")


def knative_settings(tmp_path: Path, sink_url: str) -> Settings:
    return load_settings(
        profile="embedded", data_dir=tmp_path / "aima", bus="http", delivery="http", sink_url=sink_url
    )


async def test_results_reach_the_sink_signed_in_binary_mode(tmp_path: Path, sink: Sink) -> None:
    settings = knative_settings(tmp_path, sink.url)
    deps = Deps(settings)
    spec = probe_spec()
    host = Host(deps, [spec])
    await host.start()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=host.app(spec)), base_url="http://fn"
        ) as c:
            headers, body = to_binary(deps.signer.sign(uploaded()))
            answer = await c.post("/", headers=headers, content=body)
        assert answer.status_code == 202
        [emitted_id] = answer.headers[EMITTED_IDS].split(",")
        for _ in range(200):
            if sink.received:
                break
            await asyncio.sleep(0.02)
        [event] = sink.received
        assert event.id == emitted_id
        assert event.type == MediaProbed.TYPE
        deps.signer.verify(event)  # the signature survives the HTTP hop, as it must through the Broker
        assert deps.outbox.pending() == []
    finally:
        await host.stop()


async def test_the_bus_refuses_or_keeps_events_by_the_sinks_answer(sink: Sink) -> None:
    bus = HttpBus(sink.url)
    await bus.start()
    try:
        assert await bus.publish(uploaded()) is True
        await bus.health()
        sink.status = 400
        with pytest.raises(Unretryable, match="answered 400"):
            await bus.publish(uploaded())
        for status in (429, 503):
            sink.status = status
            with pytest.raises(BusError, match=f"answered {status}"):
                await bus.publish(uploaded())
        with pytest.raises(BusError, match="consumed from the bus"):
            await bus.subscribe(Subscription("x", (MediaProbed.TYPE,), lambda e: asyncio.sleep(0)))
        assert await bus.dead_letters() == []
    finally:
        await bus.close()
    assert len(sink.received) == 1
    unreachable = HttpBus("http://127.0.0.1:9/aima/aima", timeout=1)
    with pytest.raises(BusError, match="unreachable"):
        await unreachable.publish(uploaded())
    with pytest.raises(BusError, match="unreachable"):
        await unreachable.health()
    await unreachable.close()


async def test_while_the_sink_is_down_results_wait_in_the_outbox(tmp_path: Path, sink: Sink) -> None:
    deps = Deps(knative_settings(tmp_path, sink.url))
    spec = probe_spec()
    host = Host(deps, [spec])
    await host.start()
    try:
        sink.status = 503
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=host.app(spec)), base_url="http://fn"
        ) as c:
            headers, body = to_binary(deps.signer.sign(uploaded()))
            assert (await c.post("/", headers=headers, content=body)).status_code == 202
        await asyncio.sleep(0.2)
        [pending] = deps.outbox.pending()
        sink.status = 202
        assert await deps.relay.flush() == 1
        assert [e.id for e in sink.received] == [pending.event.id]
    finally:
        await host.stop()


async def test_a_dead_letter_settles_the_files_step_as_failed_once(tmp_path: Path, sink: Sink) -> None:
    deps = Deps(knative_settings(tmp_path, sink.url))
    spec = probe_spec()
    host = Host(deps, [spec])
    await host.start()
    try:
        original = deps.signer.sign(uploaded("fail", media_id="m2"))
        dead = original.with_extensions(
            knativeerrorcode="500",
            knativeerrordest="http://aima-probe.aima.svc.cluster.local",
            knativeerrordata=base64.b64encode(b"handler failed").decode(),
        )
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=host.app(spec)), base_url="http://fn"
        ) as c:
            unsigned = to_binary(uploaded("fail", media_id="m2"))
            assert (
                await c.post(DEAD_LETTER_PATH, headers=unsigned[0], content=unsigned[1])
            ).status_code == 401
            headers, body = to_binary(dead)
            first = await c.post(DEAD_LETTER_PATH, headers=headers, content=body)
            again = await c.post(DEAD_LETTER_PATH, headers=headers, content=body)
        assert first.status_code == 202
        assert again.status_code == 202
        assert again.headers[EMITTED_IDS] == ""  # settled once
        await deps.relay.flush()
        [failed] = [e for e in sink.received if e.type == MediaFailed.TYPE]
        payload = parse_data(failed)
        assert isinstance(payload, MediaFailed)
        assert (payload.media_id, payload.step) == ("m2", "probe-k")
        assert "status 500" in payload.reason
        assert "handler failed" in payload.reason
        assert "aima-probe" in payload.reason
    finally:
        await host.stop()


def test_the_http_bus_needs_a_sink_and_http_delivery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError, match="AIMA_SINK_URL"):
        load_settings(profile="embedded", data_dir=tmp_path, bus="http", delivery="http")
    with pytest.raises(SettingsError, match="AIMA_DELIVERY=http"):
        load_settings(profile="embedded", data_dir=tmp_path, bus="http", sink_url="http://broker")
    monkeypatch.setenv("K_SINK", "http://broker-ingress.knative-eventing.svc.cluster.local/aima/aima")
    settings = load_settings(profile="embedded", data_dir=tmp_path, bus="http", delivery="http")
    bus = bus_from_settings(settings)
    assert isinstance(bus, HttpBus)
    assert bus.sink_url == "http://broker-ingress.knative-eventing.svc.cluster.local/aima/aima"
