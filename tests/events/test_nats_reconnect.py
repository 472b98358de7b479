"""Kill the NATS connections mid-stream: every event's effect still lands exactly once.

A TCP proxy sits between both buses (publisher and consumer) and nats-server. Twice while events
flow it aborts every proxied socket and refuses new ones for a moment; nats-py reconnects through
it. The handler's effect is an idempotent INSERT into PostgreSQL, so redeliveries are harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence

import nats
import psycopg
import pytest

from events.bus import RetryPolicy, Subscription
from events.bus_nats import NatsBus
from events.envelope import CloudEvent

N = 2000
CHUNK = 100
OUTAGE = 0.6
UPLOADED = "io.aima.media.uploaded.v1"


class KillerProxy:
    """A loopback TCP proxy whose connections can be cut abruptly."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.writers: set[asyncio.StreamWriter] = set()
        self.accepted = 0
        self.refusing = False
        self.server: asyncio.Server | None = None
        self.url = ""

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"nats://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        self.accepted += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self.writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
        self.writers.discard(writer)

    async def cut(self, outage: float) -> None:
        """Abort every proxied socket and refuse new connections for ``outage`` seconds."""
        self.refusing = True
        for writer in list(self.writers):
            writer.transport.abort()
        self.writers.clear()
        await asyncio.sleep(outage)
        self.refusing = False

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):
            writer.transport.abort()


@pytest.fixture
async def proxy(nats_url: str) -> AsyncIterator[KillerProxy]:
    port = int(nats_url.rsplit(":", 1)[1])
    killer = KillerProxy(port)
    await killer.start()
    yield killer
    await killer.stop()


@pytest.fixture
async def pg(pg_database: str) -> AsyncIterator[list[psycopg.AsyncConnection[tuple[object, ...]]]]:
    """A few autocommit connections to a fresh effect table ``effects``."""
    dsn = pg_database.replace("postgresql+psycopg://", "postgresql://")
    conns = [await psycopg.AsyncConnection.connect(dsn, autocommit=True) for _ in range(4)]
    await conns[0].execute("DROP TABLE IF EXISTS effects")
    await conns[0].execute("CREATE TABLE effects (event_id text PRIMARY KEY, n integer NOT NULL)")
    yield conns
    for conn in conns:
        await conn.close()


async def test_effects_exactly_once_across_killed_connections(
    proxy: KillerProxy, pg: list[psycopg.AsyncConnection[tuple[object, ...]]], nats_url: str
) -> None:
    tag = uuid.uuid4().hex
    stream = f"T_{tag}"
    consumer_bus = NatsBus(proxy.url, stream=stream, subject_root=f"t{tag}", name="consumer")
    publisher_bus = NatsBus(proxy.url, stream=stream, subject_root=f"t{tag}", name="publisher")
    pool: asyncio.Queue[psycopg.AsyncConnection[tuple[object, ...]]] = asyncio.Queue()
    for conn in pg:
        pool.put_nowait(conn)
    invocations: Counter[str] = Counter()

    async def insert_effect(event: CloudEvent) -> Sequence[CloudEvent]:
        invocations[event.id] += 1
        conn = await pool.get()
        try:
            await conn.execute(
                "INSERT INTO effects (event_id, n) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (event.id, (event.data or {})["n"]),
            )
        finally:
            pool.put_nowait(conn)
        return []

    async def effect_count() -> int:
        cursor = await pg[0].execute("SELECT count(*) FROM effects")
        row = await cursor.fetchone()
        assert row is not None
        return int(str(row[0]))

    # max_deliver is generous: deliveries lost to the cuts count as attempts too
    policy = RetryPolicy(max_deliver=20, backoff=(0.05,), ack_wait=2.0)
    try:
        await consumer_bus.start()
        await publisher_bus.start()
        await consumer_bus.subscribe(Subscription("effects", (UPLOADED,), insert_effect, policy))
        events = [CloudEvent(source="/tests", type=UPLOADED, data={"n": i}) for i in range(N)]
        cuts: list[asyncio.Task[None]] = []
        during_cut = 0
        for start in range(0, N, CHUNK):
            if start in (N // 3 // CHUNK * CHUNK, 2 * N // 3 // CHUNK * CHUNK):
                print(f"cutting all connections after {start} published, {await effect_count()} effects")
                cuts.append(asyncio.create_task(proxy.cut(OUTAGE)))
                await asyncio.sleep(0)
                during_cut += CHUNK  # the next chunk goes out while the sockets are dead
            assert await publisher_bus.publish_many(events[start : start + CHUNK]) == CHUNK
            await asyncio.sleep(0.02)
        await asyncio.gather(*cuts)

        for _ in range(600):
            if await effect_count() >= N:
                break
            await asyncio.sleep(0.05)
        # late redeliveries may still arrive; they must not add rows
        await asyncio.sleep(policy.ack_wait + 0.5)
        dead = await consumer_bus.dead_letters()
    finally:
        await publisher_bus.close()
        await consumer_bus.close()
        nc = await nats.connect(nats_url)
        for name in (stream, f"{stream}_DLQ"):
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await nc.jetstream().delete_stream(name)
        await nc.close()

    assert dead == []
    cursor = await pg[0].execute("SELECT count(*), count(DISTINCT event_id), count(DISTINCT n) FROM effects")
    assert await cursor.fetchone() == (N, N, N)
    cursor = await pg[0].execute("SELECT event_id FROM effects")
    assert {row[0] for row in await cursor.fetchall()} == {e.id for e in events}
    total = sum(invocations.values())
    redelivered = sum(1 for count in invocations.values() if count > 1)
    print(
        f"{N} events ({during_cut} published during cuts), {total} handler invocations, "
        f"{redelivered} events redelivered, proxy accepted {proxy.accepted} connections"
    )
    assert set(invocations) == {e.id for e in events}
    assert total >= N
    assert proxy.accepted >= 6  # both buses connected, then reconnected after each of the two cuts
