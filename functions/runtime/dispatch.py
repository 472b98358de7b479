"""The protocol-independent part of every event function, as KServe's data plane is for its models.

`Dispatcher` takes a CloudEvent from either adapter (the HTTP endpoint or the bus consumer):

1. finds the payload model among the spec's ``consumes`` and validates the data
   (`RefusedEvent` otherwise: the event can never succeed, so it is not retried);
2. skips an event the function settled before (the processed-events ledger);
3. calls the typed core, ``handle(data, ctx) -> list[EventData]``;
4. builds the outgoing envelopes: ids derived from the handled event's id, the function and the
   payload's type (`derived_event_id`), so a redelivery emits the same ids; ``traceparent`` of the
   handler's span; tenant and case extensions; only types the spec declares in ``emits``;
5. records the event as processed and writes the emitted events to the outbox in one
   transaction (`aima.storage.outbox.Outbox.settle`), then publishes them through the relay. If
   publishing fails the events stay in the outbox and the relay's sweep publishes them later.

When the bus gives up on an event (its last attempt failed, or it can never succeed), `give_up`
counts the dead letter and, for an event about a media file, settles it with
``io.aima.media.failed.v1`` naming this function as the step and the error as the reason, so
whatever waits for the file's steps (fuse) learns the step failed instead of waiting for ever.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence

from pydantic import ValidationError

from aima.storage.outbox import Outbox
from aima.telemetry.metrics import EVENTS_DEAD_LETTERED
from aima.telemetry.tracing import inject
from events.bus import Unretryable
from events.catalogue import EventData, MediaFailed, MediaScoped, make_event
from events.envelope import CloudEvent, derived_event_id
from events.relay import OutboxRelay
from functions.runtime.context import Context
from functions.runtime.spec import EventFunction, FunctionSpec
from functions.runtime.steps import Entry, StepGate, Ticket
from inference.errors import ModelError, Outcome

log = logging.getLogger(__name__)


class RefusedEvent(ValueError, Unretryable):
    """An event this function can never handle (wrong type, invalid data); not worth retrying."""


class StepFailed(RuntimeError, Unretryable):
    """A core let a model's ``not_run`` or failed-item outcome escape: dead-lettered, not retried."""


class StepTimeout(TimeoutError):
    """A core ran past its step's timeout; retried like any transient error."""


class UndeclaredEmission(TypeError):
    """A core returned a payload its spec does not declare in ``emits``: a bug in the function."""


