"""The retention function's core: one sweep per ``io.aima.retention.sweep.requested.v1``.

The request comes on a schedule (e.g. from a Knative PingSource). Its ``now``, or else the event's
own time, is the reference for expiry, so a redelivered request sweeps as of the same moment. It
emits one ``io.aima.retention.swept.v1`` per case swept, with an id derived from the request id and
the case; a redelivery finds nothing left to purge and emits nothing.
"""

from __future__ import annotations

import asyncio

from aima.storage.retention import RetentionSweeper, SweepResult
from events.catalogue import RetentionSweepRequested, RetentionSwept, make_event, parse_data
from events.envelope import CloudEvent, derived_event_id

SOURCE = "/aima/functions/retention"
STEP = "retention"


class RetentionCore:
    """``async handle(event) -> list[CloudEvent]`` for RetentionSweepRequested."""

    def __init__(self, sweeper: RetentionSweeper) -> None:
        self._sweeper = sweeper

    async def handle(self, event: CloudEvent) -> list[CloudEvent]:
        """Sweep (blocking work runs in a worker thread); one RetentionSwept per case swept."""
        data = parse_data(event, RetentionSweepRequested)
        assert isinstance(data, RetentionSweepRequested)
        results = await asyncio.to_thread(self._sweeper.sweep, data.now or event.time)
        return [_swept(event, result) for result in results]


def _swept(event: CloudEvent, result: SweepResult) -> CloudEvent:
    payload = RetentionSwept(
        tenant_id=result.tenant_id,
        case_id=result.case_id,
        media_count=result.media_count,
        objects_deleted=result.objects_deleted,
        bytes_freed=result.bytes_freed,
    )
    return make_event(
        payload,
        source=SOURCE,
        subject=result.case_id,
        event_id=derived_event_id(event.id, STEP, result.case_id),
    )
