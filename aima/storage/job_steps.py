"""Step states per file: rows of ``job_steps``, one per (child job, step), read and written in a `Scope`.

The scheduler plans a child's steps ``pending`` when it starts the job; the runtime moves each one
``running`` when a worker begins it and to its end (``succeeded``, ``failed``, ``not_run``,
``cancelled``) when it ends (`aima.domain.STEP_TRANSITIONS`). A running step holds a lease: a second
worker that receives the same step's event while the lease holds is refused (`StepBusy`, logged), and
one whose worker died (SIGKILL, a lost node) can be taken over once the lease ran out, or at once
after a resume. Every move is one conditional UPDATE, so two workers racing never both win.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, literal, or_, select, update

from aima.access.scope import Scope
from aima.domain import Job, StepState
from aima.storage.relational import Database, insert_new
from aima.storage.schema import job_steps, jobs, utcnow
from aima.storage.scoped import guard, scoped_session

log = logging.getLogger(__name__)
KEYS = ("job_id", "step")


class StepBusy(RuntimeError):
    """Another worker is running this step of this file and its lease still holds."""


class StepEnded(ValueError):
    """The step ended already; the state machine does not let it start or end again."""


@dataclass(frozen=True)
class StepRun:
    """One step of one file."""

    job_id: str
    parent_job_id: str
    step: str
    state: StepState
    attempts: int
    worker: str | None
    started_at: datetime | None
    finished_at: datetime | None
    seconds: float | None
    units: float | None
    reason: str | None


class JobSteps:
    """The ``job_steps`` table of one database (see module docstring)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        guard(db)

    def plan(self, scope: Scope, child: Job, units: Mapping[str, float]) -> None:
        """Add ``pending`` rows for the child's steps (``units``: step -> the work it will do);
        rows that exist stay as they are."""
        if child.parent_job_id is None or not units:
            return
        rows = [planned(child, step, amount) for step, amount in units.items()]
        with scoped_session(self._db, scope) as session:
            session.execute(insert_new(session, job_steps, KEYS), rows)

    def begin(self, scope: Scope, child: Job, step: str, *, worker: str, lease_s: float) -> int:
        """Mark the step ``running`` for ``worker``; returns the attempt number.

        Raises `StepBusy` while another worker's lease holds and `StepEnded` for a step that
        ended; a step nobody planned (a job started before this ledger) gets its row now.
        """
        now = utcnow()
        lease = now + timedelta(seconds=lease_s)
        where = and_(job_steps.c.job_id == child.id, job_steps.c.step == step)
        takeable = or_(
            job_steps.c.state == StepState.PENDING.value,
            and_(job_steps.c.state == StepState.RUNNING.value, job_steps.c.lease_until < now),
        )
        with scoped_session(self._db, scope) as session:
            attempt = session.execute(
                update(job_steps)
                .where(where, takeable)
                .values(
                    state=StepState.RUNNING.value,
                    attempts=job_steps.c.attempts + 1,
                    worker=worker[:200],
                    lease_until=lease,
                    started_at=now,
                    finished_at=None,
                    reason=None,
                    updated_at=now,
                )
                .returning(job_steps.c.attempts)
            ).scalar()
            if attempt is not None:
                return int(attempt)
            current = session.execute(select(job_steps.c.state, job_steps.c.worker).where(where)).first()
            if current is None and child.parent_job_id is not None:
                row = planned(child, step, None) | {
                    "state": StepState.RUNNING.value,
                    "attempts": 1,
                    "worker": worker[:200],
                    "lease_until": lease,
                    "started_at": now,
                    "updated_at": now,
                }
                inserted = session.execute(
                    insert_new(session, job_steps, KEYS).values(row).returning(job_steps.c.attempts)
                ).scalar()
                if inserted is not None:
                    return 1
                current = session.execute(select(job_steps.c.state, job_steps.c.worker).where(where)).first()
        if current is None:
            raise StepEnded(f"{step} of job {child.id}: the job has no such step")
        state = StepState(current.state)
        extra = {"job_id": child.id, "step": step, "state": state.value, "worker": worker}
        log.warning("step start refused", extra=extra)
        if state is StepState.RUNNING:
            raise StepBusy(f"{step} of job {child.id} is running on {current.worker}")
        raise StepEnded(f"{step} of job {child.id} is {state.value}; it cannot start again")

    def finish(
        self,
        scope: Scope,
        child_id: str,
        step: str,
        state: StepState,
        *,
        reason: str | None = None,
        units: float | None = None,
        worker: str | None = None,
    ) -> bool:
        """End the step in ``state``; False (logged, nothing changed) when the state machine refuses
        the move, e.g. a cancelled step whose worker finished anyway (its results are kept), or when
        ``worker`` no longer holds the running step (its lease ran out and another took it over)."""
        sources = [s.value for s in StepState if s.can_become(state)]
        now = utcnow()
        values: dict[str, object] = {"state": state.value, "updated_at": now, "lease_until": None}
        if state.ended:
            values["finished_at"] = now
        if reason is not None:
            values["reason"] = reason[:2000]
        if units is not None:
            values["units"] = units
        with scoped_session(self._db, scope) as session:
            row = session.execute(
                update(job_steps)
                .where(
                    job_steps.c.job_id == child_id,
                    job_steps.c.step == step,
                    job_steps.c.state.in_(sources),
                    or_(
                        literal(worker is None),
                        job_steps.c.state != StepState.RUNNING.value,
                        job_steps.c.worker == (worker or "")[:200],
                    ),
                )
                .values(values)
                .returning(job_steps.c.started_at)
            ).first()
            if row is None:
                log.warning(
                    "step transition refused", extra={"job_id": child_id, "step": step, "to": state.value}
                )
                return False
            if state.ended and row.started_at is not None:
                seconds = max(0.0, (now - row.started_at).total_seconds())
                session.execute(
                    update(job_steps)
                    .where(job_steps.c.job_id == child_id, job_steps.c.step == step)
                    .values(seconds=seconds)
                )
            return True

    def record(self, scope: Scope, child: Job, step: str, state: StepState, *, reason: str) -> bool:
        """End a step that does not run (not chosen, its job cancelled), planned or not: a row is
        added ``pending`` where none exists, then moved to ``state``."""
        if child.parent_job_id is not None:
            with scoped_session(self._db, scope) as session:
                session.execute(insert_new(session, job_steps, KEYS).values(planned(child, step, None)))
        return self.finish(scope, child.id, step, state, reason=reason)

    def close_pending(self, scope: Scope, parent_id: str, reason: str) -> int:
        """End the job's steps that never started as ``not_run`` (the probe found nothing for them,
        e.g. no audio track); returns how many."""
        with scoped_session(self._db, scope) as session:
            result = session.execute(
                update(job_steps)
                .where(job_steps.c.parent_job_id == parent_id, job_steps.c.state == StepState.PENDING.value)
                .values(
                    state=StepState.NOT_RUN.value, reason=reason, finished_at=utcnow(), updated_at=utcnow()
                )
                .returning(job_steps.c.step)
            )
            return len(result.all())

    def for_parent(self, scope: Scope, parent_id: str) -> list[StepRun]:
        """Every step of every file of the job."""
        with scoped_session(self._db, scope, readonly=True) as session:
            rows = session.execute(
                select(job_steps)
                .where(job_steps.c.parent_job_id == parent_id)
                .order_by(job_steps.c.job_id, job_steps.c.step)
            ).mappings()
            return [_run(row) for row in rows]

    def phase_of(self, scope: Scope, child_id: str) -> tuple[str, list[str], str | None] | None:
        """The child job's phase, chosen steps and parent, or None when it is not in the scope."""
        with scoped_session(self._db, scope, readonly=True) as session:
            row = session.execute(
                select(jobs.c.state, jobs.c.steps, jobs.c.parent_job_id).where(jobs.c.id == child_id)
            ).first()
        return None if row is None else (str(row.state), list(row.steps or []), row.parent_job_id)


def planned(child: Job, step: str, units: float | None) -> dict[str, Any]:
    """A ``pending`` row for ``step`` of the child job's file, with the work it will do."""
    return {
        "job_id": child.id,
        "step": step,
        "tenant_id": child.tenant_id,
        "case_id": child.case_id,
        "parent_job_id": child.parent_job_id,
        "state": StepState.PENDING.value,
        "attempts": 0,
        "units": units,
        "updated_at": utcnow(),
    }


def measured(runs: Iterable[StepRun]) -> dict[str, list[float]]:
    """Seconds per unit of work of the steps that ran to their end, by step."""
    rates: dict[str, list[float]] = {}
    for run in runs:
        if run.state is StepState.SUCCEEDED and run.seconds is not None and run.units:
            rates.setdefault(run.step, []).append(run.seconds / run.units)
    return rates


def _run(row: Any) -> StepRun:
    return StepRun(
        job_id=str(row["job_id"]),
        parent_job_id=str(row["parent_job_id"]),
        step=str(row["step"]),
        state=StepState(str(row["state"])),
        attempts=int(row["attempts"]),
        worker=row["worker"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        seconds=row["seconds"],
        units=row["units"],
        reason=row["reason"],
    )
