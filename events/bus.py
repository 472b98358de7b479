"""The event-bus port: one interface, two adapters with the same delivery semantics.

Semantics both adapters keep (and the shared contract tests check):

* **At-least-once.** A handler's event is acknowledged only after the handler returned and the
  events it emitted were published. A crash or lost connection before that means redelivery.
* **Bounded redelivery with backoff.** A handler that raises is retried after
  ``backoff[attempt-1]`` seconds (the last value repeats) up to ``max_deliver`` attempts.
* **Dead letters.** After the last attempt the event is published to the dead-letter stream with
  the consumer name, attempt count and error, and acknowledged; nothing is silently dropped.
* **Duplicate suppression by event id** at publish time within ``dedupe_window`` seconds, so a
  handler that re-emits derived events (`events.envelope.derived_event_id`) after a redelivery
  does not fan out twice.

Handlers are the functions' plain cores: ``async handle(event) -> list[CloudEvent]``.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aima.storage import outages
from events.envelope import CloudEvent

Handler = Callable[[CloudEvent], Awaitable[Sequence[CloudEvent]]]

DEAD_LETTER_TYPE = "io.aima.deadletter.v1"


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a failing handler is retried."""

    max_deliver: int = 5
    backoff: tuple[float, ...] = (0.5, 2.0, 10.0, 30.0)
    ack_wait: float = 30.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before delivery number ``attempt + 1`` (``attempt`` starts at 1)."""
        if not self.backoff:
            return 0.0
        return self.backoff[min(attempt, len(self.backoff)) - 1]


@dataclass(frozen=True)
class DeadLetter:
    """An event a consumer gave up on, with why."""

    consumer: str
    event: CloudEvent
    attempts: int
    error: str
    failed_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True)
class Subscription:
    """What a consumer listens to: a durable name and the event types (``*`` suffix = prefix)."""

    consumer: str
    types: tuple[str, ...]
    handler: Handler
    policy: RetryPolicy = RetryPolicy()

    def matches(self, event_type: str) -> bool:
        """True if ``event_type`` is one this subscription wants."""
        return any(
            event_type == pattern or (pattern.endswith("*") and event_type.startswith(pattern[:-1]))
            for pattern in self.types
        )


class Unretryable(Exception):
    """Raised by a handler for an event that can never succeed (invalid, forged): dead-lettered at
    once instead of being retried."""


class BusError(RuntimeError):
    """The bus could not accept or deliver an event."""


outages.register("event bus", BusError)  # answered 503 with Retry-After wherever it surfaces


class EventBus(abc.ABC):
    """Publish CloudEvents and run durable consumers (see module docstring for semantics)."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect and declare streams; idempotent."""

    @abc.abstractmethod
    async def publish(self, event: CloudEvent) -> bool:
        """Publish one event; False if it was suppressed as a duplicate."""

    async def publish_many(self, events: Sequence[CloudEvent]) -> int:
        """Publish several events; returns how many were new (not duplicates)."""
        new = 0
        for event in events:
            new += int(await self.publish(event))
        return new

    @abc.abstractmethod
    async def subscribe(self, subscription: Subscription) -> None:
        """Start a durable consumer in the background; redelivers what it had not acknowledged."""

    @abc.abstractmethod
    async def broadcast(self, subscription: Subscription) -> None:
        """Deliver every matching event published from now on to this process as well.

        Unlike `subscribe` (a work queue shared by the replicas of one consumer), every process that
        broadcast-subscribes gets its own copy, while it runs: for notices such as
        ``io.aima.config.changed.v1`` that each process must see. No history, no dead letters; a
        failing handler is logged, not retried.
        """

    @abc.abstractmethod
    async def dead_letters(self, consumer: str | None = None, limit: int = 100) -> list[DeadLetter]:
        """Dead letters, oldest first, optionally for one consumer."""

    @abc.abstractmethod
    async def health(self) -> None:
        """Raise if the bus cannot currently accept events."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop consumers (in-flight handlers finish or are redelivered later) and disconnect."""
