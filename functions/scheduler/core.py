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

After each walk it sets the queue's gauges from what the walk left queued: ``aima_jobs_queued``
(jobs per priority) and ``aima_jobs_oldest_queued_age_seconds`` (how long the longest-waiting job of
each priority has waited since it entered the queue or its hold ended, computed when scraped, so it
keeps growing while no walk happens). A walk of one tenant's queue replaces only that tenant's part.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

from aima.access.scope import Scope
from aima.config.schema import RuntimeConfig
from aima.domain import Job, JobPhase, Media, Priority
from aima.estimates import Estimate, MediaFacts, calibration, facts_of, function_steps, units
from aima.job_view import job_estimate
from aima.storage.job_queue import JobQueue
from aima.storage.job_steps import JobSteps, planned
from aima.storage.jobs import JobRepository, Start
from aima.storage.media import MediaRepository
from aima.storage.schema import utcnow
from aima.telemetry.metrics import JOBS_OLDEST_QUEUED_AGE, JOBS_QUEUED
from events.catalogue import EventData, JobCreated, MediaUploaded, SchedulingRequested, make_event
from events.envelope import CloudEvent, derived_event_id
from functions.runtime.context import Context

log = logging.getLogger(__name__)

ACTOR = "function:scheduler"
SOURCE = "/aima/functions/scheduler"
WALK = 5000
"""Queued jobs looked at in one walk of the queue."""
Replay = Callable[[Job], Awaitable[int]]
"""Re-deliver what a resumed job's steps left undone; returns how many events it sent."""
Reset = Callable[[Job], Awaitable[None]]
"""Forget the outcomes and report claim of a job resumed before it ever started."""
Backlog = dict[Priority, tuple[int, datetime]]
"""Per priority: how many jobs wait, and since when the longest-waiting one does."""


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
        reset: Reset | None = None,
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
        self._reset = reset
        self._clock = clock
        self._lock = asyncio.Lock()
        self._backlog: dict[str, Backlog] = {}

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
            elif job is not None and job.started_at is None and self._reset is not None:
                # resumed before it ever started: it starts afresh, but fuse must forget its first end
                await self._reset(job)
        async with (
            self._lock
        ):  # one walk of the queue at a time per process; the lock in admit spans processes
            resumed = await asyncio.to_thread(self.schedule, tenant)
        if self._replay is not None:
            for job in resumed:
                await self._replay(job)
        return []

    def schedule(self, tenant_id: str | None = None) -> list[Job]:
        """Walk the queue once; returns the started jobs that ran before (to be replayed).

        Per tenant, in queue order: as many jobs as it has free slots are admitted in one
        transaction (`JobQueue.admit_many`), estimated together, and started in one transaction
        (`JobRepository.start_many`), so a queue of a thousand jobs costs a handful of commits.
        """
        now = self._clock()
        resumed: list[Job] = []
        walked = self._queue.waiting(now=now, tenant_id=tenant_id, limit=WALK)
        by_tenant: dict[str, list[Job]] = {}
        for job in walked:
            by_tenant.setdefault(job.tenant_id, []).append(job)
        taken: set[str] = set()
        for tenant, waiting in by_tenant.items():
            config = self._config(tenant)
            open_now = _in_hours(config.jobs.low_priority_hours, now)
            candidates = [job for job in waiting if job.priority is not Priority.LOW or open_now]
            while candidates:
                admitted = self._queue.admit_many(tenant, candidates, max_running=config.jobs.max_running)
                if not admitted:
                    break
                taken.update(a.id for a in admitted)
                started = self.start_many(tenant, admitted, config, now)
                ran_before = {a.id for a in admitted if a.started_at is not None}
                resumed += [job for job in started if job.id in ran_before]
                if len(started) == len(admitted):
                    break
                # some were held (approval, GPU budget) or cancelled meanwhile: their slots are free
                candidates = [job for job in candidates if job.id not in taken]
        self.measure(tenant_id, [job for job in walked if job.id not in taken])
        return resumed

    def measure(self, tenant_id: str | None, left: Sequence[Job]) -> None:
        """Set the queue's gauges from the jobs a walk left queued (module docstring); a walk of
        every tenant (``tenant_id`` None) replaces the whole picture, one tenant's walk its part."""
        if tenant_id is None:
            self._backlog = {}
        else:
            self._backlog.pop(tenant_id, None)
        for job in left:
            backlog = self._backlog.setdefault(job.tenant_id, {})
            count, oldest = backlog.get(job.priority, (0, None))
            since = _queued_since(job)
            backlog[job.priority] = (count + 1, since if oldest is None else min(oldest, since))
        for priority in Priority:
            parts = [b[priority] for b in self._backlog.values() if priority in b]
            JOBS_QUEUED.labels(priority.value).set(sum(count for count, _ in parts))
            oldest = min((since for _, since in parts), default=None)
            JOBS_OLDEST_QUEUED_AGE.labels(priority.value).set_function(functools.partial(self._age, oldest))

    def _age(self, since: datetime | None) -> float:
        return 0.0 if since is None else max(0.0, (self._clock() - since).total_seconds())

    def start_many(
        self, tenant_id: str, admitted: list[Job], config: RuntimeConfig, now: datetime
    ) -> list[Job]:
        """Estimate admitted jobs of one tenant; hold, send for approval or start each (module docstring)."""
        scope = Scope.for_tenant(tenant_id, ACTOR)
        children = self._jobs.children_of(scope, [job.id for job in admitted])
        media_ids = [c.media_id for kids in children.values() for c in kids if c.media_id is not None]
        rows = self._media.many(scope, media_ids)
        factors = functools.cache(lambda profile: calibration(self._queue.finished_pairs(profile)))
        budget = config.jobs.gpu_seconds_per_day
        midnight = datetime(now.year, now.month, now.day, tzinfo=UTC)
        used = self._queue.gpu_seconds_since(tenant_id, midnight) if budget is not None else 0.0
        starts: list[Start] = []
        for job in admitted:
            files = [c for c in children.get(job.id, []) if c.media_id is not None]
            facts = [_facts(rows.get(c.media_id or ""), c) for c in files]
            est = job_estimate(config, facts, job.steps, calibration=factors)
            held = self.held(job, est, config, used, midnight)
            if held:
                continue
            used += est.gpu_s
            plans = [
                planned(child, step, amount)
                for child, file in zip(files, facts, strict=True)
                for step in function_steps(job.steps)
                if step in self._per_file
                and (amount := units(file, step, config.analysis.max_frames_per_minute)) is not None
            ]
            events = (
                []
                if job.started_at is not None
                else [start_event(c, rows.get(c.media_id or "")) for c in files]
            )
            starts.append(
                Start(job, est.model_dump(mode="json"), plans, [e for e in events if e is not None])
            )
        return self._jobs.start_many(scope, starts)

    def held(self, job: Job, est: Estimate, config: RuntimeConfig, used: float, midnight: datetime) -> bool:
        """Put a job back in the queue until tomorrow (GPU budget) or before an approver; True if so."""
        scope = Scope.for_case(job.tenant_id, job.case_id, ACTOR)
        budget = config.jobs.gpu_seconds_per_day
        if budget is not None and est.gpu_s > 0 and used + est.gpu_s > budget:
            reason = (
                f"the tenant's GPU-seconds for today are used ({used:.0f} of {budget:.0f} s; "
                f"this job needs {est.gpu_s:.0f} s): held until tomorrow"
            )
            fields = {"hold_until": midnight + timedelta(days=1), "estimate": est.model_dump(mode="json")}
            self._jobs.move(scope, job.id, JobPhase.QUEUED, reason=reason, fields=fields)
            return True
        above = config.jobs.approval_above_cost
        if (job.require_approval or (above is not None and est.cost > above)) and job.approved_by is None:
            why = (
                "the job asks for approval"
                if job.require_approval
                else f"estimated cost {est.cost:.2f} {est.currency} is above {above:.2f}"
            )
            fields = {"estimate": est.model_dump(mode="json")}
            self._jobs.move(scope, job.id, JobPhase.AWAITING_APPROVAL, reason=why, fields=fields)
            return True
        return False


def _queued_since(job: Job) -> datetime:
    """When a queued job last entered the queue (its last move) or its hold ended, if later."""
    entered = job.updated_at or job.created_at
    return entered if job.hold_until is None else max(entered, job.hold_until)


def _facts(media: Media | None, child: Job) -> MediaFacts:
    return (
        facts_of(media) if media is not None else MediaFacts(media_id=child.media_id or "", kind=None, size=0)
    )


def start_event(child: Job, media: Media | None) -> CloudEvent | None:
    """The file's ``media.uploaded`` as the scheduler sends it, its id derived from the child job's
    (None for a file removed since)."""
    if media is None:
        return None
    data = MediaUploaded(
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
    return make_event(data, source=SOURCE, subject=media.id, event_id=derived_event_id(child.id, data.TYPE))


def _in_hours(hours: tuple[int, int] | None, now: datetime) -> bool:
    if hours is None:
        return True
    start, end = hours
    return start <= now.hour < end if start <= end else (now.hour >= start or now.hour < end)
