"""Event-bus throughput: raw nats-py JetStream vs NatsBus vs MemoryBus, end to end.

Run ``python benchmarks/bus.py`` with nats-server (JetStream) on 127.0.0.1:4222. Each figure is
events per second from the first publish to the last acknowledgement, publishing and consuming
concurrently. The last line is one JSON object with the checks; the exit code is 0 either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import nats
import nats.js.errors

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from events.bus import RetryPolicy, Subscription
from events.bus_memory import MemoryBus
from events.bus_nats import NatsBus
from events.envelope import CloudEvent

NATS_URL = "nats://127.0.0.1:4222"
N = 20_000
ROUNDS = 3
PAYLOAD = b"x" * 200
EVENT_TYPE = "io.aima.bench.ping.v1"


def cloud_events() -> list[CloudEvent]:
    return [CloudEvent(source="/bench", type=EVENT_TYPE, data={"i": i, "pad": "x" * 120}) for i in range(N)]


async def delete_streams(*names: str) -> None:
    nc = await nats.connect(NATS_URL)
    for name in names:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await nc.jetstream().delete_stream(name)
    await nc.close()


async def raw_baseline() -> float:
    """publish_async all messages while a pull consumer fetches batches and acks each."""
    tag = uuid.uuid4().hex
    stream, subject = f"BENCH_RAW_{tag}", f"bench.raw.{tag}"
    nc = await nats.connect(NATS_URL)
    js = nc.jetstream()
    await js.add_stream(name=stream, subjects=[subject])
    psub = await js.pull_subscribe(subject, durable="raw", stream=stream)
    try:

        async def produce() -> None:
            futures = [await js.publish_async(subject, PAYLOAD) for _ in range(N)]
            await asyncio.gather(*futures)

        async def consume() -> None:
            acked = 0
            while acked < N:
                try:
                    msgs = await psub.fetch(256, timeout=1)
                except TimeoutError:
                    continue
                for msg in msgs:
                    await msg.ack()
                acked += len(msgs)
            await nc.flush()

        started = time.perf_counter()
        await asyncio.gather(produce(), consume())
        return N / (time.perf_counter() - started)
    finally:
        await nc.close()
        await delete_streams(stream)


async def nats_bus_path() -> float:
    """NatsBus.publish_many of CloudEvents while a Subscription's handler counts them."""
    tag = uuid.uuid4().hex
    stream = f"BENCH_BUS_{tag}"
    bus = NatsBus(NATS_URL, stream=stream, subject_root=f"bench{tag}", name="bench")
    await bus.start()
    events = cloud_events()
    done = asyncio.Event()
    count = 0

    async def handler(event: CloudEvent) -> Sequence[CloudEvent]:
        nonlocal count
        count += 1
        if count == N:
            done.set()
        return []

    nc = await nats.connect(NATS_URL)
    try:
        await bus.subscribe(Subscription("bench", (EVENT_TYPE,), handler, RetryPolicy()))
        started = time.perf_counter()
        published = await bus.publish_many(events)
        await done.wait()
        for _ in range(2000):  # the last acks are on their way to the server
            info = await nc.jetstream().consumer_info(stream, "bench")
            if info.num_ack_pending == 0:
                break
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - started
        if published != N or info.num_ack_pending or info.num_pending:
            raise RuntimeError(f"published {published} of {N}; consumer state {info}")
        return N / elapsed
    finally:
        await nc.close()
        await bus.close()
        await delete_streams(stream, f"{stream}_DLQ")


async def memory_bus_path() -> float:
    """MemoryBus.publish_many then drain, with a counting handler."""
    bus = MemoryBus()
    count = 0

    async def handler(event: CloudEvent) -> Sequence[CloudEvent]:
        nonlocal count
        count += 1
        return []

    events = cloud_events()
    await bus.subscribe(Subscription("bench", (EVENT_TYPE,), handler, RetryPolicy()))
    started = time.perf_counter()
    await bus.publish_many(events)
    await bus.drain()
    elapsed = time.perf_counter() - started
    await bus.close()
    assert count == N
    return N / elapsed


def check(name: str, value: float, target: float) -> dict[str, object]:
    return {"name": name, "value": round(value, 3), "op": ">=", "target": target, "ok": value >= target}


async def main() -> None:
    rounds: list[tuple[float, float, float]] = []
    for _ in range(ROUNDS):  # interleaved, so a noisy neighbour hits all three alike
        rounds.append((await raw_baseline(), await nats_bus_path(), await memory_bus_path()))
    raw, ours, memory = (statistics.median(column) for column in zip(*rounds, strict=True))
    ratio = ours / raw
    print(f"{N} events, ~200-byte payloads, publish and consume concurrently, first publish to last ack")
    print(f"median of {ROUNDS} interleaved rounds; per round (raw, NatsBus, MemoryBus):")
    for row in rounds:
        print("  " + ", ".join(f"{value:,.0f}" for value in row))
    print(f"  raw nats-py JetStream : {raw:10,.0f} events/s")
    print(f"  NatsBus               : {ours:10,.0f} events/s  ({ratio:.0%} of raw)")
    print(f"  MemoryBus             : {memory:10,.0f} events/s")
    checks = [
        check("nats_vs_raw_ratio", ratio, 0.5),
        check("nats_events_per_s", ours, 2000),
        check("memory_events_per_s", memory, 2000),
    ]
    print(json.dumps({"benchmark": "bus", "checks": checks}))


if __name__ == "__main__":
    asyncio.run(main())
