"""The function runtime: typed cores behind the HTTP adapter (as a Knative Trigger calls it) and the bus
consumer, with signed events, the processed-events ledger and the outbox, on real stores."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aima.settings import Settings, load_settings
from aima.telemetry.logging import setup_logging
from aima.telemetry.metrics import REGISTRY
from aima.telemetry.tracing import setup_tracing
from events.bus import Subscription
from events.bus_memory import MemoryBus
from events.catalogue import EventData, MediaProbed, MediaUploaded, make_event
from events.envelope import CloudEvent, derived_event_id
from events.http import to_binary, to_structured
from functions.runtime.app import EMITTED_IDS, REFUSED_TENANT, REQUEST_ID
from functions.runtime.context import Context
from functions.runtime.deps import Deps
from functions.runtime.host import Host
from functions.runtime.spec import FunctionSpec, SpecError
from inference.errors import InvalidModelOutput, ModelNotConfigured, ModelUnavailable

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_SPAN}-01"
SHA = "0" * 64


class Core:
    """A typed core: no HTTP, no bus; fails when the file is called ``fail``."""

    def __init__(self) -> None:
        self.seen: list[tuple[MediaUploaded, Context]] = []

    async def handle(self, data: MediaUploaded, ctx: Context) -> Sequence[EventData]:
        self.seen.append((data, ctx))
        if data.filename == "fail":
            raise RuntimeError("model crashed")
        return [
            MediaProbed(
                tenant_id=data.tenant_id,
                case_id=data.case_id,
                media_id=data.media_id,
                kind="image",
                width=2,
                height=1,
            )
        ]


class Env:
    def __init__(self, name: str, settings: Settings, *, healthy: list[bool]) -> None:
        self.name = name
        self.core = Core()
        self.memory = MemoryBus()
        self.deps = Deps(settings, bus=self.memory)
        self.spec = FunctionSpec(
            name=name,
            description="a test function",
            consumes=(MediaUploaded,),
            emits=(MediaProbed,),
            build=lambda _deps: self.core,
            needs=("database", "bus"),
        )
        self.host = Host(self.deps, [self.spec])
        self.healthy = healthy
        self.app = self.host.app(self.spec)
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://fn")
        self.published: list[CloudEvent] = []

    async def record(self, event: CloudEvent) -> Sequence[CloudEvent]:
        self.published.append(event)
        return []

    def signed(self, event: CloudEvent) -> CloudEvent:
        return self.deps.signer.sign(event)


@pytest.fixture
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    setup_tracing("aima-test")
    settings = load_settings(profile="embedded", data_dir=tmp_path / "aima", delivery="http")
    env = Env(f"fn-{abs(hash(request.node.name)) % 10**8}", settings, healthy=[True])
    await env.host.start()
    await env.deps.bus.subscribe(Subscription("observer", (MediaProbed.TYPE,), env.record))
    yield env
    await env.client.aclose()
    await env.host.stop()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def uploaded(filename: str = "a.png") -> CloudEvent:
    data = MediaUploaded(
        tenant_id="t1",
        case_id="c1",
        media_id="m1",
        object_key="cases/c1/media/m1/original",
        sha256=SHA,
        size=1,
        content_type="image/png",
        filename=filename,
    )
    return make_event(data, source="/aima/functions/ingest", traceparent=TRACEPARENT)


def binary_request(event: CloudEvent) -> tuple[dict[str, str], bytes]:
    """Written by hand the way Knative's broker delivers binary mode (mixed-case names)."""
    headers, body = to_binary(event)
    mixed = {
        "-".join(part.capitalize() for part in name.split("-")): value for name, value in headers.items()
    }
    mixed["Ce-Knativearrivaltime"] = "2025-01-01T00%3A00%3A00Z"
    return mixed, body


