"""One contract, two adapters: MemoryBus and NatsBus (real JetStream) keep the same semantics."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

import nats
import pytest

from aima.settings import Settings, load_settings
from aima.telemetry.tracing import current_ids, setup_tracing, tracer
from events.bus import DeadLetter, EventBus, RetryPolicy, Subscription
from events.bus_memory import MemoryBus
from events.bus_nats import MALFORMED_TYPE, NatsBus
from events.envelope import CloudEvent, derived_event_id
from events.factory import bus_from_settings, retry_policy_from_settings

FAST = RetryPolicy(max_deliver=3, backoff=(0.05, 0.1), ack_wait=2.0)
UPLOADED = "io.aima.media.uploaded.v1"
PROBED = "io.aima.media.probed.v1"


@dataclass
class Harness:
    """A started bus plus a way to wait until nothing is queued, running or awaiting redelivery."""

    bus: EventBus
    settle: Callable[[], Awaitable[None]]


async def delete_streams(nats_url: str, *names: str) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    for name in names:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(name)
    await nc.close()


async def _nats_settled(nats_url: str, stream: str) -> None:
    """Poll JetStream until every consumer of ``stream`` has nothing pending or unacknowledged."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    try:
        quiet = 0
        while quiet < 3:
            infos = await js.consumers_info(stream)
            idle = all(i.num_pending == 0 and i.num_ack_pending == 0 for i in infos)
            quiet = quiet + 1 if idle else 0
            await asyncio.sleep(0.05)
    finally:
        await nc.close()


@pytest.fixture(params=["memory", "nats"])
async def harness(request: pytest.FixtureRequest, nats_url: str) -> AsyncIterator[Harness]:
    if request.param == "memory":
        memory = MemoryBus(dedupe_window=30)
        await memory.start()
        yield Harness(memory, memory.drain)
        await memory.close()
        return
    tag = uuid.uuid4().hex
    stream = f"T_{tag}"
    bus = NatsBus(nats_url, stream=stream, dedupe_window=30, subject_root=f"t{tag}")
    await bus.start()

    async def settle() -> None:
        await asyncio.wait_for(_nats_settled(nats_url, stream), 20)

    yield Harness(bus, settle)
    await bus.close()
    await delete_streams(nats_url, stream, f"{stream}_DLQ")


def event(event_type: str = UPLOADED, **data: object) -> CloudEvent:
    return CloudEvent(source="/tests", type=event_type, data=dict(data))


