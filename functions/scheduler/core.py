"""The scheduler's core: admits queued jobs by priority within each tenant's limits, estimates them,
holds the ones that need an approval, and starts the rest.

On every ``job.created`` of a parent, ``job.finished`` (a slot freed) and
``job.scheduling.requested`` (an approval, a resume, a cancellation, a schedule's tick) it walks
the queue (`aima.storage.job_queue.JobQueue.waiting`: urgent first, first come first served within
a class) and for each job:

1. skips a ``low`` job outside the tenant's low-priority hours (``jobs.low_priority_hours``);
2. admits it ``Queued → Estimating`` if the tenant has fewer than ``jobs.max_running`` admitted
   (under a per-tenant lock, so concurrent schedulers never exceed it);
3. estimates it (`aima.estimates`, calibrated by finished jobs) and stores the estimate;
4. puts it back in the queue until the next UTC day if its GPU-seconds would pass the tenant's
   ``jobs.gpu_seconds_per_day``; sends it to ``AwaitingApproval`` if the job asks for approval or its
   cost passes ``jobs.approval_above_cost``, unless someone approved it;
5. otherwise plans each file's steps ``pending`` and moves it to ``Running``, in one transaction
   with the events that start its files: ``media.uploaded`` per file (ids derived from the child
   job, so a re-analysis of a stored file runs again), or, for a job that ran before (resumed), every
   event its steps emitted, replayed (`functions.runtime.replay`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

from aima.access.scope import Scope
from aima.config.schema import RuntimeConfig
from aima.domain import Job, JobPhase, Priority
from aima.estimates import Estimate, MediaFacts, calibration, estimate, facts_of, function_steps, units
from aima.storage.job_queue import JobQueue
from aima.storage.job_steps import JobSteps
from aima.storage.jobs import InvalidTransition, JobRepository
from aima.storage.media import MediaRepository
from aima.storage.schema import utcnow
from events.catalogue import EventData, JobCreated, MediaUploaded, SchedulingRequested, make_event
from events.envelope import CloudEvent, derived_event_id
from functions.runtime.context import Context

log = logging.getLogger(__name__)

ACTOR = "function:scheduler"
SOURCE = "/aima/functions/scheduler"
Replay = Callable[[Job], Awaitable[int]]
"""Re-deliver what a resumed job's steps left undone; returns how many events it sent."""


