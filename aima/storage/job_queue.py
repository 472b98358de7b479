"""The queue of every tenant's jobs, for the scheduler: which job runs next, and may it.

`waiting` lists queued parent jobs in the order they should start: ``urgent`` first, then ``high``,
``normal`` and ``low``; first come, first served within a class; a job held until later (its
``hold_until``) is not listed before then. `admit` moves one job ``Queued → Estimating`` under a
per-tenant lock (an advisory lock on PostgreSQL; SQLite's writers are serial anyway) after
counting the tenant's admitted jobs, so however many schedulers run, a tenant never has more than
its limit admitted. These are the only cross-tenant reads of jobs: the scheduler is a system
service that acts for every tenant, and its sessions say so (``unscoped_session``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update

from aima.domain import Job, JobPhase
from aima.estimates import Estimate
from aima.storage.jobs import JobRepository, job_of
from aima.storage.relational import Database, transaction_lock
from aima.storage.schema import jobs, utcnow
from aima.storage.scoped import unscoped_session

REASON = "the scheduler admits every tenant's queued jobs"
ACTIVE = [JobPhase.ESTIMATING.value, JobPhase.RUNNING.value]


class JobQueue:
    """Cross-tenant reads and admissions of parent jobs (see module docstring)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._jobs = JobRepository(db)

    def waiting(
        self, *, now: datetime | None = None, limit: int = 500, tenant_id: str | None = None
    ) -> list[Job]:
        """Queued parent jobs in the order they should start (see module docstring)."""
        moment = now or utcnow()
        query = (
            select(jobs)
            .where(
                jobs.c.parent_job_id.is_(None),
                jobs.c.state == JobPhase.QUEUED.value,
                (jobs.c.hold_until.is_(None)) | (jobs.c.hold_until <= moment),
            )
            .order_by(jobs.c.priority.desc(), jobs.c.created_at, jobs.c.id)
            .limit(limit)
        )
        if tenant_id is not None:
            query = query.where(jobs.c.tenant_id == tenant_id)
        with unscoped_session(self._db, reason=REASON, readonly=True) as session:
            return [job_of(row) for row in session.execute(query).mappings()]

    def find(self, job_id: str) -> Job | None:
        """A job by id alone, whatever its tenant (the operator's command line names only the id)."""
        with unscoped_session(self._db, reason="find a job by id for a local operator", readonly=True) as s:
            row = s.execute(select(jobs).where(jobs.c.id == job_id)).mappings().first()
            return None if row is None else job_of(row)

    def active(self, tenant_id: str) -> int:
        """The tenant's admitted jobs (estimating or running)."""
        with unscoped_session(self._db, reason=REASON, readonly=True) as session:
            return int(session.execute(_count_active(tenant_id)).scalar() or 0)

    def admit(self, job: Job, *, max_running: int) -> Job | None:
        """Move ``job`` from the queue to ``Estimating`` if its tenant has a free slot; None if not
        (no slot, or another scheduler took or moved the job first)."""
        admitted = self.admit_many(job.tenant_id, [job], max_running=max_running)
        return admitted[0] if admitted else None

    def admit_many(self, tenant_id: str, candidates: Sequence[Job], *, max_running: int) -> list[Job]:
        """Admit as many of one tenant's ``candidates`` (in their order) as it has free slots, in one
        transaction under the tenant's lock; returns the admitted jobs, ``Estimating``."""
        if not candidates:
            return []
        with unscoped_session(self._db, reason=REASON) as session:
            transaction_lock(session, f"jobs:{tenant_id}")
            free = max_running - int(session.execute(_count_active(tenant_id)).scalar() or 0)
            if free <= 0:
                return []
            ids = [job.id for job in candidates if job.tenant_id == tenant_id][:free]
            now = utcnow()
            rows = session.execute(
                update(jobs)
                .where(
                    jobs.c.id.in_(ids), jobs.c.state == JobPhase.QUEUED.value, jobs.c.parent_job_id.is_(None)
                )
                .values(state=JobPhase.ESTIMATING.value, updated_at=now)
                .returning(*jobs.c)
            ).mappings()
            admitted = {str(row["id"]): job_of(row) for row in rows}
            if admitted:
                session.execute(
                    update(jobs)
                    .where(jobs.c.parent_job_id.in_(list(admitted)))
                    .values(state=JobPhase.ESTIMATING.value, updated_at=now)
                )
        return [admitted[i] for i in ids if i in admitted]

    def gpu_seconds_since(self, tenant_id: str, since: datetime) -> float:
        """Estimated GPU-seconds of the tenant's jobs started (or admitted) since ``since``; a
        finished job counts what it used."""
        query = select(jobs.c.estimate, jobs.c.actual).where(
            jobs.c.tenant_id == tenant_id,
            jobs.c.parent_job_id.is_(None),
            jobs.c.started_at >= since,
        )
        total = 0.0
        with unscoped_session(self._db, reason=REASON, readonly=True) as session:
            for row in session.execute(query):
                used = row.actual or row.estimate or {}
                total += float(used.get("gpu_s", 0.0))
        return total

    def finished_pairs(self, gpu_profile: str, *, limit: int = 50) -> list[tuple[Estimate, Estimate]]:
        """(estimate, actual) of the last finished jobs estimated under ``gpu_profile``."""
        query = (
            select(jobs.c.estimate, jobs.c.actual)
            .where(jobs.c.parent_job_id.is_(None), jobs.c.actual.is_not(None), jobs.c.estimate.is_not(None))
            .order_by(jobs.c.finished_at.desc())
            .limit(limit * 4)
        )
        pairs: list[tuple[Estimate, Estimate]] = []
        with unscoped_session(self._db, reason=REASON, readonly=True) as session:
            for row in session.execute(query):
                est: dict[str, Any] = row.estimate
                if est.get("gpu_profile") != gpu_profile:
                    continue
                pairs.append((Estimate.model_validate(est), Estimate.model_validate(row.actual)))
                if len(pairs) == limit:
                    break
        return pairs


def _count_active(tenant_id: str) -> Any:
    return select(func.count()).where(
        jobs.c.tenant_id == tenant_id, jobs.c.parent_job_id.is_(None), jobs.c.state.in_(ACTIVE)
    )
