"""The job repository: rows of the ``jobs`` table, always read and written inside a `Scope`.

A request creates one parent job and one child job per stored file (naming its media); children
inherit the parent's priority. A parent starts ``Queued`` and moves through the phases of
`aima.domain.PHASE_TRANSITIONS`; its children follow it. Every move is one conditional UPDATE
(``WHERE state IN (allowed sources)``), so of two workers racing for one move exactly one wins and
the other gets `InvalidTransition`, logged, never applied.

Each change is announced in the same transaction through the outbox: ``io.aima.job.created.v1``
(its id derived from the job's), ``io.aima.job.progressed.v1`` for a phase change,
``io.aima.job.finished.v1`` for a final phase and ``io.aima.job.scheduling.requested.v1`` when the
queue should be looked at again (an approval, a resume, a cancellation).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from aima.access.scope import Scope
from aima.domain import FINAL_PHASES, Job, JobPhase, Priority, Step, StepState
from aima.storage.outbox import Outbox
from aima.storage.relational import Database, insert_new
from aima.storage.schema import job_steps, jobs, utcnow
from aima.storage.scoped import guard, scoped_session
from events.catalogue import (
    EventData,
    JobCreated,
    JobFinished,
    JobProgressed,
    SchedulingRequested,
    make_event,
)
from events.envelope import CloudEvent, derived_event_id

SOURCE = "/aima/kernel/jobs"
log = logging.getLogger(__name__)


class JobNotFound(LookupError):
    """The job does not exist within the scope."""


class InvalidTransition(ValueError):
    """The job's state machine does not allow that move (or another worker made it first)."""


class DuplicateReference(ValueError):
    """A job with this reference exists already (`JobRepository.by_reference` finds it)."""


@dataclass(frozen=True)
class Start:
    """An admitted job to run: its estimate, its files' planned step rows, its start events."""

    job: Job
    estimate: dict[str, Any]
    steps: list[dict[str, Any]]
    events: list[CloudEvent]


@dataclass(frozen=True)
class JobOptions:
    """What a submitter may choose for a parent job."""

    priority: Priority = Priority.NORMAL
    hold_until: datetime | None = None
    require_approval: bool = False
    approved_by: str | None = None
    context: str | None = None
    language: str | None = None
    reference: str | None = None
    submitted_by: str | None = None