class Dispatcher:
    """Runs one function's core on CloudEvents (see module docstring)."""

    def __init__(
        self,
        spec: FunctionSpec,
        core: EventFunction,
        *,
        outbox: Outbox | None,
        relay: OutboxRelay | None,
        gate: StepGate | None = None,
        timeout_s: float | None = None,
    ) -> None:
        """Without ``outbox`` (and ``relay``) nothing is recorded or published: the caller gets the
        emitted events and does with them what it likes (tests of a core). ``gate`` records the
        function's per-file step of jobs (`functions.runtime.steps`); ``timeout_s`` bounds one call
        of the core (a timeout is retried like any transient error)."""
        self.spec = spec
        self.core = core
        self._outbox = outbox
        self._relay = relay
        self._gate = gate
        self._timeout_s = timeout_s
        for event_type in spec.types:  # a first dead letter must show as an increase from 0
            EVENTS_DEAD_LETTERED.labels(spec.name, event_type)

    @property
    def source(self) -> str:
        return f"/aima/functions/{self.spec.name}"

    def validate(self, event: CloudEvent) -> EventData:
        """The event's typed data; raises `RefusedEvent`."""
        model = self.spec.consumed(event.type)
        if model is None:
            accepted = ", ".join(self.spec.types) or "no events"
            raise RefusedEvent(
                f"{self.spec.name} does not accept events of type {event.type!r}; it accepts {accepted}"
            )
        try:
            return model.model_validate(event.data or {})
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"]) or "data"
            raise RefusedEvent(f"invalid {event.type} data at {where!r}: {error['msg']}") from None

    async def dispatch(self, event: CloudEvent) -> list[CloudEvent]:
        """Handle ``event`` once; returns the events it emitted (empty for a settled redelivery)."""
        data = self.validate(event)
        outbox = self._outbox
        if outbox is not None and await asyncio.to_thread(outbox.handled, self.spec.name, event.id):
            log.info(
                "event settled before; skipped", extra={"event_id": event.id, "consumer": self.spec.name}
            )
            return []
        ticket = await self._gate.enter(data) if self._gate is not None else None
        if ticket is not None and ticket.entry is Entry.SKIP:
            log.info("step not run for this job", extra={"event_id": event.id, "consumer": self.spec.name})
            return []  # not settled: a resume delivers it again
        try:
            call = self.core.handle(data, Context(self.spec.name, event))
            payloads = await (asyncio.wait_for(call, self._timeout_s) if self._timeout_s else call)
        except ModelError as exc:
            if exc.outcome is Outcome.RETRY:
                await self._give_back(ticket, f"model unavailable, retried: {exc.reason}")
                raise  # the model is down: the bus redelivers with backoff, HTTP answers 503
            # a core records not_run and failed items itself; one that lets them escape cannot
            # succeed on a redelivery either
            failed = StepFailed(f"{self.spec.name}: {exc.outcome.value}: {exc.reason}")
            if self._gate is not None:
                await self._gate.fail(data, str(failed))
            raise failed from exc
        except TimeoutError as exc:
            await self._give_back(ticket, f"timed out after {self._timeout_s:g} s")
            raise StepTimeout(f"{self.spec.name}: timed out after {self._timeout_s:g} s") from exc
        except Exception as exc:
            await self._give_back(ticket, repr(exc)[:500])
            raise
        emitted = self.envelopes(event, payloads)
        if outbox is None:
            return emitted
        if not await asyncio.to_thread(outbox.settle, self.spec.name, event.id, emitted):
            return []  # a concurrent delivery of the same event settled it first
        if ticket is not None and self._gate is not None:
            await self._gate.leave(ticket, payloads)
        if self._relay is not None:
            try:
                await self._relay.publish(emitted)
            except Exception as exc:
                log.warning(
                    "emitted events stay in the outbox until the bus takes them: %r",
                    exc,
                    extra={"event_id": event.id, "consumer": self.spec.name},
                )
        return emitted

    async def give_up(self, event: CloudEvent, error: str) -> list[CloudEvent]:
        """Settle an event the bus gave up on with the file's ``media.failed`` (see module docstring);
        returns what it emitted (nothing for an event about no media file, or one settled before).
        Counts the dead letter (``aima_events_dead_lettered_total``; a type the function does not
        consume counts as ``other``, so no sender can add label values)."""
        counted = event.type if self.spec.consumed(event.type) is not None else "other"
        EVENTS_DEAD_LETTERED.labels(self.spec.name, counted).inc()
        try:
            data = self.validate(event)
        except RefusedEvent:
            return []
        if not isinstance(data, MediaScoped) or self._outbox is None:
            return []
        reason = f"gave up after repeated failures: {error}"[:2000]
        if self._gate is not None:
            await self._gate.fail(data, reason)
        failed = MediaFailed(**data.media_ids(), step=self.spec.name, reason=reason)
        emitted = self._envelopes(event, [failed], declared=False)
        if not await asyncio.to_thread(self._outbox.settle, self.spec.name, event.id, emitted):
            return []
        if self._relay is not None:
            try:
                await self._relay.publish(emitted)
            except Exception as exc:
                log.warning("media.failed stays in the outbox until the bus takes it: %r", exc)
        return emitted

    async def _give_back(self, ticket: Ticket | None, error: str) -> None:
        if ticket is not None and self._gate is not None:
            try:
                await self._gate.give_back(ticket, error)
            except Exception as exc:  # the retry must not be lost to a ledger error
                log.warning("could not give the step back: %r", exc)

    async def __call__(self, event: CloudEvent) -> Sequence[CloudEvent]:
        """As a bus handler: the emitted events are published already, so the bus gets none."""
        await self.dispatch(event)
        return []

    def envelopes(self, handled: CloudEvent, payloads: Sequence[EventData]) -> list[CloudEvent]:
        """Envelopes for ``payloads``, ids derived from ``handled`` (see module docstring)."""
        return self._envelopes(handled, payloads, declared=True)

    def _envelopes(
        self, handled: CloudEvent, payloads: Sequence[EventData], *, declared: bool
    ) -> list[CloudEvent]:
        seen: Counter[str] = Counter()
        trace = inject()
        out = []
        for payload in payloads:
            if declared and type(payload) not in self.spec.emits:
                raise UndeclaredEmission(
                    f"{self.spec.name} emitted {type(payload).__name__}, not in its spec"
                )
            n = seen[payload.TYPE]
            seen[payload.TYPE] += 1
            key = payload.TYPE if n == 0 else f"{payload.TYPE}#{n}"
            subject = (
                payload.media_id if isinstance(payload, MediaScoped) else getattr(payload, "case_id", None)
            )
            out.append(
                make_event(
                    payload,
                    source=self.source,
                    subject=subject,
                    event_id=derived_event_id(handled.id, self.spec.name, key),
                    traceparent=trace.get("traceparent", handled.traceparent),
                    tracestate=trace.get("tracestate", handled.tracestate),
                )
            )
        return out
