"""Helpers of the job kernel's tests: a tenant with a case, files and jobs made through the
repositories, jobs moved along the state machine, threads started at one moment, and reads of rows
and outbox entries behind the repositories' backs."""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import func, insert, select, update

from aima.access.scope import Scope
from aima.config.service import ConfigService
from aima.domain import Job, JobPhase, MediaKind
from aima.storage.audit import AuditLog
from aima.storage.cache import MemoryCache
from aima.storage.jobs import JobOptions, JobRepository
from aima.storage.media import MediaRepository
from aima.storage.relational import Database
from aima.storage.schema import cases, job_steps, jobs, outbox, utcnow
from aima.storage.scoped import scoped_session, unscoped_session
from events.envelope import CloudEvent

T = TypeVar("T")
REASON = "the job kernel's tests read rows behind the repositories"
ACTOR = "test"
_UNSET = object()

PATH: dict[JobPhase, tuple[JobPhase, ...]] = {
    JobPhase.QUEUED: (),
    JobPhase.ESTIMATING: (JobPhase.ESTIMATING,),
    JobPhase.AWAITING_APPROVAL: (JobPhase.ESTIMATING, JobPhase.AWAITING_APPROVAL),
    JobPhase.RUNNING: (JobPhase.ESTIMATING, JobPhase.RUNNING),
    JobPhase.SUCCEEDED: (JobPhase.ESTIMATING, JobPhase.RUNNING, JobPhase.SUCCEEDED),
    JobPhase.PARTIALLY_SUCCEEDED: (JobPhase.ESTIMATING, JobPhase.RUNNING, JobPhase.PARTIALLY_SUCCEEDED),
    JobPhase.FAILED: (JobPhase.ESTIMATING, JobPhase.RUNNING, JobPhase.FAILED),
    JobPhase.CANCELLED: (JobPhase.ESTIMATING, JobPhase.RUNNING, JobPhase.CANCELLED),
}
"""How a new (queued) job reaches each phase through allowed moves."""


@dataclass(frozen=True)
class Tenant:
    """A tenant of its own with one case, in ``db``."""

    db: Database
    tenant_id: str
    case_id: str

    @property
    def scope(self) -> Scope:
        return Scope.for_case(self.tenant_id, self.case_id, ACTOR)

    @property
    def jobs(self) -> JobRepository:
        return JobRepository(self.db)


def new_tenant(db: Database, name: str = "jobs") -> Tenant:
    """A fresh tenant id and a case of it (inserted in the tenant's scope)."""
    tenant_id = f"{name}-{uuid.uuid4().hex[:12]}"
    case_id = str(uuid.uuid4())
    with scoped_session(db, Scope.for_tenant(tenant_id, ACTOR)) as session:
        session.execute(insert(cases).values(id=case_id, tenant_id=tenant_id, name=f"{name} case"))
    return Tenant(db, tenant_id, case_id)


def add_file(
    tenant: Tenant,
    *,
    kind: MediaKind = MediaKind.VIDEO,
    size: int = 4_000_000,
    content_type: str = "video/mp4",
    duration_s: float | None = None,
) -> str:
    """A media row as ingest stores it (probed, with ``duration_s``, when given); returns its id."""
    media_id = str(uuid.uuid4())
    repo = MediaRepository(tenant.db)
    repo.add(
        tenant.scope,
        case_id=tenant.case_id,
        media_id=media_id,
        sha256=hashlib.sha256(media_id.encode()).hexdigest(),
        size=size,
        content_type=content_type,
        kind=kind.value,
        filename=None,
        object_key=f"cases/{tenant.case_id}/media/{media_id}/original",
    )
    if duration_s is not None:
        repo.set_probed(tenant.scope, media_id, kind=kind.value, metadata={"duration_s": duration_s})
    return media_id


def new_job(
    tenant: Tenant,
    steps: tuple[str, ...] = ("probe",),
    *,
    files: int = 1,
    options: JobOptions | None = None,
    **file: Any,
) -> tuple[Job, list[Job]]:
    """A queued parent job with ``files`` children, one per new media row (``file``: its facts)."""
    repo = tenant.jobs
    parent = repo.create_parent(tenant.scope, tenant.case_id, steps, options)
    children = [
        repo.create_child(tenant.scope, tenant.case_id, parent.id, add_file(tenant, **file))
        for _ in range(files)
    ]
    return parent, children