class JobRepository:
    """Jobs of one database, confined to the caller's scope."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._outbox = Outbox(db)
        guard(db)

    # --- creating ------------------------------------------------------------------------------

    def create_parent(
        self,
        scope: Scope,
        case_id: str,
        steps: Iterable[str],
        options: JobOptions | None = None,
        *,
        announce: bool = True,
    ) -> Job:
        """A queued job for a whole request (no media of its own). ``announce=False`` leaves its
        ``job.created`` to the caller (`job_created`), who announces the request's jobs at its end.
        Raises `DuplicateReference` for a reference the tenant used before."""
        opts = options or JobOptions()
        values = _values(scope, case_id, None, None, _steps(steps), opts)
        try:
            return self._insert(scope, values, announce)
        except IntegrityError:
            if opts.reference is not None and self.by_reference(scope, opts.reference) is not None:
                raise DuplicateReference(opts.reference) from None
            raise

    def create_child(
        self,
        scope: Scope,
        case_id: str,
        parent_id: str,
        media_id: str,
        steps: Iterable[str] | None = None,
        *,
        announce: bool = True,
    ) -> Job:
        """A queued job for one file of ``parent_id``'s request (the parent's steps unless given);
        raises `JobNotFound` for a parent outside the scope or of another case."""
        parent = self.get(scope, parent_id)
        if parent is None or parent.case_id != case_id:
            raise JobNotFound(f"parent job {parent_id} not found in case {case_id}")
        opts = JobOptions(priority=parent.priority)
        chosen = _steps(steps) if steps is not None else [s.value for s in parent.steps]
        values = _values(scope, case_id, parent_id, media_id, chosen, opts)
        values["state"] = parent.phase.value
        return self._insert(scope, values, announce)

    # --- reading -------------------------------------------------------------------------------

    def get(self, scope: Scope, job_id: str) -> Job | None:
        """The job, or None if it does not exist within the scope."""
        with scoped_session(self._db, scope, readonly=True) as session:
            row = session.execute(select(jobs).where(jobs.c.id == job_id)).mappings().first()
            return None if row is None else job_of(row)

    def by_reference(self, scope: Scope, reference: str) -> Job | None:
        """The tenant's job submitted with ``reference``, if any."""
        with scoped_session(self._db, scope, readonly=True) as session:
            row = session.execute(select(jobs).where(jobs.c.reference == reference)).mappings().first()
            return None if row is None else job_of(row)

    def children(self, scope: Scope, parent_id: str) -> list[Job]:
        """The parent's child jobs, oldest first."""
        with scoped_session(self._db, scope, readonly=True) as session:
            rows = session.execute(
                select(jobs).where(jobs.c.parent_job_id == parent_id).order_by(jobs.c.created_at, jobs.c.id)
            ).mappings()
            return [job_of(row) for row in rows]

    def children_of(self, scope: Scope, parent_ids: Iterable[str]) -> dict[str, list[Job]]:
        """The child jobs of several parents (one query), oldest first, by parent."""
        wanted = list(dict.fromkeys(parent_ids))
        found: dict[str, list[Job]] = {parent: [] for parent in wanted}
        if not wanted:
            return found
        with scoped_session(self._db, scope, readonly=True) as session:
            rows = session.execute(
                select(jobs).where(jobs.c.parent_job_id.in_(wanted)).order_by(jobs.c.created_at, jobs.c.id)
            ).mappings()
            for row in rows:
                found[str(row["parent_job_id"])].append(job_of(row))
        return found

    def parents(self, scope: Scope, case_id: str, *, limit: int = 100) -> list[Job]:
        """The case's parent jobs, newest first."""
        with scoped_session(self._db, scope, readonly=True) as session:
            rows = session.execute(
                select(jobs)
                .where(jobs.c.case_id == case_id, jobs.c.parent_job_id.is_(None))
                .order_by(jobs.c.created_at.desc(), jobs.c.id)
                .limit(limit)
            ).mappings()
            return [job_of(row) for row in rows]

    # --- moving --------------------------------------------------------------------------------

    def move(
        self,
        scope: Scope,
        job_id: str,
        phase: JobPhase,
        *,
        reason: str | None = None,
        fields: Mapping[str, Any] | None = None,
        events: Iterable[EventData | CloudEvent] = (),
    ) -> Job:
        """Move a parent job (and its children) to ``phase``; returns the moved job.

        One conditional UPDATE checks the move against the state machine, so a refused or lost
        race raises `InvalidTransition` (logged) and changes nothing; `JobNotFound` outside the
        scope. ``fields`` are set with the move; ``events`` and the phase's own announcements go to
        the outbox in the same transaction.
        """
        with scoped_session(self._db, scope) as session:
            moved = self.move_in(session, job_id, phase, reason=reason, fields=fields)
            announced = [*announce_phase(moved), *events]
            self._outbox.add(session, [e if isinstance(e, CloudEvent) else self._event(e) for e in announced])
            return moved

    def move_in(
        self,
        session: Session,
        job_id: str,
        phase: JobPhase,
        *,
        reason: str | None = None,
        fields: Mapping[str, Any] | None = None,
        only_from: Iterable[JobPhase] | None = None,
    ) -> Job:
        """`move` inside the caller's transaction, announcing nothing; ``only_from`` narrows the
        phases the move may start from (approve: only ``AwaitingApproval``)."""
        allowed = set(only_from) if only_from is not None else set(JobPhase)
        sources = [p.value for p in JobPhase if p.can_become(phase) and p in allowed]
        now = utcnow()
        values: dict[str, Any] = {"state": phase.value, "updated_at": now, **(fields or {})}
        if reason is not None:
            values["reason"] = reason[:2000]
        if phase is JobPhase.RUNNING:
            values.setdefault("started_at", now)
        if phase in FINAL_PHASES:
            values.setdefault("finished_at", now)
        row = (
            session.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.parent_job_id.is_(None), jobs.c.state.in_(sources))
                .values(values)
                .returning(*jobs.c)
            )
            .mappings()
            .first()
        )
        if row is None:
            current = session.execute(select(jobs.c.state).where(jobs.c.id == job_id)).scalar()
            if current is None:
                raise JobNotFound(f"job {job_id} not found")
            log.warning(
                "job transition refused", extra={"job_id": job_id, "from": current, "to": phase.value}
            )
            raise InvalidTransition(f"job {job_id} is {current}; it cannot become {phase.value}")
        session.execute(
            update(jobs).where(jobs.c.parent_job_id == job_id).values(state=phase.value, updated_at=now)
        )
        return job_of(row)

    def cancel(self, scope: Scope, job_id: str, *, by: str, reason: str | None = None) -> Job:
        """Stop scheduling the job at once: its phase becomes ``Cancelled`` and every step that has not
        started ``cancelled``; a step running now ends as it ends (its result is kept, as is what
        finished). Raises `InvalidTransition` for a final job."""
        with scoped_session(self._db, scope) as session:
            moved = self.move_in(session, job_id, JobPhase.CANCELLED, reason=reason or f"cancelled by {by}")
            session.execute(
                update(job_steps)
                .where(job_steps.c.parent_job_id == job_id, job_steps.c.state == StepState.PENDING.value)
                .values(state=StepState.CANCELLED.value, reason=f"job cancelled by {by}", updated_at=utcnow())
            )
            events = [*announce_phase(moved), SchedulingRequested(tenant_id=scope.tenant_id, reason="cancel")]
            self._outbox.add(session, [self._event(e) for e in events])
            return moved

    def approve(self, scope: Scope, job_id: str, *, by: str) -> Job:
        """Approve a job that awaits approval: it goes back to the queue, approved."""
        fields = {"approved_by": by[:200], "approved_at": utcnow()}
        with scoped_session(self._db, scope) as session:
            moved = self.move_in(
                session,
                job_id,
                JobPhase.QUEUED,
                reason=f"approved by {by}",
                fields=fields,
                only_from=[JobPhase.AWAITING_APPROVAL],
            )
            events = [
                *announce_phase(moved),
                SchedulingRequested(tenant_id=scope.tenant_id, reason="approve"),
            ]
            self._outbox.add(session, [self._event(e) for e in events])
            return moved

    def resume(self, scope: Scope, job_id: str) -> Job:
        """Queue a cancelled or failed job again, or pick up a running one whose worker died.

        Steps that did not end well (``running``, ``failed``, ``cancelled``) become ``pending``;
        finished ones stay finished and are skipped. A running job keeps its phase.
        """
        job = self.get(scope, job_id)
        if job is None or job.parent_job_id is not None:
            raise JobNotFound(f"job {job_id} not found")
        with scoped_session(self._db, scope) as session:
            if job.phase is JobPhase.RUNNING:
                moved = job
            else:
                moved = self.move_in(
                    session,
                    job_id,
                    JobPhase.QUEUED,
                    reason="resumed",
                    fields={"finished_at": None},
                    only_from=[JobPhase.CANCELLED, JobPhase.FAILED],
                )
            session.execute(
                update(job_steps)
                .where(
                    job_steps.c.parent_job_id == job_id,
                    job_steps.c.state.in_(
                        [StepState.RUNNING.value, StepState.FAILED.value, StepState.CANCELLED.value]
                    ),
                )
                .values(state=StepState.PENDING.value, lease_until=None, worker=None, updated_at=utcnow())
            )
            events: list[EventData] = [
                SchedulingRequested(
                    tenant_id=scope.tenant_id, case_id=job.case_id, job_id=job.id, reason="resume"
                )
            ]
            if moved is not job:
                events += announce_phase(moved)
            self._outbox.add(session, [self._event(e) for e in events])
            return moved

    def start_many(self, scope: Scope, starts: Sequence[Start]) -> list[Job]:
        """Move admitted jobs ``Estimating → Running`` with their estimates, plan their files' steps
        and write their start events, all in one transaction of a few statements whatever their
        number; a job moved by someone else meanwhile (cancelled while it was estimated) is left
        out. Returns the started jobs."""
        if not starts:
            return []
        now = utcnow()
        by_id = {start.job.id: start for start in starts}
        with scoped_session(self._db, scope) as session:
            moved_rows = (
                session.execute(
                    update(jobs)
                    .where(
                        jobs.c.id.in_(list(by_id)),
                        jobs.c.parent_job_id.is_(None),
                        jobs.c.state == JobPhase.ESTIMATING.value,
                    )
                    .values(
                        state=JobPhase.RUNNING.value,
                        reason=None,
                        updated_at=now,
                        started_at=func.coalesce(jobs.c.started_at, now),
                    )
                    .returning(*jobs.c)
                )
                .mappings()
                .all()
            )
            moved = {str(row["id"]): row for row in moved_rows}
            if len(moved) < len(by_id):
                log.info(
                    "jobs moved elsewhere while estimated", extra={"jobs": sorted(set(by_id) - set(moved))}
                )
            if not moved:
                return []
            session.execute(
                update(jobs).where(jobs.c.id == bindparam("b_id")).values(estimate=bindparam("b_estimate")),
                [{"b_id": job_id, "b_estimate": by_id[job_id].estimate} for job_id in moved],
            )
            session.execute(
                update(jobs)
                .where(jobs.c.parent_job_id.in_(list(moved)))
                .values(state=JobPhase.RUNNING.value, updated_at=now)
            )
            started = [job_of(moved[start.job.id]) for start in starts if start.job.id in moved]
            started = [job.model_copy(update={"estimate": by_id[job.id].estimate}) for job in started]
            steps_rows = [{**row, "updated_at": now} for job in started for row in by_id[job.id].steps]
            if steps_rows:
                session.execute(insert_new(session, job_steps, ["job_id", "step"]), steps_rows)
            events: list[CloudEvent] = []
            for job in started:
                events += [self._event(e) for e in announce_phase(job)] + list(by_id[job.id].events)
            self._outbox.add(session, events)
        return started

    def set_fields(self, scope: Scope, job_id: str, **fields: Any) -> None:
        """Record facts about a job that are not a move (its estimate, what it used)."""
        with scoped_session(self._db, scope) as session:
            session.execute(update(jobs).where(jobs.c.id == job_id).values(updated_at=utcnow(), **fields))

    def delete(self, scope: Scope, job_id: str) -> bool:
        """Remove the job (its children cascade); False if it is not in the scope."""
        with scoped_session(self._db, scope) as session:
            deleted = session.execute(jobs.delete().where(jobs.c.id == job_id).returning(jobs.c.id))
            return deleted.first() is not None

    # --- internals -----------------------------------------------------------------------------

    def _insert(self, scope: Scope, values: dict[str, Any], announce: bool) -> Job:
        job = Job.model_validate(_model_values(values))
        with scoped_session(self._db, scope) as session:
            session.execute(jobs.insert().values(values))
            if announce:
                self._outbox.add(session, [job_created(job)])
        return job

    @staticmethod
    def _event(data: EventData) -> CloudEvent:
        return make_event(data, source=SOURCE, subject=getattr(data, "job_id", None))