async def eventually(check: Callable[[], bool], seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached in time")


class Recorder:
    """A handler that records what it saw and fails for chosen event ids a number of times."""

    def __init__(self, fail: dict[str, int] | None = None, emit: str | None = None) -> None:
        self.calls: Counter[str] = Counter()
        self.times: dict[str, list[float]] = {}
        self.fail = fail or {}
        self.emit = emit
        self.trace_ids: list[str | None] = []
        self.seen: list[CloudEvent] = []

    async def __call__(self, ev: CloudEvent) -> Sequence[CloudEvent]:
        self.calls[ev.id] += 1
        self.times.setdefault(ev.id, []).append(time.monotonic())
        self.seen.append(ev)
        self.trace_ids.append(current_ids()[0])
        if self.calls[ev.id] <= self.fail.get(ev.id, 0):
            raise RuntimeError(f"boom {ev.id} #{self.calls[ev.id]}")
        if self.emit is None:
            return []
        return [CloudEvent(id=derived_event_id(ev.id, "probe"), source="/tests", type=self.emit, data={})]


async def test_event_is_handled_once(harness: Harness) -> None:
    seen = Recorder()
    await harness.bus.subscribe(Subscription("once", (UPLOADED,), seen, FAST))
    other = Recorder()
    await harness.bus.subscribe(Subscription("other", (PROBED,), other, FAST))
    ev = event(n=1)
    assert await harness.bus.publish(ev) is True
    await eventually(lambda: seen.calls[ev.id] == 1)
    await harness.settle()
    assert seen.calls == Counter({ev.id: 1})
    assert seen.seen[0].data == {"n": 1}
    assert other.calls == Counter()
    await harness.bus.health()


async def test_emitted_events_reach_downstream_once(harness: Harness) -> None:
    upstream = Recorder(emit=PROBED)
    downstream = Recorder()
    await harness.bus.subscribe(Subscription("probe", (UPLOADED,), upstream, FAST))
    await harness.bus.subscribe(Subscription("after-probe", ("io.aima.media.p*",), downstream, FAST))
    ev = event()
    await harness.bus.publish(ev)
    child = derived_event_id(ev.id, "probe")
    await eventually(lambda: downstream.calls[child] == 1)
    await harness.settle()
    assert upstream.calls == Counter({ev.id: 1})
    assert downstream.calls == Counter({child: 1})
    assert downstream.seen[0].type == PROBED


async def test_failing_handler_is_retried_with_backoff(harness: Harness) -> None:
    ev = event()
    flaky = Recorder(fail={ev.id: 2})
    await harness.bus.subscribe(Subscription("flaky", (UPLOADED,), flaky, FAST))
    await harness.bus.publish(ev)
    await eventually(lambda: flaky.calls[ev.id] == 3)
    await harness.settle()
    assert flaky.calls[ev.id] == 3
    first, second, third = flaky.times[ev.id]
    assert second - first >= 0.05 * 0.9
    assert third - second >= 0.1 * 0.9
    assert await harness.bus.dead_letters("flaky") == []


async def test_always_failing_handler_ends_in_dead_letters(harness: Harness) -> None:
    poison = event(poison=True)
    good = [event(n=i) for i in range(5)]
    handler = Recorder(fail={poison.id: 1000})
    await harness.bus.subscribe(Subscription("fragile", (UPLOADED,), handler, FAST))
    await harness.bus.publish(poison)
    await harness.bus.publish_many(good)
    await eventually(lambda: all(handler.calls[g.id] == 1 for g in good))
    await harness.settle()

    letters = await harness.bus.dead_letters("fragile")
    assert len(letters) == 1
    letter = letters[0]
    assert letter.consumer == "fragile"
    assert letter.event.id == poison.id
    assert letter.event.data == {"poison": True}
    assert letter.attempts == FAST.max_deliver == handler.calls[poison.id]
    assert f"boom {poison.id} #3" in letter.error
    assert await harness.bus.dead_letters("someone-else") == []
    assert [d.event.id for d in await harness.bus.dead_letters()] == [poison.id]

    later = event(n=99)
    await harness.bus.publish(later)
    await eventually(lambda: handler.calls[later.id] == 1)


async def test_duplicate_publish_is_suppressed(harness: Harness) -> None:
    seen = Recorder()
    await harness.bus.subscribe(Subscription("dedupe", (UPLOADED,), seen, FAST))
    ev, other = event(), event()
    assert await harness.bus.publish(ev) is True
    assert await harness.bus.publish(ev) is False
    assert await harness.bus.publish_many([ev, other, other]) == 1
    await eventually(lambda: seen.calls[other.id] == 1)
    await harness.settle()
    assert seen.calls == Counter({ev.id: 1, other.id: 1})


async def test_trace_context_reaches_the_handler(harness: Harness) -> None:
    setup_tracing("aima-tests")
    seen = Recorder()
    await harness.bus.subscribe(Subscription("traced", (UPLOADED,), seen, FAST))
    with tracer().start_as_current_span("producer") as span:
        producer_trace = format(span.get_span_context().trace_id, "032x")
        ev = event()
        await harness.bus.publish(ev)
    await eventually(lambda: seen.calls[ev.id] == 1)
    assert seen.trace_ids == [producer_trace]
    assert seen.seen[0].traceparent is not None
    assert producer_trace in seen.seen[0].traceparent


# --- NATS only: what cannot happen in-process --------------------------------------------


@dataclass
class NatsCase:
    bus: NatsBus
    stream: str
    events_subject: str


@pytest.fixture
async def nats_case(nats_url: str) -> AsyncIterator[NatsCase]:
    tag = uuid.uuid4().hex
    bus = NatsBus(nats_url, stream=f"T_{tag}", subject_root=f"t{tag}")
    await bus.start()
    yield NatsCase(bus, f"T_{tag}", f"t{tag}.events.{UPLOADED}")
    await bus.close()
    await delete_streams(nats_url, f"T_{tag}", f"T_{tag}_DLQ")


async def wait_dead_letter(bus: EventBus, consumer: str) -> DeadLetter:
    for _ in range(200):
        if letters := await bus.dead_letters(consumer):
            (letter,) = letters
            return letter
        await asyncio.sleep(0.05)
    raise AssertionError(f"no dead letter for {consumer}")


async def test_nats_malformed_message_goes_to_dead_letters(nats_case: NatsCase, nats_url: str) -> None:
    seen = Recorder()
    await nats_case.bus.subscribe(Subscription("strict", (UPLOADED,), seen, FAST))
    nc = await nats.connect(nats_url)
    await nc.jetstream().publish(nats_case.events_subject, b"not a cloud event")
    await nc.close()

    letter = await wait_dead_letter(nats_case.bus, "strict")
    assert letter.event.type == MALFORMED_TYPE
    assert letter.event.data == {"raw": "not a cloud event"}
    assert letter.event.id == f"{nats_case.stream}:1"
    assert letter.attempts == 1
    assert "malformed event" in letter.error
    assert seen.calls == Counter()


async def test_nats_delivery_never_acknowledged_is_dead_lettered(nats_case: NatsCase, nats_url: str) -> None:
    """Deliveries lost to crashes count: past max_deliver the event goes to dead letters, unhandled."""
    policy = RetryPolicy(max_deliver=2, backoff=(0.05,), ack_wait=0.3)
    bus = nats_case.bus
    await bus.subscribe(Subscription("crashy", (UPLOADED,), Recorder(), policy))
    await bus.close()  # the durable consumer stays; nobody consumes
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    ev = event()
    await js.publish(nats_case.events_subject, ev.to_json())
    crashed = await js.pull_subscribe_bind(durable="crashy", stream=nats_case.stream)
    for _ in range(policy.max_deliver):  # consumers that died before acknowledging
        (msg,) = await crashed.fetch(1, timeout=2)
        assert CloudEvent.from_json(msg.data).id == ev.id
        await asyncio.sleep(policy.ack_wait + 0.1)
    await nc.close()

    survivor = Recorder()
    await bus.start()
    await bus.subscribe(Subscription("crashy", (UPLOADED,), survivor, policy))
    letter = await wait_dead_letter(bus, "crashy")
    assert letter.event.id == ev.id
    assert letter.attempts == policy.max_deliver
    assert "not acknowledged after 2 deliveries" in letter.error
    assert survivor.calls == Counter()


# --- choosing the adapter ------------------------------------------------------------------


def test_settings_choose_the_adapter_and_the_retry_policy(embedded_settings: Settings) -> None:
    assert isinstance(bus_from_settings(embedded_settings), MemoryBus)
    cluster = embedded_settings.model_copy(update={"bus": "nats"})
    assert isinstance(bus_from_settings(cluster), NatsBus)
    tuned = load_settings(bus_max_deliver=7, bus_backoff=[1.0, 3.0], bus_ack_wait=12.5)
    assert retry_policy_from_settings(tuned) == RetryPolicy(max_deliver=7, backoff=(1.0, 3.0), ack_wait=12.5)
