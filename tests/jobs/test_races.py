"""Workers racing for one step and movers racing for one job, on SQLite and PostgreSQL: the
conditional UPDATEs let exactly one win, every loser is refused, and a lease that ran out is taken
over by exactly one new worker."""

from __future__ import annotations

import time

import pytest

from aima.domain import JobPhase, StepState
from aima.storage.job_steps import JobSteps, StepBusy, StepEnded
from aima.storage.jobs import InvalidTransition
from aima.storage.relational import Database
from events.catalogue import JobFinished
from tests.jobs.support import (
    bring_to,
    job_row,
    new_job,
    new_tenant,
    outbox_mark,
    outbox_since,
    race,
    step_row,
)

STEP = "faces"


@pytest.mark.parametrize("workers", [2, 8])
@pytest.mark.parametrize("planned", [True, False], ids=["planned", "unplanned"])
def test_one_of_the_workers_racing_for_a_step_begins_it(db: Database, workers: int, planned: bool) -> None:
    """N workers begin one (child, step) at once: one gets attempt 1, all others StepBusy; the row
    names the winner. Holds for a planned step and for one nobody planned (the row is inserted)."""
    tenant = new_tenant(db)
    parent, (child,) = new_job(tenant, (STEP,))
    bring_to(tenant, parent.id, JobPhase.RUNNING)
    steps = JobSteps(db)
    if planned:
        steps.plan(tenant.scope, child, {STEP: 30.0})

    results = race(workers, lambda i: steps.begin(tenant.scope, child, STEP, worker=f"w{i}", lease_s=60))

    winners = [i for i, r in enumerate(results) if r == 1]
    assert len(winners) == 1, results
    assert all(isinstance(r, StepBusy) for i, r in enumerate(results) if i != winners[0]), results
    row = step_row(db, child.id, STEP)
    assert row is not None
    assert (row["state"], row["attempts"], row["worker"]) == ("running", 1, f"w{winners[0]}")


@pytest.mark.parametrize("workers", [2, 8])
def test_a_step_whose_lease_ran_out_is_taken_over_once(db: Database, workers: int) -> None:
    """A worker begins with a short lease and dies; once the lease ran out N new workers race to take
    the step over: exactly one gets attempt 2, the others StepBusy (a live lease refuses a second
    worker: test_transitions, test_a_step_starts_only_from_pending)."""
    tenant = new_tenant(db)
    _, (child,) = new_job(tenant, (STEP,))
    steps = JobSteps(db)
    steps.plan(tenant.scope, child, {STEP: 30.0})
    assert steps.begin(tenant.scope, child, STEP, worker="dead", lease_s=0.2) == 1
    time.sleep(0.25)

    results = race(workers, lambda i: steps.begin(tenant.scope, child, STEP, worker=f"w{i}", lease_s=60))

    winners = [i for i, r in enumerate(results) if r == 2]
    assert len(winners) == 1, results
    assert all(isinstance(r, StepBusy) for i, r in enumerate(results) if i != winners[0]), results
    row = step_row(db, child.id, STEP)
    assert row is not None
    assert (row["state"], row["attempts"], row["worker"]) == ("running", 2, f"w{winners[0]}")


def test_a_worker_whose_lease_was_taken_over_cannot_end_the_step(db: Database) -> None:
    """A worker whose lease ran out while it worked (and another took the step over) finishes late:
    neither its end nor its giving back touches the step the new worker runs."""
    tenant = new_tenant(db)
    _, (child,) = new_job(tenant, (STEP,))
    steps = JobSteps(db)
    steps.plan(tenant.scope, child, {STEP: 30.0})
    assert steps.begin(tenant.scope, child, STEP, worker="slow", lease_s=0.2) == 1
    time.sleep(0.25)
    assert steps.begin(tenant.scope, child, STEP, worker="new", lease_s=60) == 2

    assert not steps.finish(tenant.scope, child.id, STEP, StepState.SUCCEEDED, worker="slow")
    assert not steps.finish(tenant.scope, child.id, STEP, StepState.PENDING, worker="slow")
    row = step_row(db, child.id, STEP)
    assert row is not None
    assert (row["state"], row["worker"]) == ("running", "new")
    assert steps.finish(tenant.scope, child.id, STEP, StepState.SUCCEEDED, worker="new")