@pytest.mark.parametrize("mode", ["binary", "structured"])
async def test_a_signed_event_reaches_the_typed_core_and_its_results_are_published_in_the_same_trace(
    env: Env, mode: str
) -> None:
    event = env.signed(uploaded())
    headers, body = binary_request(event) if mode == "binary" else to_structured(event)

    response = await env.client.post("/", headers=headers, content=body)

    assert response.status_code == 202, response.text
    assert response.content == b""
    expected_id = derived_event_id(event.id, env.name, MediaProbed.TYPE)
    assert response.headers[EMITTED_IDS] == expected_id
    [(data, ctx)] = env.core.seen
    assert isinstance(data, MediaUploaded)
    assert (data.media_id, ctx.event_id, ctx.function) == ("m1", event.id, env.name)
    await env.memory.drain(timeout=5)
    [published] = env.published
    assert published.id == expected_id
    assert (published.tenantid, published.caseid, published.subject) == ("t1", "c1", "m1")
    assert published.source == f"/aima/functions/{env.name}"
    env.deps.signer.verify(published)  # what a function publishes is signed too
    _, trace_id, span_id, _ = (published.traceparent or "").split("-")
    assert trace_id == TRACE_ID  # the trace continues ...
    assert span_id != PARENT_SPAN  # ... from the handler's own span


async def test_a_redelivered_event_is_handled_once_and_published_once(env: Env) -> None:
    headers, body = binary_request(env.signed(uploaded()))
    first = await env.client.post("/", headers=headers, content=body)
    again = await env.client.post("/", headers=headers, content=body)
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.headers[EMITTED_IDS] == ""
    await env.memory.drain(timeout=5)
    assert len(env.core.seen) == 1
    assert len(env.published) == 1


@pytest.mark.parametrize("forgery", ["unsigned", "data-changed", "other-event", "garbage"])
async def test_an_event_not_signed_by_the_platform_is_refused_with_401_and_audited(
    env: Env, forgery: str
) -> None:
    genuine = env.signed(uploaded())
    if forgery == "unsigned":
        event = uploaded()
    elif forgery == "data-changed":  # the probe's attack: real ids, a wrong sha256
        event = genuine.model_copy(update={"data": {**(genuine.data or {}), "sha256": "f" * 64}})
    elif forgery == "other-event":
        event = uploaded().model_copy(update={"aimasig": genuine.model_extra["aimasig"]})  # type: ignore[index]
    else:
        event = uploaded().model_copy(update={"aimasig": "eyJhbGciOiJub25lIn0.e30."})
    response = await env.client.post("/", headers=binary_request(event)[0], content=binary_request(event)[1])

    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "urn:aima:problem:unsigned-event"
    assert env.core.seen == []
    [record] = env.deps.audit.query(REFUSED_TENANT, action="event.refused")
    assert record["outcome"] == "denied"
    assert record["detail"]["event_id"] == event.id


async def test_an_unaccepted_type_or_invalid_data_is_refused_with_400(env: Env) -> None:
    other = env.signed(uploaded().model_copy(update={"type": "io.aima.media.probed.v1"}))
    response = await env.client.post("/", headers=binary_request(other)[0], content=binary_request(other)[1])
    assert response.status_code == 400
    assert response.json()["type"] == "urn:aima:problem:refused-event"
    assert "io.aima.media.probed.v1" in response.json()["detail"]

    invalid = env.signed(uploaded().model_copy(update={"data": {"tenant_id": "t1"}}))
    response = await env.client.post(
        "/", headers=binary_request(invalid)[0], content=binary_request(invalid)[1]
    )
    assert response.status_code == 400
    assert "invalid io.aima.media.uploaded.v1 data" in response.json()["detail"]
    assert env.core.seen == []


async def test_an_unparseable_request_is_a_problem(env: Env) -> None:
    response = await env.client.post("/", headers={"content-type": "application/json"}, content=b'{"a": 1}')
    assert response.status_code == 400
    problem = response.json()
    assert problem["type"] == "urn:aima:problem:invalid-cloudevent"
    assert "no ce-* headers" in problem["detail"]


