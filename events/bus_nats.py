"""The cluster profile's event bus: NATS JetStream (the only module that imports ``nats``).

Events are structured-mode CloudEvents JSON on ``<root>.events.<type>`` in stream ``<stream>``,
with ``Nats-Msg-Id: <event id>`` so JetStream drops duplicates within ``dedupe_window``. Each
`Subscription` is a durable pull consumer with explicit acks; its handlers run concurrently per
fetched batch. A failure is nak'ed with the policy's backoff; the last failure (or a delivery past
``max_deliver`` because earlier ones were never acknowledged) becomes a dead-letter CloudEvent on
``<root>.deadletter.<consumer>`` in stream ``<stream>_DLQ``, and the original is terminated.
``<root>`` is ``subject_root`` (``aima``); tests and benchmarks pass their own, since JetStream
refuses two streams with overlapping subjects on one server.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig

from aima.telemetry.tracing import inject, span_from
from events.bus import DEAD_LETTER_TYPE, BusError, DeadLetter, EventBus, Subscription, Unretryable
from events.envelope import CloudEvent, derived_event_id

log = logging.getLogger(__name__)

MALFORMED_TYPE = "io.aima.bus.malformed.v1"
"""Type of the stand-in event a dead letter carries when the message was not a CloudEvent."""

_DAY = 86_400.0
_EVENTS_MAX_AGE = 7 * _DAY
_DLQ_MAX_AGE = 30 * _DAY
_FETCH_BATCH = 128
_CONCURRENCY = 32
_FETCH_TIMEOUT = 1.0
_REQUEST_TIMEOUT = 5.0
_PUBLISH_TIMEOUT = 2.0
_CONNECT_TIMEOUT = 5.0
_PUBLISH_ATTEMPTS = 5
_RETRY_PAUSE = 0.25
_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")
_TYPE = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
_TRANSIENT = (
    asyncio.TimeoutError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.StaleConnectionError,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.ServiceUnavailableError,
)

_Outgoing = tuple[str, bytes, dict[str, str]]


class NatsBus(EventBus):
    """`EventBus` over NATS JetStream (see module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        stream: str = "AIMA",
        dedupe_window: float = 120.0,
        name: str = "aima",
        subject_root: str = "aima",
    ) -> None:
        if not _TOKEN.match(subject_root):
            raise ValueError(f"subject_root must be one subject token, got {subject_root!r}")
        self._url = url
        self._stream = stream
        self._dlq_stream = f"{stream}_DLQ"
        self._window = dedupe_window
        self._name = name
        self._root = subject_root
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._loops: list[tuple[asyncio.Task[None], JetStreamContext.PullSubscription]] = []
        self._connection_lost: asyncio.Future[None] | None = None  # resolved at the next disconnect
        self._broadcasts: list[Any] = []  # core NATS subscriptions (one copy per process)
        self._outage_since: float | None = None  # monotonic time of the disconnect; None while connected

    # --- port -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (reconnecting forever after the first success) and declare both streams."""
        if self._nc is not None:
            return
        try:
            async with asyncio.timeout(_CONNECT_TIMEOUT):
                nc = await nats.connect(
                    servers=[self._url],
                    name=self._name,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.2,
                    connect_timeout=2,
                    drain_timeout=5,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnect,
                    reconnected_cb=self._on_reconnect,
                )
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            raise BusError(f"cannot connect to NATS at {self._url}: {exc!r}") from exc
        js = nc.jetstream(timeout=_REQUEST_TIMEOUT)
        try:
            await _ensure_stream(
                js,
                StreamConfig(
                    name=self._stream,
                    subjects=[f"{self._root}.events.>"],
                    storage=StorageType.FILE,
                    duplicate_window=self._window,
                    max_age=_EVENTS_MAX_AGE,
                ),
            )
            await _ensure_stream(
                js,
                StreamConfig(
                    name=self._dlq_stream,
                    subjects=[f"{self._root}.deadletter.>"],
                    storage=StorageType.FILE,
                    duplicate_window=self._window,
                    max_age=_DLQ_MAX_AGE,
                ),
            )
        except (TimeoutError, nats.errors.Error) as exc:
            await nc.close()
            raise BusError(f"cannot declare streams {self._stream}/{self._dlq_stream}: {exc!r}") from exc
        self._nc, self._js = nc, js
        self._connection_lost = asyncio.get_running_loop().create_future()

    async def publish(self, event: CloudEvent) -> bool:
        """Publish and wait for the stream's ack; False if JetStream reported a duplicate id."""
        return await self._publish_one(self._outgoing(event, inject()))

    async def publish_many(self, events: Sequence[CloudEvent]) -> int:
        """Publish asynchronously and wait for all acks; unanswered ones are retried one by one."""
        if not events:
            return 0
        js = self._jetstream()
        trace = inject()
        outgoing = [self._outgoing(event, trace) for event in events]
        futures: list[asyncio.Future[Any]] = []
        try:
            for subject, body, headers in outgoing:
                futures.append(await js.publish_async(subject, body, headers=headers))
        except nats.errors.Error as exc:  # the rest go out one by one below, with retries
            log.warning("async publish interrupted after %d of %d: %r", len(futures), len(outgoing), exc)
        await self._wait_acks(futures)
        new = 0
        for index, item in enumerate(outgoing):
            future = futures[index] if index < len(futures) else None
            if future is not None and future.done() and future.exception() is None:
                new += not future.result().duplicate
                continue
            if future is not None:
                future.cancel()
            new += await self._publish_one(item, retried=True)
        return new

    async def subscribe(self, subscription: Subscription) -> None:
        """Create or update the durable pull consumer and start its fetch loop."""
        js = self._jetstream()
        durable = subscription.consumer
        if not _TOKEN.match(durable):
            raise BusError(f"consumer name must be letters, digits, '-' or '_': {durable!r}")
        policy = subscription.policy
        config = ConsumerConfig(
            durable_name=durable,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=policy.ack_wait,
            # unlimited on the server: we dead-letter deliveries past policy.max_deliver ourselves,
            # so an attempt lost to a crash or a cut connection cannot strand the event
            max_deliver=-1,
            filter_subject=self._filter_subject(subscription.types),
        )
        try:
            await js.add_consumer(self._stream, config=config)
            psub = await js.pull_subscribe_bind(durable=durable, stream=self._stream)
        except (TimeoutError, nats.errors.Error) as exc:
            raise BusError(f"cannot create consumer {durable}: {exc!r}") from exc
        task = asyncio.create_task(self._consume(subscription, psub), name=f"bus:{durable}")
        self._loops.append((task, psub))

    async def broadcast(self, subscription: Subscription) -> None:
        """A plain (core NATS) subscription on the event subjects: every process gets each event."""
        if self._nc is None:
            raise BusError("NatsBus is not started")

        async def deliver(msg: Msg) -> None:
            try:
                event = CloudEvent.from_json(msg.data)
            except ValueError:
                log.warning(
                    "broadcast %s: a message that is not a CloudEvent was ignored", subscription.consumer
                )
                return
            if not subscription.matches(event.type):
                return
            try:
                with span_from(event.extensions, f"notice {event.type}", consumer=subscription.consumer):
                    await subscription.handler(event)
            except Exception:
                log.exception("broadcast handler %s failed on %s", subscription.consumer, event.id)

        for subject in {self._type_subject(pattern) for pattern in subscription.types}:
            try:
                self._broadcasts.append(await self._nc.subscribe(subject, cb=deliver))
            except nats.errors.Error as exc:
                raise BusError(f"cannot subscribe to {subject}: {exc!r}") from exc

    async def dead_letters(self, consumer: str | None = None, limit: int = 100) -> list[DeadLetter]:
        """Dead letters from the DLQ stream, oldest first, optionally for one consumer."""
        js = self._jetstream()
        subject = self._dlq_subject(consumer) if consumer else f"{self._root}.deadletter.>"
        letters: list[DeadLetter] = []
        seq = 1
        while len(letters) < limit:
            try:
                raw = await js.get_msg(self._dlq_stream, seq=seq, subject=subject, next=True)
            except nats.js.errors.NotFoundError:
                break
            except (TimeoutError, nats.errors.Error) as exc:
                raise BusError(f"cannot read dead letters: {exc!r}") from exc
            if raw.data is not None:
                letters.append(_dead_letter_from(CloudEvent.from_json(raw.data)))
            seq = (raw.seq or seq) + 1
        return letters

    async def health(self) -> None:
        """Raise `BusError` unless connected and the event stream answers."""
        if self._nc is None or self._js is None or not self._nc.is_connected:
            raise BusError("not connected to NATS")
        try:
            await self._js.stream_info(self._stream)
        except (TimeoutError, nats.errors.Error) as exc:
            raise BusError(f"stream {self._stream} unreachable: {exc!r}") from exc

    async def close(self) -> None:
        """Cancel the fetch loops (unacknowledged messages are redelivered), then drain and close."""
        loops, self._loops = self._loops, []
        for task, _ in loops:
            task.cancel()
        await asyncio.gather(*(task for task, _ in loops), return_exceptions=True)
        nc, self._nc, self._js = self._nc, None, None
        if nc is None or nc.is_closed:
            return
        broadcasts, self._broadcasts = self._broadcasts, []
        try:
            for _, psub in loops:  # nobody reads their inboxes any more; drain would wait on them
                await psub.unsubscribe()
            for sub in broadcasts:
                await sub.unsubscribe()
            await nc.drain()
        except (TimeoutError, nats.errors.Error):
            await nc.close()

    # --- publishing -------------------------------------------------------------------------

    async def _on_disconnect(self) -> None:
        if self._connection_lost is not None and not self._connection_lost.done():
            self._connection_lost.set_result(None)
        self._connection_lost = asyncio.get_running_loop().create_future()
        if self._nc is not None and self._outage_since is None:  # not our own close(); once per outage
            self._outage_since = time.monotonic()
            log.warning("nats: disconnected from %s; reconnecting (one warning per outage)", self._url)

    async def _on_error(self, exc: Exception) -> None:
        """Errors while disconnected are the reconnect attempts of a known outage: not warned again."""
        if self._outage_since is not None:
            log.debug("nats: still unreachable: %r", exc)
            return
        log.warning("nats: %r", exc)

    async def _on_reconnect(self) -> None:
        since, self._outage_since = self._outage_since, None
        lasted = "" if since is None else f" after {time.monotonic() - since:.1f} s"
        log.warning("nats: reconnected to %s%s", self._url, lasted)

    def _jetstream(self) -> JetStreamContext:
        if self._js is None:
            raise BusError("NatsBus is not started")
        return self._js

    def _outgoing(self, event: CloudEvent, trace: dict[str, str]) -> _Outgoing:
        """Subject, body and headers; ``trace`` (the caller's context) fills a missing traceparent."""
        if not _TYPE.match(event.type):
            raise BusError(f"event type {event.type!r} cannot be a NATS subject")
        if event.traceparent is None and trace:
            event = event.with_extensions(**trace)
        return f"{self._root}.events.{event.type}", event.to_json(), {"Nats-Msg-Id": event.id}

    async def _wait_acks(self, futures: list[asyncio.Future[Any]]) -> None:
        """Wait for publish acks until all came, time ran out, or the connection dropped (acks lost)."""
        if not futures:
            return
        acks = asyncio.gather(*futures, return_exceptions=True)
        watch: list[asyncio.Future[Any]] = [acks]
        if self._connection_lost is not None:
            watch.append(self._connection_lost)
        await asyncio.wait(watch, timeout=_PUBLISH_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)

    async def _publish_one(self, item: _Outgoing, *, retried: bool = False) -> bool:
        """Publish with retries; after a lost ack, a duplicate answer most likely means our own try."""
        js = self._jetstream()
        subject, body, headers = item
        error: Exception | None = None
        for attempt in range(_PUBLISH_ATTEMPTS):
            try:
                ack = await js.publish(subject, body, timeout=_PUBLISH_TIMEOUT, headers=headers)
            except _TRANSIENT as exc:
                error = exc
                await asyncio.sleep(_RETRY_PAUSE * (attempt + 1))
                continue
            except nats.errors.Error as exc:
                raise BusError(f"publish to {subject} failed: {exc!r}") from exc
            return not ack.duplicate or retried or attempt > 0
        raise BusError(f"publish to {subject} failed after {_PUBLISH_ATTEMPTS} attempts: {error!r}")

    # --- consuming --------------------------------------------------------------------------

    def _filter_subject(self, types: Sequence[str]) -> str:
        """One server-side filter (nats-server 2.9 has no multi-filter); the rest is checked here."""
        subjects = {self._type_subject(pattern) for pattern in types}
        return subjects.pop() if len(subjects) == 1 else f"{self._root}.events.>"

    def _type_subject(self, pattern: str) -> str:
        if not pattern.endswith("*"):
            return f"{self._root}.events.{pattern}"
        prefix = pattern[:-1]
        if prefix == "" or (prefix.endswith(".") and _TYPE.match(prefix[:-1])):
            return f"{self._root}.events.{prefix}>"
        return f"{self._root}.events.>"

    def _dlq_subject(self, consumer: str) -> str:
        return f"{self._root}.deadletter.{consumer}"

    async def _consume(self, subscription: Subscription, psub: JetStreamContext.PullSubscription) -> None:
        """Handle one batch concurrently while the next one is being fetched."""
        inflight: dict[int, Msg] = {}
        keeper = asyncio.create_task(_keep_in_progress(inflight, subscription.policy.ack_wait / 2))
        fetching = asyncio.create_task(self._fetch(subscription, psub, inflight))
        try:
            while True:
                msgs = await fetching
                fetching = asyncio.create_task(self._fetch(subscription, psub, inflight))
                await self._run_batch(subscription, msgs, inflight)
        finally:
            keeper.cancel()
            fetching.cancel()

    async def _fetch(
        self, subscription: Subscription, psub: JetStreamContext.PullSubscription, inflight: dict[int, Msg]
    ) -> list[Msg]:
        try:
            msgs = await psub.fetch(_FETCH_BATCH, timeout=_FETCH_TIMEOUT)
        except TimeoutError:
            return []
        except nats.errors.Error as exc:
            log.warning("fetch for %s failed: %r", subscription.consumer, exc)
            await asyncio.sleep(_RETRY_PAUSE)
            return []
        inflight.update((id(msg), msg) for msg in msgs)
        return msgs

    async def _run_batch(self, subscription: Subscription, msgs: list[Msg], inflight: dict[int, Msg]) -> None:
        """Up to ``_CONCURRENCY`` handlers at a time, without a task per message."""
        queue = deque(msgs)

        async def worker() -> None:
            while queue:
                await self._settle(subscription, queue.popleft(), inflight)

        await asyncio.gather(*(worker() for _ in range(min(len(msgs), _CONCURRENCY))))

    async def _settle(self, subscription: Subscription, msg: Msg, inflight: dict[int, Msg]) -> None:
        try:
            await self._handle(subscription, msg)
        except (TimeoutError, nats.errors.Error, BusError) as exc:
            log.warning(
                "%s could not settle a message (redelivered after ack_wait): %r", subscription.consumer, exc
            )
        finally:
            del inflight[id(msg)]

    async def _handle(self, subscription: Subscription, msg: Msg) -> None:
        consumer, policy = subscription.consumer, subscription.policy
        delivery = msg.metadata.num_delivered
        try:
            event = CloudEvent.from_json(msg.data)
        except ValueError as exc:
            await self._dead_letter(consumer, self._malformed(msg), delivery, f"malformed event: {exc}")
            await msg.term()
            return
        if not subscription.matches(event.type):
            await msg.ack()
            return
        if delivery > policy.max_deliver:
            error = f"not acknowledged after {delivery - 1} deliveries (crash, timeout or lost connection)"
            await self._dead_letter(consumer, event, delivery - 1, error)
            await msg.term()
            return
        try:
            with span_from(event.extensions, f"handle {event.type}", consumer=consumer, attempt=delivery):
                emitted = await subscription.handler(event)
                await self.publish_many(emitted)
        except Exception as exc:
            if delivery < policy.max_deliver and not isinstance(exc, Unretryable):
                await msg.nak(delay=policy.delay(delivery))
                return
            await self._dead_letter(consumer, event, delivery, f"{type(exc).__name__}: {exc}")
            await msg.term()
            return
        await msg.ack()

    def _malformed(self, msg: Msg) -> CloudEvent:
        return CloudEvent(
            id=f"{self._stream}:{msg.metadata.sequence.stream}",
            source=f"nats:{msg.subject}",
            type=MALFORMED_TYPE,
            data={"raw": msg.data.decode(errors="replace")},
        )

    async def _dead_letter(self, consumer: str, event: CloudEvent, attempts: int, error: str) -> None:
        log.warning("dead letter: consumer=%s event=%s error=%s", consumer, event.id, error)
        letter = CloudEvent(
            id=derived_event_id(event.id, "deadletter", consumer),
            source=f"/aima/bus/{self._name}",
            type=DEAD_LETTER_TYPE,
            subject=consumer,
            data={
                "consumer": consumer,
                "attempts": attempts,
                "error": error,
                "event": event.model_dump(mode="json", exclude_none=True),
            },
        )
        await self._publish_one((self._dlq_subject(consumer), letter.to_json(), {"Nats-Msg-Id": letter.id}))


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    try:
        await js.add_stream(config)
    except nats.js.errors.BadRequestError:  # exists with another configuration
        await js.update_stream(config)


async def _keep_in_progress(inflight: dict[int, Msg], interval: float) -> None:
    """Tell JetStream that fetched messages are still being worked on, so it does not redeliver."""
    while True:
        await asyncio.sleep(interval)
        try:
            for msg in list(inflight.values()):
                if not msg.is_acked:
                    await msg.in_progress()
        except nats.errors.Error as exc:
            log.warning("nats: in-progress ack failed: %r", exc)


def _dead_letter_from(letter: CloudEvent) -> DeadLetter:
    data = letter.data or {}
    return DeadLetter(
        consumer=str(data["consumer"]),
        event=CloudEvent.model_validate(data["event"]),
        attempts=int(data["attempts"]),
        error=str(data["error"]),
        failed_at=letter.time,
    )
