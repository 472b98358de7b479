"""The Knative profile's event bus: publish CloudEvents to a sink over HTTP; Triggers deliver them.

Under Knative Eventing a function does not consume from a stream of its own: the Broker (backed by
NATS JetStream through eventing-natss) keeps the events, and a Trigger per function POSTs each
matching one to the function's ``/`` route (``AIMA_DELIVERY=http``), retrying with backoff and
handing it to a dead-letter sink after the last attempt. So this adapter only publishes: one POST
per event in binary mode to the sink (``AIMA_SINK_URL``, or ``K_SINK`` as a SinkBinding injects
it), where 2xx means the Broker took it. A 4xx other than 408/429 is refused for good
(`Unretryable`); anything else raises `BusError`, so the outbox relay keeps the rows and tries
again on its next sweep.

`subscribe` is refused (deliveries come through the Trigger), `broadcast` is accepted and does
nothing: configuration notices then take effect within the configuration cache's lifetime
(``aima.config.service.CACHE_TTL``) instead of at once. `dead_letters` lists none: they go to
the Trigger's dead-letter sink. The broker's own idempotency is by event id, so a publish retried
after a lost answer is a duplicate the consumers' processed-events ledger absorbs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import httpx

from aima.telemetry.tracing import inject
from events.bus import BusError, DeadLetter, EventBus, Subscription, Unretryable
from events.envelope import CloudEvent
from events.http import to_binary

log = logging.getLogger(__name__)
_RETRYABLE_4XX = frozenset({408, 409, 425, 429})


class HttpBus(EventBus):
    """Publishes to a CloudEvents sink such as a Knative Broker's ingress (see module docstring)."""

    def __init__(
        self, sink_url: str, *, timeout: float = 10.0, transport: httpx.AsyncBaseTransport | None = None
    ):
        self._url = sink_url
        self._timeout = timeout
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    @property
    def sink_url(self) -> str:
        return self._url

    async def start(self) -> None:
        """Open the connection pool; idempotent."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout, transport=self._transport)

    async def publish(self, event: CloudEvent) -> bool:
        """POST ``event`` to the sink; True once the sink accepted it (see module docstring)."""
        if self._client is None:
            await self.start()
        assert self._client is not None
        if event.traceparent is None:
            event = event.with_extensions(**inject())
        headers, body = to_binary(event)
        try:
            answer = await self._client.post(self._url, headers=headers, content=body)
        except httpx.HTTPError as exc:
            raise BusError(f"event sink {self._url} unreachable: {exc!r}") from exc
        if answer.is_success:
            return True
        detail = f"event sink {self._url} answered {answer.status_code} for {event.type} {event.id}"
        if 400 <= answer.status_code < 500 and answer.status_code not in _RETRYABLE_4XX:
            raise Unretryable(f"{detail}: {answer.text[:300]}")
        raise BusError(detail)

    async def publish_many(self, events: Sequence[CloudEvent]) -> int:
        """Publish in order; stops at the first failure (the rest stay in the outbox)."""
        for event in events:
            await self.publish(event)
        return len(events)

    async def subscribe(self, subscription: Subscription) -> None:
        raise BusError(
            f"consumer {subscription.consumer}: with AIMA_BUS=http events are delivered by a Knative Trigger "
            "to POST / (AIMA_DELIVERY=http), not consumed from the bus"
        )

    async def broadcast(self, subscription: Subscription) -> None:
        """Nothing to listen on; notices apply within the configuration cache's lifetime."""
        log.info("no broadcast over the HTTP sink", extra={"subscription": subscription.consumer})

    async def dead_letters(self, consumer: str | None = None, limit: int = 100) -> list[DeadLetter]:
        """None here: the Trigger's dead-letter sink receives them."""
        return []

    async def health(self) -> None:
        """Raise unless the sink answers HTTP at all (any status: a Broker ingress answers GET with 405)."""
        if self._client is None:
            await self.start()
        assert self._client is not None
        try:
            await self._client.request("OPTIONS", self._url)
        except httpx.HTTPError as exc:
            raise BusError(f"event sink {self._url} unreachable: {exc!r}") from exc

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