class SchedulerCore:
    """``async handle(data, ctx)`` for job events (see module docstring)."""

    def __init__(
        self,
        queue: JobQueue,
        jobs: JobRepository,
        steps: JobSteps,
        media: MediaRepository,
        config: Callable[[str], RuntimeConfig],
        per_file_steps: Sequence[str],
        *,
        replay: Replay | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """``config(tenant)`` is the tenant's effective configuration; ``per_file_steps`` the
        functions that run a step per file (from the specs)."""
        self._queue = queue
        self._jobs = jobs
        self._steps = steps
        self._media = media
        self._config = config
        self._per_file = list(per_file_steps)
        self._replay = replay
        self._clock = clock
        self._lock = asyncio.Lock()

    async def handle(self, data: EventData, ctx: Context) -> list[EventData]:
        if isinstance(data, JobCreated) and data.parent_job_id is not None:
            return []  # a child: its parent's creation schedules it
        tenant = data.tenant_id if isinstance(data, JobCreated | SchedulingRequested) else None
        if (
            isinstance(data, SchedulingRequested)
            and data.job_id
            and data.case_id
            and self._replay is not None
        ):
            # a running job resumed after its worker died: its unfinished steps are delivered again
            scope = Scope.for_case(data.tenant_id or "", data.case_id, ACTOR)
            job = await asyncio.to_thread(self._jobs.get, scope, data.job_id)
            if job is not None and job.phase is JobPhase.RUNNING:
                await self._replay(job)
        async with (
            self._lock
        ):  # one walk of the queue at a time per process; the lock in admit spans processes
            resumed = await asyncio.to_thread(self.schedule, tenant)
        if self._replay is not None:
            for job in resumed:
                await self._replay(job)
        return []

    def schedule(self, tenant_id: str | None = None) -> list[Job]:
        """Walk the queue once; returns the started jobs that ran before (to be replayed)."""
        now = self._clock()
        full: set[str] = set()
        resumed: list[Job] = []
        for job in self._queue.waiting(now=now, tenant_id=tenant_id):
            if job.tenant_id in full:
                continue
            config = self._config(job.tenant_id)
            if job.priority is Priority.LOW and not _in_hours(config.jobs.low_priority_hours, now):
                continue
            admitted = self._queue.admit(job, max_running=config.jobs.max_running)
            if admitted is None:
                if self._queue.active(job.tenant_id) >= config.jobs.max_running:
                    full.add(job.tenant_id)
                continue
            try:
                started = self.start(admitted, config, now)
            except InvalidTransition:
                continue  # cancelled while it was being estimated
            if started is not None and admitted.started_at is not None:
                resumed.append(started)
        return resumed

    def start(self, job: Job, config: RuntimeConfig, now: datetime) -> Job | None:
        """Estimate an admitted job, then hold it, ask for approval or run it (module docstring)."""
        scope = Scope.for_case(job.tenant_id, job.case_id, ACTOR)
        children = self._jobs.children(scope, job.id)
        facts = [self.facts(scope, child) for child in children if child.media_id is not None]
        est = self.estimate(job, facts, config)
        self._jobs.set_fields(scope, job.id, estimate=est.model_dump(mode="json"))
        budget = config.jobs.gpu_seconds_per_day
        if budget is not None and est.gpu_s > 0:
            midnight = datetime(now.year, now.month, now.day, tzinfo=UTC)
            used = self._queue.gpu_seconds_since(job.tenant_id, midnight)
            if used + est.gpu_s > budget:
                reason = (
                    f"the tenant's GPU-seconds for today are used ({used:.0f} of {budget:.0f} s; "
                    f"this job needs {est.gpu_s:.0f} s): held until tomorrow"
                )
                hold = {"hold_until": midnight + timedelta(days=1)}
                self._jobs.move(scope, job.id, JobPhase.QUEUED, reason=reason, fields=hold)
                return None
        above = config.jobs.approval_above_cost
        needs_approval = job.require_approval or (above is not None and est.cost > above)
        if needs_approval and job.approved_by is None:
            why = (
                "the job asks for approval"
                if job.require_approval
                else f"estimated cost {est.cost:.2f} {est.currency} is above {above:.2f}"
            )
            self._jobs.move(scope, job.id, JobPhase.AWAITING_APPROVAL, reason=why)
            return None
        ran_before = job.started_at is not None
        for child, file in zip([c for c in children if c.media_id is not None], facts, strict=True):
            planned = {
                step: amount
                for step in function_steps(job.steps)
                if step in self._per_file
                and (amount := units(file, step, config.analysis.max_frames_per_minute)) is not None
            }
            self._steps.plan(scope, child, planned)
        starts = [] if ran_before else [self.uploaded(scope, child) for child in children]
        fields = {"reason": None, "started_at": job.started_at} if ran_before else {"reason": None}
        return self._jobs.move(
            scope,
            job.id,
            JobPhase.RUNNING,
            fields=fields,
            events=[start_event(e) for e in starts if e is not None],
        )

    def estimate(self, job: Job, facts: list[MediaFacts], config: RuntimeConfig) -> Estimate:
        name = config.jobs.gpu_profile
        profile = config.gpu.profiles.get(name)
        if profile is None:
            name, profile = next(iter(config.gpu.profiles.items()))
        factors = calibration(self._queue.finished_pairs(name))
        return estimate(
            facts,
            job.steps,
            name,
            profile,
            frames_per_minute=config.analysis.max_frames_per_minute,
            parallel_files=config.jobs.parallel_files,
            calibration=factors,
        )

    def facts(self, scope: Scope, child: Job) -> MediaFacts:
        media = self._media.get(scope, child.media_id or "")
        if media is None:
            return MediaFacts(media_id=child.media_id or "", kind=None, size=0)
        return facts_of(media)

    def uploaded(self, scope: Scope, child: Job) -> MediaUploaded | None:
        media = self._media.get(scope, child.media_id or "")
        if media is None:
            return None
        return MediaUploaded(
            tenant_id=child.tenant_id,
            case_id=child.case_id,
            media_id=media.id,
            job_id=child.id,
            object_key=media.object_key,
            sha256=media.sha256,
            size=media.size,
            content_type=media.content_type,
            filename=media.filename,
        )


def start_event(data: MediaUploaded) -> CloudEvent:
    """``media.uploaded`` as the scheduler sends it: its id derived from the child job's."""
    return make_event(
        data, source=SOURCE, subject=data.media_id, event_id=derived_event_id(data.job_id or "", data.TYPE)
    )


def _in_hours(hours: tuple[int, int] | None, now: datetime) -> bool:
    if hours is None:
        return True
    start, end = hours
    return start <= now.hour < end if start <= end else (now.hour >= start or now.hour < end)
