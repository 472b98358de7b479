"""The job repository: rows of the ``jobs`` table, always read and written inside a `Scope`.

A bulk upload creates one parent job for the request and one child job per stored file (naming
its media); children inherit the parent's priority. New jobs are ``pending``. Steps are names of
`aima.domain.Step`. Jobs come out as `aima.domain.Job` models.

Creating a job writes ``io.aima.job.created.v1`` to the outbox in the same transaction (its id
derived from the job's), so every creator announces it the same way.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import RowMapping, select

from aima.access.scope import Scope
from aima.domain import Job, JobState, Step
from aima.storage.outbox import Outbox
from aima.storage.relational import Database
from aima.storage.schema import jobs, utcnow
from aima.storage.scoped import guard, scoped_session
from events.catalogue import JobCreated, make_event
from events.envelope import CloudEvent, derived_event_id

SOURCE = "/aima/kernel/jobs"


class JobNotFound(LookupError):
    """The job does not exist within the scope."""


class InvalidTransition(ValueError):
    """The job's state machine does not allow that move."""


class JobRepository:
    """Jobs of one database, confined to the caller's scope."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._outbox = Outbox(db)
        guard(db)

    def create_parent(
        self, scope: Scope, case_id: str, steps: Iterable[str], priority: int = 0, *, announce: bool = True
    ) -> Job:
        """A pending job for a whole request (no media of its own). ``announce=False`` leaves its
        ``job.created`` to the caller (`job_created`), who announces the request's jobs at its end."""
        return self._insert(scope, case_id, None, None, _steps(steps), priority, announce)

    def create_child(
        self,
        scope: Scope,
        case_id: str,
        parent_id: str,
        media_id: str,
        steps: Iterable[str],
        *,
        announce: bool = True,
    ) -> Job:
        """A pending job for one file of ``parent_id``'s request; raises `JobNotFound` for a parent
        outside the scope or of another case."""
        with scoped_session(self._db, scope) as session:
            parent = session.execute(
                select(jobs.c.priority).where(jobs.c.id == parent_id, jobs.c.case_id == case_id)
            ).first()
        if parent is None:
            raise JobNotFound(f"parent job {parent_id} not found in case {case_id}")
        return self._insert(
            scope, case_id, parent_id, media_id, _steps(steps), int(parent.priority), announce
        )

    def get(self, scope: Scope, job_id: str) -> Job | None:
        """The job, or None if it does not exist within the scope."""
        with scoped_session(self._db, scope) as session:
            row = session.execute(select(jobs).where(jobs.c.id == job_id)).mappings().first()
            return None if row is None else _job(row)

    def children(self, scope: Scope, parent_id: str) -> list[Job]:
        """The parent's child jobs, oldest first."""
        with scoped_session(self._db, scope) as session:
            rows = session.execute(
                select(jobs).where(jobs.c.parent_job_id == parent_id).order_by(jobs.c.created_at, jobs.c.id)
            ).mappings()
            return [_job(row) for row in rows]

    def set_state(self, scope: Scope, job_id: str, state: str) -> bool:
        """Move the job to ``state`` (a `JobState` value); False if it is not in the scope.

        Raises `InvalidTransition` unless the domain's state machine (`JobState.can_become`) allows
        the move from the job's current state; the check and the move are one statement.
        """
        target = JobState(state)
        sources = [s.value for s in JobState if s.can_become(target)]
        with scoped_session(self._db, scope) as session:
            updated = session.execute(
                jobs.update()
                .where(jobs.c.id == job_id, jobs.c.state.in_(sources))
                .values(state=target.value, updated_at=utcnow())
                .returning(jobs.c.id)
            )
            if updated.first() is not None:
                return True
            current = session.execute(select(jobs.c.state).where(jobs.c.id == job_id)).scalar()
        if current is None:
            return False
        raise InvalidTransition(f"job {job_id} is {current}; it cannot become {target.value}")

    def delete(self, scope: Scope, job_id: str) -> bool:
        """Remove the job (its children cascade); False if it is not in the scope."""
        with scoped_session(self._db, scope) as session:
            deleted = session.execute(jobs.delete().where(jobs.c.id == job_id).returning(jobs.c.id))
            return deleted.first() is not None

    def _insert(
        self,
        scope: Scope,
        case_id: str,
        parent_id: str | None,
        media_id: str | None,
        steps: list[str],
        priority: int,
        announce: bool = True,
    ) -> Job:
        now = utcnow()
        values = {
            "id": str(uuid.uuid4()),
            "tenant_id": scope.tenant_id,
            "case_id": case_id,
            "parent_job_id": parent_id,
            "media_id": media_id,
            "state": JobState.PENDING.value,
            "steps": steps,
            "priority": priority,
            "created_at": now,
            "updated_at": now,
        }
        job = Job.model_validate(values)
        with scoped_session(self._db, scope) as session:
            session.execute(jobs.insert().values(values))
            if announce:
                self._outbox.add(session, [job_created(job)])
        return job


def job_created(job: Job) -> CloudEvent:
    """The event announcing ``job``; its id is derived from the job's, so it is the same whoever builds it."""
    data = JobCreated(
        tenant_id=job.tenant_id,
        case_id=job.case_id,
        job_id=job.id,
        parent_job_id=job.parent_job_id,
        media_id=job.media_id,
        steps=[step.value for step in job.steps],
        priority=job.priority,
    )
    event_id = derived_event_id(job.id, JobCreated.TYPE)
    return make_event(data, source=SOURCE, subject=job.id, event_id=event_id)


def _steps(steps: Iterable[str]) -> list[str]:
    """Step names, checked against `Step` (ValueError for an unknown one)."""
    return [Step(step).value for step in steps]


def _job(row: RowMapping) -> Job:
    values = {column.name: row[column] for column in jobs.columns}
    values["steps"] = list(values["steps"] or [])
    return Job.model_validate(values)
