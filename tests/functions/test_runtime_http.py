"""The function runtime: the HTTP adapter (as Knative calls it) and the bus worker, on a real MemoryBus."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator, Sequence

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aima.telemetry.health import HealthRegistry
from aima.telemetry.logging import setup_logging
from aima.telemetry.metrics import REGISTRY
from aima.telemetry.tracing import setup_tracing
from events.bus import BusError, RetryPolicy, Subscription
from events.bus_memory import MemoryBus
from events.envelope import CloudEvent, derived_event_id
from events.http import to_structured
from functions.runtime.app import EMITTED_IDS, REQUEST_ID, create_function_app
from functions.runtime.worker import run_worker

IN_TYPE = "io.aima.test.requested.v1"
OUT_TYPE = "io.aima.test.done.v1"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_SPAN}-01"


class Core:
    """A function core: no HTTP, no bus; fails when the event asks it to."""

    def __init__(self) -> None:
        self.seen: list[CloudEvent] = []

    async def __call__(self, event: CloudEvent) -> Sequence[CloudEvent]:
        self.seen.append(event)
        if (event.data or {}).get("fail"):
            raise RuntimeError("model crashed")
        done = CloudEvent(
            id=derived_event_id(event.id, "done"),
            source="/aima/functions/test",
            type=OUT_TYPE,
            data={"request": event.id},
            caseid=event.caseid,
        )
        return [done]


class Env:
    def __init__(self, name: str) -> None:
        self.name = name
        self.core = Core()
        self.bus = MemoryBus()
        self.published: list[CloudEvent] = []
        self.healthy = True
        self.health = HealthRegistry(timeout=1.0, cache_seconds=0)
        self.health.add("bus", self.bus.health)
        self.health.add("model", self._model_check)
        app = create_function_app(name, self.core, publisher=self.bus, health=self.health, accepts=(IN_TYPE,))
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fn")

    def _model_check(self) -> None:
        if not self.healthy:
            raise ConnectionError("model server gone")

    async def record(self, event: CloudEvent) -> Sequence[CloudEvent]:
        self.published.append(event)
        return []


@pytest.fixture
async def env(request: pytest.FixtureRequest) -> AsyncIterator[Env]:
    setup_tracing("aima-test")
    env = Env(f"fn-{request.node.name[:40]}")
    await env.bus.subscribe(Subscription("observer", (OUT_TYPE,), env.record))
    yield env
    await env.client.aclose()
    await env.bus.close()


def request_event(**data: object) -> CloudEvent:
    return CloudEvent(
        source="/aima/test",
        type=IN_TYPE,
        data=dict(data),
        traceparent=TRACEPARENT,
        caseid="c1",
        tenantid="t1",
    )


def binary_request(event: CloudEvent) -> tuple[dict[str, str], bytes]:
    """Written by hand the way Knative's broker delivers binary mode (mixed-case names)."""
    headers = {
        "Ce-Specversion": "1.0",
        "Ce-Id": event.id,
        "Ce-Source": event.source,
        "Ce-Type": event.type,
        "Ce-Time": event.time.isoformat(),
        "Ce-Traceparent": event.traceparent or "",
        "Ce-Caseid": event.caseid or "",
        "Ce-Tenantid": event.tenantid or "",
        "Ce-Knativearrivaltime": "2025-01-01T00%3A00%3A00Z",
        "Content-Type": "application/json",
    }
    return headers, json.dumps(event.data).encode()


@pytest.mark.parametrize("mode", ["binary", "structured"])
async def test_an_event_reaches_the_core_and_its_results_are_published_in_the_same_trace(
    env: Env, mode: str
) -> None:
    event = request_event(media_id="m1")
    headers, body = binary_request(event) if mode == "binary" else to_structured(event)

    response = await env.client.post("/", headers=headers, content=body)

    assert response.status_code == 202, response.text
    assert response.content == b""
    expected_id = derived_event_id(event.id, "done")
    assert response.headers[EMITTED_IDS] == expected_id
    [received] = env.core.seen
    assert (received.id, received.data, received.caseid) == (event.id, {"media_id": "m1"}, "c1")
    await env.bus.drain(timeout=5)
    [published] = env.published
    assert published.id == expected_id
    assert published.data == {"request": event.id}
    _, trace_id, span_id, _ = (published.traceparent or "").split("-")
    assert trace_id == TRACE_ID  # the trace continues ...
    assert span_id != PARENT_SPAN  # ... from the handler's own span


async def test_a_redelivered_event_does_not_publish_twice(env: Env) -> None:
    headers, body = binary_request(request_event())
    for _ in range(2):
        assert (await env.client.post("/", headers=headers, content=body)).status_code == 202
    await env.bus.drain(timeout=5)
    assert len(env.core.seen) == 2
    assert len(env.published) == 1


