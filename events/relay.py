"""The outbox relay: publishes what the kernel wrote to the outbox, after it committed.

`OutboxRelay.start` registers with the `aima.storage.outbox.Outbox` of this process, so events
committed here are published right after their commit, and runs a sweep every ``interval`` seconds
that publishes rows left pending for more than ``grace`` seconds (a crash between commit and
publish, a bus outage, or another process such as the CLI that has no bus). A failed publish leaves
the rows pending for the next sweep; one warning per outage, not per attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from aima.storage.outbox import PAGE, Outbox
from events.bus import EventBus
from events.envelope import CloudEvent

log = logging.getLogger(__name__)


class OutboxRelay:
    """Publishes outbox rows on ``bus`` (see module docstring)."""

    def __init__(self, outbox: Outbox, bus: EventBus, *, interval: float = 1.0, grace: float = 2.0) -> None:
        self._outbox = outbox
        self._bus = bus
        self._interval = interval
        self._grace = grace
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._fresh: list[CloudEvent] = []
        self._failing = False

    async def start(self) -> None:
        """Publish this process's commits as they happen, and sweep in the background."""
        if self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._outbox.on_commit(self._committed)
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        """Stop sweeping (what is pending stays for the next relay), after a last flush."""
        task, self._task = self._task, None
        if task is None:
            return
        self._outbox.off_commit(self._committed)
        if task.get_loop() is not asyncio.get_running_loop():  # started on a loop that is gone
            with contextlib.suppress(RuntimeError):
                task.get_loop().call_soon_threadsafe(task.cancel)
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(Exception):
            await self.flush()

    async def publish(self, events: Sequence[CloudEvent]) -> None:
        """Publish committed ``events`` now and mark them; raises if the bus refuses them."""
        if not events:
            return
        await self._bus.publish_many(list(events))
        await asyncio.to_thread(self._outbox.mark_published, [e.id for e in events])

    async def flush(self, *, older_than: float = 0.0) -> int:
        """Publish every pending row (older than ``older_than`` s); returns how many were published."""
        total = 0
        while True:
            pending = await asyncio.to_thread(self._outbox.pending, older_than=older_than)
            events = {p.event.id: p.event for p in pending}
            fresh, self._fresh = self._fresh, []
            for event in fresh:
                events.setdefault(event.id, event)
            if not events:
                return total
            await self.publish(list(events.values()))
            total += len(events)
            if len(pending) < PAGE:
                return total

    def _committed(self, events: Sequence[CloudEvent]) -> None:
        """From any thread: events just committed in this process."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        def wake() -> None:
            self._fresh.extend(events)
            if self._wake is not None:
                self._wake.set()

        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(wake)

    async def _run(self) -> None:
        wake = self._wake
        assert wake is not None
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await wake.wait()
            wake.clear()
            try:
                await self.flush(older_than=self._grace)  # this process's fresh commits, and leftovers
            except Exception as exc:
                if not self._failing:
                    log.warning("outbox relay: publishing failed; pending events stay for later: %r", exc)
                self._failing = True
                continue
            if self._failing:
                log.warning("outbox relay: publishing again")
            self._failing = False