def bring_to(tenant: Tenant, job_id: str, phase: JobPhase) -> None:
    """Move a queued job to ``phase`` through allowed moves (`PATH`)."""
    for step in PATH[phase]:
        tenant.jobs.move(tenant.scope, job_id, step)


def set_phase(db: Database, job_id: str, phase: JobPhase) -> None:
    """Put a job and its children into ``phase`` with one UPDATE (the times a move there would set)."""
    now = utcnow()
    values: dict[str, Any] = {"state": phase.value, "updated_at": now}
    if JobPhase.RUNNING in PATH[phase]:
        values["started_at"] = now
    if phase.final:
        values["finished_at"] = now
    with unscoped_session(db, reason=REASON) as session:
        session.execute(update(jobs).where(jobs.c.id == job_id).values(values))
        session.execute(update(jobs).where(jobs.c.parent_job_id == job_id).values(state=phase.value))


def snapshot(db: Database, parent_id: str) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    """In one read: the parent's row, its children's rows and the outbox's newest sequence number."""
    with unscoped_session(db, reason=REASON, readonly=True) as session:
        parent = dict(session.execute(select(jobs).where(jobs.c.id == parent_id)).mappings().one())
        kids = session.execute(select(jobs).where(jobs.c.parent_job_id == parent_id).order_by(jobs.c.id))
        mark = session.execute(select(func.coalesce(func.max(outbox.c.seq), 0))).scalar_one()
        return parent, [dict(row) for row in kids.mappings()], int(mark)


def job_row(db: Database, job_id: str) -> dict[str, Any]:
    """The ``jobs`` row, every column."""
    with unscoped_session(db, reason=REASON, readonly=True) as session:
        return dict(session.execute(select(jobs).where(jobs.c.id == job_id)).mappings().one())


def step_row(db: Database, job_id: str, step: str) -> dict[str, Any] | None:
    """The ``job_steps`` row of (child job, step), or None."""
    with unscoped_session(db, reason=REASON, readonly=True) as session:
        row = (
            session.execute(select(job_steps).where(job_steps.c.job_id == job_id, job_steps.c.step == step))
            .mappings()
            .first()
        )
        return None if row is None else dict(row)


def phases(db: Database, job_ids: list[str]) -> dict[str, str]:
    """job id -> its state."""
    with unscoped_session(db, reason=REASON, readonly=True) as session:
        rows = session.execute(select(jobs.c.id, jobs.c.state).where(jobs.c.id.in_(job_ids)))
        return {row.id: row.state for row in rows}


def outbox_mark(db: Database) -> int:
    """The newest outbox row's sequence number (0: none); `outbox_since` reads what came after."""
    with db.session(readonly=True) as session:
        return int(session.execute(select(func.coalesce(func.max(outbox.c.seq), 0))).scalar_one())


def outbox_since(db: Database, mark: int) -> list[CloudEvent]:
    """Events written to the outbox after ``mark``, in order."""
    with db.session(readonly=True) as session:
        rows = session.execute(select(outbox.c.body).where(outbox.c.seq > mark).order_by(outbox.c.seq))
        return [CloudEvent.from_json(row.body) for row in rows]


def race(n: int, work: Callable[[int], T]) -> list[T | Exception]:
    """Run ``work(0..n-1)`` on ``n`` threads released at one moment; each one's result or exception."""
    barrier = threading.Barrier(n)
    results: list[Any] = [_UNSET] * n

    def run(i: int) -> None:
        barrier.wait(timeout=10)
        try:
            results[i] = work(i)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive(), "a racing thread hung"
    assert _UNSET not in results
    return results


def config_service(db: Database) -> ConfigService:
    """The real configuration service on ``db`` (an in-process cache)."""
    return ConfigService(db, MemoryCache(), AuditLog(db))


def configure(service: ConfigService, tenant_id: str, key: str, value: Mapping[str, Any]) -> None:
    """Set the tenant's section ``key`` through the configuration service, as an admin would."""
    current = service.get(key, tenant_id)[0]
    service.set(key, {**current, **value}, actor=ACTOR, tenant_id=tenant_id, audit_tenant_id=tenant_id)
