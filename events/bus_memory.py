"""The embedded profile's event bus: in-process asyncio queues with the port's full semantics.

Each subscription owns a queue and one worker task, so it gets every matching event published
while it exists (there is no history before ``subscribe``, and nothing survives the process). A
failing handler is retried after the policy's backoff without blocking the queue; after the last
attempt the event becomes a `DeadLetter` kept in memory. Event ids seen within the dedupe window
are suppressed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from itertools import islice

from aima.telemetry.tracing import inject, span_from
from events.bus import BusError, DeadLetter, EventBus, RetryPolicy, Subscription, Unretryable
from events.envelope import CloudEvent

log = logging.getLogger(__name__)


@dataclass
class _Consumer:
    subscription: Subscription
    queue: asyncio.Queue[tuple[CloudEvent, int]] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None


class MemoryBus(EventBus):
    """In-process `EventBus` for the embedded profile and tests."""

    def __init__(self, *, dedupe_window: float = 120.0) -> None:
        self._window = dedupe_window
        self._seen: dict[str, float] = {}  # event id -> publish time, oldest first
        self._consumers: list[_Consumer] = []
        self._dead: list[DeadLetter] = []
        self._retries: set[asyncio.TimerHandle] = set()
        self._outstanding = 0  # deliveries queued, running or waiting for a retry
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False

    async def start(self) -> None:
        """Nothing to connect; kept for the port."""
        self._check_open()

    async def publish(self, event: CloudEvent) -> bool:
        """Queue ``event`` for every matching subscription; False if its id was seen recently."""
        self._check_open()
        now = time.monotonic()
        self._forget_before(now - self._window)
        if event.id in self._seen:
            return False
        self._seen[event.id] = now
        if event.traceparent is None:
            event = event.with_extensions(**inject())
        for consumer in self._consumers:
            if consumer.subscription.matches(event.type):
                self._enqueue(consumer, event, 1)
        return True

    async def subscribe(self, subscription: Subscription) -> None:
        """Start a worker for ``subscription``; it receives events published from now on."""
        self._check_open()
        consumer = _Consumer(subscription)
        consumer.task = asyncio.create_task(self._work(consumer), name=f"bus:{subscription.consumer}")
        self._consumers.append(consumer)

    async def broadcast(self, subscription: Subscription) -> None:
        """In one process every subscription already sees every event: `subscribe`, without retries."""
        await self.subscribe(replace(subscription, policy=RetryPolicy(max_deliver=1, backoff=())))

    async def dead_letters(self, consumer: str | None = None, limit: int = 100) -> list[DeadLetter]:
        """Dead letters, oldest first, optionally for one consumer."""
        found = (d for d in self._dead if consumer is None or d.consumer == consumer)
        return list(islice(found, limit))

    async def health(self) -> None:
        """Raise `BusError` once the bus is closed."""
        self._check_open()

    async def drain(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109 - the port callers pass seconds
        """Wait until every queue is empty, no handler runs and no retry is pending.

        Raises `TimeoutError` if that does not happen within ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            await self._idle.wait()

    async def close(self) -> None:
        """Stop the workers and pending retries; undelivered events are lost with the process."""
        self._closed = True
        for handle in self._retries:
            handle.cancel()
        self._retries.clear()
        tasks = [c.task for c in self._consumers if c.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._consumers.clear()
        self._outstanding = 0
        self._idle.set()

    def _check_open(self) -> None:
        if self._closed:
            raise BusError("the in-memory bus is closed")

    def _forget_before(self, cutoff: float) -> None:
        seen = self._seen
        while seen:
            oldest = next(iter(seen))
            if seen[oldest] >= cutoff:
                return
            del seen[oldest]

    def _enqueue(self, consumer: _Consumer, event: CloudEvent, attempt: int) -> None:
        self._outstanding += 1
        self._idle.clear()
        consumer.queue.put_nowait((event, attempt))

    def _settle(self) -> None:
        self._outstanding -= 1
        if self._outstanding == 0:
            self._idle.set()

    async def _work(self, consumer: _Consumer) -> None:
        while True:
            event, attempt = await consumer.queue.get()
            try:
                await self._deliver(consumer, event, attempt)
            finally:
                self._settle()

    async def _deliver(self, consumer: _Consumer, event: CloudEvent, attempt: int) -> None:
        sub = consumer.subscription
        try:
            with span_from(event.extensions, f"handle {event.type}", consumer=sub.consumer, attempt=attempt):
                emitted: Sequence[CloudEvent] = await sub.handler(event)
                await self.publish_many(emitted)
        except Exception as exc:
            if attempt < sub.policy.max_deliver and not isinstance(exc, Unretryable):
                self._retry_later(consumer, event, attempt, sub.policy.delay(attempt))
                return
            error = f"{type(exc).__name__}: {exc}"
            log.warning("dead letter: consumer=%s event=%s error=%s", sub.consumer, event.id, error)
            self._dead.append(DeadLetter(consumer=sub.consumer, event=event, attempts=attempt, error=error))

    def _retry_later(self, consumer: _Consumer, event: CloudEvent, attempt: int, delay: float) -> None:
        # counted as outstanding until the retry is queued, so drain() waits for it
        self._outstanding += 1

        def requeue() -> None:
            self._retries.discard(handle)
            self._enqueue(consumer, event, attempt + 1)
            self._settle()

        handle = asyncio.get_running_loop().call_later(delay, requeue)
        self._retries.add(handle)