def announce_phase(job: Job) -> list[EventData]:
    """What a move of ``job`` to its phase announces: progress, and the end for a final phase."""
    out: list[EventData] = [
        JobProgressed(
            tenant_id=job.tenant_id,
            case_id=job.case_id,
            job_id=job.id,
            phase=job.phase,
            progress=1.0 if job.phase in FINAL_PHASES else 0.0,
        )
    ]
    if job.phase in FINAL_PHASES:
        out.append(
            JobFinished(
                tenant_id=job.tenant_id,
                case_id=job.case_id,
                job_id=job.id,
                phase=job.phase.value,
                reason=job.reason,
                finished_at=job.finished_at,
            )
        )
    return out


def job_created(job: Job) -> CloudEvent:
    """The event announcing ``job``; its id is derived from the job's, so it is the same whoever builds it."""
    data = JobCreated(
        tenant_id=job.tenant_id,
        case_id=job.case_id,
        job_id=job.id,
        parent_job_id=job.parent_job_id,
        media_id=job.media_id,
        steps=[step.value for step in job.steps],
        priority=job.priority.value,
    )
    event_id = derived_event_id(job.id, JobCreated.TYPE)
    return make_event(data, source=SOURCE, subject=job.id, event_id=event_id)


def job_of(row: RowMapping) -> Job:
    """A `Job` from a ``jobs`` row."""
    return Job.model_validate(_model_values({column.name: row[column] for column in jobs.columns}))