async def test_an_unaccepted_type_is_a_problem(env: Env) -> None:
    event = request_event().model_copy(update={"type": "io.aima.other.v1"})
    response = await env.client.post("/", headers=binary_request(event)[0], content=b"{}")
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 400
    assert problem["type"] == "urn:aima:problem:unsupported-event-type"
    assert problem["title"] == "Unsupported event type"
    assert "io.aima.other.v1" in problem["detail"]
    assert env.core.seen == []


async def test_an_unparseable_request_is_a_problem(env: Env) -> None:
    response = await env.client.post("/", headers={"content-type": "application/json"}, content=b'{"a": 1}')
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "urn:aima:problem:invalid-cloudevent"
    assert "no ce-* headers" in problem["detail"]
    assert set(problem) == {"type", "title", "status", "detail"}


async def test_a_failing_core_answers_500_logs_the_trace_and_publishes_nothing(
    env: Env, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    setup_logging(service=env.name)
    event = request_event(fail=True)
    response = await env.client.post("/", headers=binary_request(event)[0], content=b'{"fail": true}')

    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "urn:aima:problem:handler-failed"
    assert event.id in problem["detail"]
    await env.bus.drain(timeout=5)
    assert env.published == []
    [line] = [json.loads(x) for x in capsys.readouterr().err.splitlines() if '"handler failed"' in x]
    assert line["trace_id"] == TRACE_ID
    assert line["event_id"] == event.id
    assert "RuntimeError: model crashed" in line["exception"]
    assert (
        REGISTRY.get_sample_value(
            "aima_events_handled_total", {"consumer": env.name, "type": IN_TYPE, "outcome": "retry"}
        )
        == 1
    )


async def test_an_unreachable_bus_answers_503(env: Env) -> None:
    await env.bus.close()
    response = await env.client.post("/", headers=binary_request(request_event())[0], content=b"{}")
    assert response.status_code == 503
    assert response.json()["type"] == "urn:aima:problem:publish-failed"


async def test_liveness_and_readiness(env: Env) -> None:
    alive = await env.client.get("/healthz")
    assert (alive.status_code, alive.json()) == (200, {"status": "alive"})

    ready = await env.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ok"

    env.healthy = False
    ready = await env.client.get("/readyz")
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "degraded"
    assert body["components"]["model"] == {
        "status": "down",
        "critical": True,
        "latency_ms": body["components"]["model"]["latency_ms"],
        "error": "ConnectionError: model server gone",
    }
    assert body["components"]["bus"]["status"] == "up"


async def test_metrics_count_requests_by_route_and_status(env: Env) -> None:
    headers, body = binary_request(request_event())
    await env.client.post("/", headers=headers, content=body)
    await env.client.get("/healthz")
    await env.client.get("/nowhere")

    response = await env.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {
        (s.labels["method"], s.labels["route"], s.labels["status"]): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
        if s.name == "aima_http_requests_total" and s.labels.get("service") == env.name
    }
    assert samples == {("POST", "/", "202"): 1, ("GET", "/healthz", "200"): 1, ("GET", "unmatched", "404"): 1}
    assert "aima_events_handled_total" in response.text


async def test_request_ids_are_kept_when_well_formed_and_made_otherwise(env: Env) -> None:
    kept = await env.client.get("/healthz", headers={REQUEST_ID: "req-42.a:b"})
    assert kept.headers[REQUEST_ID] == "req-42.a:b"
    replaced = await env.client.get("/healthz", headers={REQUEST_ID: "not ok <script>"})
    assert replaced.headers[REQUEST_ID] != "not ok <script>"
    assert len(replaced.headers[REQUEST_ID]) == 32
    assert len((await env.client.get("/healthz")).headers[REQUEST_ID]) == 32


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


# --- the bus adapter ------------------------------------------------------------------------


async def test_the_worker_consumes_counts_retries_and_dead_letters() -> None:
    setup_tracing("aima-test")
    core, bus = Core(), MemoryBus()
    policy = RetryPolicy(max_deliver=2, backoff=(0.0,))
    worker = asyncio.create_task(run_worker("test-worker", core, (IN_TYPE,), bus, policy))
    await asyncio.sleep(0)  # let it subscribe
    ok, failing = request_event(n=1), request_event(fail=True)
    await bus.publish(ok)
    await bus.publish(failing)
    await bus.drain(timeout=5)

    def handled(outcome: str) -> float | None:
        labels = {"consumer": "test-worker", "type": IN_TYPE, "outcome": outcome}
        return REGISTRY.get_sample_value("aima_events_handled_total", labels)

    assert [e.id for e in core.seen] == [ok.id, failing.id, failing.id]
    assert (handled("ok"), handled("retry"), handled("dead")) == (1, 1, 1)
    assert REGISTRY.get_sample_value("aima_handler_seconds_count", {"consumer": "test-worker"}) == 3
    [letter] = await bus.dead_letters("test-worker")
    assert letter.event.id == failing.id

    worker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await worker
    with pytest.raises(BusError, match="closed"):
        await bus.health()
