"""The step ledger at the runtime's door: every per-file step of a job is recorded as it starts and
ends, and nothing of a cancelled job starts.

`StepGate.enter` runs before a function's core for an event about a file of a job (its data's
``job_id`` names the child job):

- the job was cancelled: the step is recorded ``cancelled`` and the core does not run; the event is
  *not* settled, so a resume delivers it again;
- the job's steps do not include this one: recorded ``not_run`` ("not chosen for this job");
- otherwise the step becomes ``running`` under this worker's lease; another worker holding it is
  refused (`StepBusy`, retried by the bus later) and a step that ended is not run twice.

`StepGate.leave` records the end from what the core returned: ``failed`` for a ``media.failed``,
``not_run`` for a result that says so, ``succeeded`` otherwise. A transient error gives the step
back (``pending``) for the retry; a permanent one, or the bus giving up, ends it ``failed``.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from aima.access.scope import Scope
from aima.domain import Job, JobPhase, StepState
from aima.estimates import function_steps
from aima.storage.job_steps import JobSteps, StepBusy, StepEnded
from aima.storage.relational import Database
from events.catalogue import EventData, MediaFailed, MediaScoped

__all__ = ["Entry", "StepBusy", "StepGate", "Ticket"]


class Entry(Enum):
    RUN = "run"
    SKIP = "skip"


@dataclass(frozen=True)
class Ticket:
    """A step this worker started (None fields: an event about no job, not tracked)."""

    entry: Entry
    scope: Scope | None = None
    job_id: str | None = None


UNTRACKED = Ticket(Entry.RUN)


class StepGate:
    """Records one function's per-file step for each event it handles (see module docstring)."""

    def __init__(self, db: Database, function: str, step: str, *, lease_s: float) -> None:
        self._steps = JobSteps(db)
        self._function = function
        self._step = step
        self._lease_s = lease_s
        self._worker = f"{socket.gethostname()}:{os.getpid()}:{function}"

    async def enter(self, data: EventData) -> Ticket:
        if not isinstance(data, MediaScoped) or data.job_id is None:
            return UNTRACKED
        return await asyncio.to_thread(self._enter, data)

    def _enter(self, data: MediaScoped) -> Ticket:
        job_id = data.job_id or ""
        scope = Scope.for_case(data.tenant_id, data.case_id, f"function:{self._function}")
        found = self._steps.phase_of(scope, job_id)
        if found is None:
            return UNTRACKED  # a job removed since: run as a file outside any job
        phase, chosen, parent_id = found
        if parent_id is None:
            return UNTRACKED  # a parent job names no file
        child = Job(
            id=job_id,
            tenant_id=data.tenant_id,
            case_id=data.case_id,
            parent_job_id=parent_id,
            media_id=data.media_id,
        )
        if phase == JobPhase.CANCELLED.value:
            self._steps.record(scope, child, self._step, StepState.CANCELLED, reason="job cancelled")
            return Ticket(Entry.SKIP)
        if chosen and self._step not in function_steps(chosen):
            self._steps.record(scope, child, self._step, StepState.NOT_RUN, reason="not chosen for this job")
            return Ticket(Entry.SKIP)
        try:
            self._steps.begin(scope, child, self._step, worker=self._worker, lease_s=self._lease_s)
        except StepEnded:
            return Ticket(Entry.SKIP)
        return Ticket(Entry.RUN, scope, job_id)

    async def leave(self, ticket: Ticket, payloads: Sequence[EventData]) -> None:
        """Record the end of a step that ran, from what its core returned."""
        if ticket.scope is None or ticket.job_id is None:
            return
        state, reason = outcome(payloads)
        await asyncio.to_thread(
            self._steps.finish,
            ticket.scope,
            ticket.job_id,
            self._step,
            state,
            reason=reason,
            worker=self._worker,
        )

    async def give_back(self, ticket: Ticket, error: str) -> None:
        """A transient failure: the step is ``pending`` again for the retry."""
        if ticket.scope is None or ticket.job_id is None:
            return
        await asyncio.to_thread(
            self._steps.finish,
            ticket.scope,
            ticket.job_id,
            self._step,
            StepState.PENDING,
            reason=error,
            worker=self._worker,
        )

    async def fail(self, data: EventData, error: str) -> None:
        """The step can never succeed for this file (a permanent error, or the bus gave up)."""
        if not isinstance(data, MediaScoped) or data.job_id is None:
            return
        scope = Scope.for_case(data.tenant_id, data.case_id, f"function:{self._function}")
        await asyncio.to_thread(
            self._steps.finish, scope, data.job_id, self._step, StepState.FAILED, reason=error
        )


def outcome(payloads: Sequence[EventData]) -> tuple[StepState, str | None]:
    """The step state a core's payloads stand for (see module docstring)."""
    for payload in payloads:
        if isinstance(payload, MediaFailed):
            return StepState.FAILED, payload.reason
    for payload in payloads:
        if getattr(payload, "status", None) == "not_run":
            return StepState.NOT_RUN, getattr(payload, "reason", None)
    return StepState.SUCCEEDED, None