def _model_values(values: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(values)
    out["phase"] = out.pop("state")
    out["priority"] = Priority.of_rank(int(out["priority"]))
    out["steps"] = list(out.get("steps") or [])
    out["require_approval"] = bool(out.get("require_approval") or False)
    return out


def _values(
    scope: Scope,
    case_id: str,
    parent_id: str | None,
    media_id: str | None,
    steps: list[str],
    opts: JobOptions,
) -> dict[str, Any]:
    now = utcnow()
    return {
        "id": str(uuid.uuid4()),
        "tenant_id": scope.tenant_id,
        "case_id": case_id,
        "parent_job_id": parent_id,
        "media_id": media_id,
        "state": JobPhase.QUEUED.value,
        "steps": steps,
        "priority": opts.priority.rank,
        "hold_until": opts.hold_until,
        "require_approval": opts.require_approval,
        "approved_by": opts.approved_by,
        "approved_at": now if opts.approved_by else None,
        "context": opts.context,
        "language": opts.language,
        "reference": opts.reference if parent_id is None else None,
        "submitted_by": opts.submitted_by,
        "created_at": now,
        "updated_at": now,
    }


def _steps(steps: Iterable[str]) -> list[str]:
    """Step names, checked against `Step` (ValueError for an unknown one)."""
    return [Step(step).value for step in steps]