async def test_a_failing_core_answers_500_logs_the_trace_and_publishes_nothing(
    env: Env, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    setup_logging(service=env.name)
    event = env.signed(uploaded("fail"))
    response = await env.client.post("/", headers=binary_request(event)[0], content=binary_request(event)[1])

    assert response.status_code == 500
    problem = response.json()
    assert problem["type"] == "urn:aima:problem:handler-failed"
    assert event.id in problem["detail"]
    await env.memory.drain(timeout=5)
    assert env.published == []
    [line] = [json.loads(x) for x in capsys.readouterr().err.splitlines() if '"handler failed"' in x]
    assert line["trace_id"] == TRACE_ID
    assert "RuntimeError: model crashed" in line["exception"]
    labels = {"consumer": env.name, "type": MediaUploaded.TYPE, "outcome": "retry"}
    assert REGISTRY.get_sample_value("aima_events_handled_total", labels) == 1
    # not settled: a redelivery runs the core again
    await env.client.post("/", headers=binary_request(event)[0], content=binary_request(event)[1])
    assert len(env.core.seen) == 2


async def test_when_the_bus_is_down_the_results_wait_in_the_outbox_and_are_published_later(env: Env) -> None:
    async def refuse(_events: Sequence[CloudEvent]) -> int:
        raise ConnectionError("nats is down")

    original = env.memory.publish_many
    env.memory.publish_many = refuse  # type: ignore[method-assign]
    event = env.signed(uploaded())
    response = await env.client.post("/", headers=binary_request(event)[0], content=binary_request(event)[1])
    assert response.status_code == 202  # handled and durably recorded: Knative must not retry
    assert env.published == []
    [pending] = env.deps.outbox.pending()
    assert pending.event.id == response.headers[EMITTED_IDS]

    env.memory.publish_many = original  # type: ignore[method-assign]
    assert await env.deps.relay.flush() == 1
    await env.memory.drain(timeout=5)
    assert [e.id for e in env.published] == [pending.event.id]
    assert env.deps.outbox.pending() == []


async def test_readiness_follows_the_specs_needs(env: Env) -> None:
    alive = await env.client.get("/healthz")
    assert (alive.status_code, alive.json()) == (200, {"status": "alive"})
    ready = await env.client.get("/readyz")
    assert ready.status_code == 200
    assert set(ready.json()["components"]) == {"database", "bus"}

    await env.memory.close()
    await asyncio.sleep(1.05)  # a report is reused for a second
    ready = await env.client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["components"]["bus"]["status"] == "down"


async def test_metrics_count_requests_by_route_and_status(env: Env) -> None:
    event = env.signed(uploaded())
    await env.client.post("/", headers=binary_request(event)[0], content=binary_request(event)[1])
    await env.client.get("/healthz")
    await env.client.get("/nowhere")

    response = await env.client.get("/metrics")
    assert response.status_code == 200
    samples = {
        (s.labels["method"], s.labels["route"], s.labels["status"]): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
        if s.name == "aima_http_requests_total" and s.labels.get("service") == env.name
    }
    assert samples == {("POST", "/", "202"): 1, ("GET", "/healthz", "200"): 1, ("GET", "unmatched", "404"): 1}


async def test_request_ids_are_kept_when_well_formed_and_made_otherwise(env: Env) -> None:
    kept = await env.client.get("/healthz", headers={REQUEST_ID: "req-42.a:b"})
    assert kept.headers[REQUEST_ID] == "req-42.a:b"
    replaced = await env.client.get("/healthz", headers={REQUEST_ID: "not ok <script>"})
    assert len(replaced.headers[REQUEST_ID]) == 32


async def test_with_bus_delivery_the_consumer_runs_and_post_is_not_served(tmp_path: Path) -> None:
    settings = load_settings(
        profile="embedded", data_dir=tmp_path / "aima", delivery="bus", bus_backoff=[0.05]
    )
    env = Env("fn-bus", settings, healthy=[True])
    await env.host.start()
    try:
        await env.deps.bus.subscribe(Subscription("observer", (MediaProbed.TYPE,), env.record))
        event = uploaded()
        response = await env.client.post(
            "/", headers=binary_request(event)[0], content=binary_request(event)[1]
        )
        assert response.status_code in (404, 405)  # one delivery path per process: no POST /

        await env.deps.bus.publish(event)
        await env.memory.drain(timeout=10)
        assert len(env.core.seen) == 1
        assert [e.id for e in env.published] == [derived_event_id(event.id, "fn-bus", MediaProbed.TYPE)]

        await env.deps.bus.publish(uploaded("fail"))  # retried, then a dead letter
        await env.memory.drain(timeout=30)
        [letter] = await env.memory.dead_letters("fn-bus")
        assert letter.attempts == settings.bus_max_deliver
        await env.deps.bus.publish(uploaded().model_copy(update={"id": "x1", "data": {"tenant_id": "t"}}))
        await env.memory.drain(timeout=10)
        refused = [d for d in await env.memory.dead_letters("fn-bus") if d.event.id == "x1"]
        assert [d.attempts for d in refused] == [1]  # invalid data is not retried
    finally:
        await env.client.aclose()
        await env.host.stop()


async def test_readiness_covers_a_configured_model_and_skips_one_that_is_not(tmp_path: Path) -> None:
    dead = "http://127.0.0.1:9"  # nothing listens on the discard port
    settings = load_settings(
        profile="embedded",
        data_dir=tmp_path / "aima",
        models={"text_embedder": {"backend": "openai", "model": "minilm", "endpoint": dead}},
    )
    deps = Deps(settings, bus=MemoryBus())
    spec = FunctionSpec(
        name="needs-models",
        description="a step with two models",
        consumes=(MediaUploaded,),
        build=lambda _deps: Core(),
        needs=("database", "model:text_embedder", "model:narrator"),
    )
    host = Host(deps, [spec])
    app = host.app(spec)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fn") as client:
            ready = await client.get("/readyz")
        body = ready.json()
        assert set(body["components"]) == {"database", "model:text_embedder"}  # the narrator: not_run
        assert body["components"]["model:text_embedder"]["status"] == "down"
        assert ready.status_code == 503
    finally:
        await host.stop()


def test_a_spec_naming_an_unknown_need_is_refused() -> None:
    with pytest.raises(SpecError, match="unknown readiness need 'model:crystal_ball'"):
        FunctionSpec(name="x", description="x", build=lambda _deps: Core(), needs=("model:crystal_ball",))


class ModelCore:
    """A core whose model fails in the way the file name says."""

    def __init__(self) -> None:
        self.calls = 0

    async def handle(self, data: MediaUploaded, ctx: Context) -> Sequence[EventData]:
        self.calls += 1
        if data.filename == "down":
            raise ModelUnavailable("connection refused", task="text_embedder")
        if data.filename == "unconfigured":
            raise ModelNotConfigured("no backend for text_embedder", task="text_embedder")
        raise InvalidModelOutput("the vector has 3 values, not 384", task="text_embedder")


@pytest.mark.parametrize(
    ("filename", "status", "kind", "attempts"),
    [
        ("down", 503, "service-unavailable", 3),  # retried with backoff
        ("unconfigured", 422, "step-failed", 1),  # the core should have recorded not_run: no retry
        ("garbage", 422, "step-failed", 1),  # the core should have recorded the item failed: no retry
    ],
)
async def test_model_failures_escaping_a_core_are_retried_only_when_the_model_is_down(
    tmp_path: Path, filename: str, status: int, kind: str, attempts: int
) -> None:
    core = ModelCore()
    spec = FunctionSpec(
        name="models", description="a step with a model", consumes=(MediaUploaded,), build=lambda _deps: core
    )
    for delivery in ("http", "bus"):
        settings = load_settings(
            profile="embedded",
            data_dir=tmp_path / delivery,
            delivery=delivery,
            bus_max_deliver=3,
            bus_backoff=[0.01],
        )
        memory = MemoryBus()
        deps = Deps(settings, bus=memory)
        host = Host(deps, [spec])
        app = host.app(spec)
        await host.start()
        core.calls = 0
        try:
            event = deps.signer.sign(uploaded(filename))
            if delivery == "http":
                async with httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://f"
                ) as c:
                    headers, body = to_structured(event)
                    response = await c.post("/", headers=headers, content=body)
                assert response.status_code == status, response.text
                assert response.json()["type"] == f"urn:aima:problem:{kind}"
                if status == 503:
                    assert response.headers["retry-after"] == "5"
            else:
                await deps.bus.publish(event)
                await memory.drain(timeout=10)
                [letter] = await memory.dead_letters("models")
                assert (letter.attempts, core.calls) == (attempts, attempts)
        finally:
            await host.stop()
