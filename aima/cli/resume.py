"""``aima job resume JOB``: pick up a job where it stopped, on this machine's embedded profile.

A job whose ``aima analyze`` was killed (SIGKILL, a power cut) stays ``Running`` with the step that
was running at the time; a cancelled or failed job is final until resumed. Resuming runs every
analysis function in this process, as ``aima analyze`` does, and asks the kernel to resume the job
(`aima.storage.jobs.JobRepository.resume`): its unfinished steps become ``pending`` and the scheduler
re-delivers the job's events (`functions.runtime.replay`), so finished steps and finished chunks
are skipped and only the rest runs. It returns when the job reached a final phase, with its report.
On the cluster profile the running functions do the same on ``POST .../jobs/{id}/resume``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aima.access.scope import Scope
from aima.domain import Job
from aima.reports.model import CaseReport
from aima.settings import Settings
from aima.storage.job_queue import JobQueue
from aima.storage.jobs import JobRepository
from aima.storage.reports import ReportRepository
from aima.telemetry.logging import setup_logging
from functions.runtime.deps import Deps
from functions.runtime.host import Host
from functions.runtime.spec import discover

ACTOR = "aima-cli"


class ResumeRefused(RuntimeError):
    """The job cannot be resumed here (unknown, final, or not on the embedded profile)."""


async def resume_job(
    settings: Settings,
    job_id: str,
    *,
    echo: Callable[[str], None],
    timeout: float = 3600.0,  # noqa: ASYNC109
) -> tuple[Job, CaseReport | None]:
    """Resume ``job_id`` in this process and wait for its end; returns the job and its report."""
    if settings.profile != "embedded":
        raise ResumeRefused("on the cluster profile, resume through the API: POST .../jobs/{id}/resume")
    setup_logging(level="WARNING", json_logs=settings.log_json, service="aima-cli")
    deps = Deps(settings.model_copy(update={"bus": "memory", "delivery": "bus"}))
    steps = [spec for spec in discover().values() if spec.analysis and spec.build is not None]
    host = Host(deps, steps)
    try:
        db = deps.stores.db
        found = JobQueue(db).find(job_id)
        if found is None or found.parent_job_id is not None:
            raise ResumeRefused(f"no job {job_id} (give the job id `aima analyze` printed)")
        scope = Scope.for_case(found.tenant_id, found.case_id, ACTOR)
        await host.start()
        jobs = JobRepository(db)
        try:
            resumed = await asyncio.to_thread(jobs.resume, scope, job_id)
        except ValueError as exc:
            raise ResumeRefused(str(exc)) from None
        echo(f"job {job_id}: {found.phase.value} -> {resumed.phase.value}, resuming its unfinished steps")
        deadline = time.monotonic() + timeout
        while True:
            await deps.relay.flush()
            job = await asyncio.to_thread(jobs.get, scope, job_id)
            if job is not None and job.phase.final:
                break
            if time.monotonic() > deadline:
                raise ResumeRefused(f"job {job_id} did not end within {timeout:.0f} s")
            await asyncio.sleep(0.2)
        report = await asyncio.to_thread(
            ReportRepository(deps.stores.documents).latest, found.tenant_id, found.case_id
        )
        echo(f"job {job_id}: {job.phase.value}" + (f" ({job.reason})" if job.reason else ""))
        if report is not None and report.job_id == job_id:
            echo(f"report v{report.version}")
            return job, report
        return job, None
    finally:
        await host.stop()