def test_workers_racing_to_end_a_step_record_one_end(db: Database) -> None:
    """Two workers end one running step differently at once: one finish returns True, the other False,
    and the row keeps the winner's end."""
    tenant = new_tenant(db)
    _, (child,) = new_job(tenant, (STEP,))
    steps = JobSteps(db)
    steps.plan(tenant.scope, child, {STEP: 30.0})
    steps.begin(tenant.scope, child, STEP, worker="w", lease_s=60)
    ends = [StepState.SUCCEEDED, StepState.FAILED]

    results = race(2, lambda i: steps.finish(tenant.scope, child.id, STEP, ends[i], reason=f"by {i}"))

    assert sorted(results) == [False, True], results  # type: ignore[type-var]
    winner = results.index(True)
    row = step_row(db, child.id, STEP)
    assert row is not None
    assert (row["state"], row["reason"]) == (ends[winner].value, f"by {winner}")


@pytest.mark.parametrize(
    ("source", "targets"),
    [
        (JobPhase.RUNNING, [JobPhase.SUCCEEDED, JobPhase.FAILED]),
        (JobPhase.QUEUED, [JobPhase.ESTIMATING, JobPhase.SUCCEEDED]),
        (JobPhase.ESTIMATING, [JobPhase.RUNNING, JobPhase.AWAITING_APPROVAL]),
        (
            JobPhase.RUNNING,
            [JobPhase.SUCCEEDED, JobPhase.PARTIALLY_SUCCEEDED, JobPhase.FAILED] * 2
            + [JobPhase.CANCELLED] * 2,
        ),
        (JobPhase.QUEUED, [JobPhase.ESTIMATING] * 8),
    ],
    ids=["running-2", "queued-2", "estimating-2", "running-8", "queued-same-8"],
)
def test_movers_racing_for_one_job_make_one_move(
    db: Database, source: JobPhase, targets: list[JobPhase]
) -> None:
    """Threads move one job to phases that cannot follow one another: exactly one move is made, the
    others get InvalidTransition; the row (and its child) has the winner's phase and the outbox holds
    one announcement."""
    tenant = new_tenant(db)
    parent, (child,) = new_job(tenant)
    bring_to(tenant, parent.id, source)
    mark = outbox_mark(db)

    results = race(len(targets), lambda i: tenant.jobs.move(tenant.scope, parent.id, targets[i]))

    won = [i for i, r in enumerate(results) if not isinstance(r, Exception)]
    assert len(won) == 1, results
    assert all(isinstance(r, InvalidTransition) for i, r in enumerate(results) if i != won[0]), results
    phase = targets[won[0]]
    assert job_row(db, parent.id)["state"] == phase.value
    assert job_row(db, child.id)["state"] == phase.value
    announced = [e.type for e in outbox_since(db, mark)]
    assert announced.count("io.aima.job.progressed.v1") == 1
    assert announced.count(JobFinished.TYPE) == (1 if phase.final else 0)


def _cancel_versus_begin(db: Database) -> None:
    tenant = new_tenant(db)
    parent, (child,) = new_job(tenant, (STEP,))
    bring_to(tenant, parent.id, JobPhase.RUNNING)
    steps = JobSteps(db)
    steps.plan(tenant.scope, child, {STEP: 30.0})

    def work(i: int) -> object:
        if i == 0:
            return tenant.jobs.cancel(tenant.scope, parent.id, by="alice")
        return steps.begin(tenant.scope, child, STEP, worker="w", lease_s=60)

    cancelled, begun = race(2, work)

    assert not isinstance(cancelled, Exception), cancelled
    assert begun == 1 or isinstance(begun, StepEnded), begun
    assert job_row(db, parent.id)["state"] == JobPhase.CANCELLED.value
    row = step_row(db, child.id, STEP)
    assert row is not None
    # a begin that lost sees StepEnded and the step is cancelled; one that won keeps running (its
    # result will be kept), never both
    expected = StepState.RUNNING.value if begun == 1 else StepState.CANCELLED.value
    assert row["state"] == expected


def test_a_cancel_racing_a_workers_begin_leaves_the_step_cancelled(db: Database) -> None:
    """cancel and a worker's begin at once (four rounds): whichever goes first, the job ends Cancelled;
    the step is cancelled unless the begin won, then it runs to its end (cancel stops scheduling, it
    does not undo a step at work)."""
    for _ in range(4):
        _cancel_versus_begin(db)
