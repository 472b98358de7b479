"""The retention function's core: one sweep per ``io.aima.retention.sweep.requested.v1``.

The request comes on a schedule (e.g. from a Knative PingSource). Its ``now``, or else the event's
own time, is the reference for expiry, so a redelivered request sweeps as of the same moment. It
returns one ``io.aima.retention.swept.v1`` per case swept (the runtime derives their ids from the
request's); a redelivery finds nothing left to purge and emits nothing.
"""

from __future__ import annotations

import asyncio

from aima.storage.retention import RetentionSweeper, SweepResult
from events.catalogue import EventData, RetentionSweepRequested, RetentionSwept
from functions.runtime.context import Context


class RetentionCore:
    """``async handle(data, ctx) -> list[EventData]`` for RetentionSweepRequested."""

    def __init__(self, sweeper: RetentionSweeper) -> None:
        self._sweeper = sweeper

    async def handle(self, data: RetentionSweepRequested, ctx: Context) -> list[EventData]:
        """Sweep (blocking work runs in a worker thread); one RetentionSwept per case swept."""
        results = await asyncio.to_thread(self._sweeper.sweep, data.now or ctx.event.time)
        return [_swept(result) for result in results]


def _swept(result: SweepResult) -> RetentionSwept:
    return RetentionSwept(
        tenant_id=result.tenant_id,
        case_id=result.case_id,
        media_count=result.media_count,
        objects_deleted=result.objects_deleted,
        bytes_freed=result.bytes_freed,
    )
