"""The job and step state machines as the database enforces them, on SQLite and PostgreSQL: every
pair the machine allows is made, every other one is refused with the row and the outbox untouched;
cancel, approve and resume move only what their contracts say."""

from __future__ import annotations

import pytest

from aima.access.scope import Scope
from aima.domain import (
    FINAL_PHASES,
    PHASE_TRANSITIONS,
    STEP_TRANSITIONS,
    JobPhase,
    StepState,
)
from aima.storage.job_steps import JobSteps, StepBusy, StepEnded
from aima.storage.jobs import InvalidTransition, JobNotFound
from aima.storage.relational import Database
from events.catalogue import JobFinished, JobProgressed, SchedulingRequested
from tests.jobs.support import (
    Tenant,
    bring_to,
    job_row,
    new_job,
    new_tenant,
    outbox_mark,
    outbox_since,
    set_phase,
    snapshot,
    step_row,
)

PHASE_PAIRS = [(a, b) for a in JobPhase for b in JobPhase]
STEP_PAIRS = [(a, b) for a in StepState for b in StepState]
STEP = "probe"


def _pair_id(pair: object) -> str:
    return str(getattr(pair, "value", pair))


def test_the_pairs_cover_both_machines() -> None:
    """The parametrised pairs are every (from, to) of both machines (allowed plus refused is the whole
    square), and the machines are the ones these tests were written for: 17 job moves, 12 step moves."""
    allowed = [(a, b) for a, b in PHASE_PAIRS if b in PHASE_TRANSITIONS[a]]
    assert len(PHASE_PAIRS) == len(JobPhase) ** 2
    assert len(allowed) == sum(len(t) for t in PHASE_TRANSITIONS.values()) == 17
    assert len(STEP_PAIRS) == len(StepState) ** 2
    assert sum(1 for a, b in STEP_PAIRS if b in STEP_TRANSITIONS[a]) == 12


@pytest.mark.parametrize(("source", "target"), PHASE_PAIRS, ids=_pair_id)
def test_a_job_moves_exactly_when_the_machine_allows_it(
    db: Database, source: JobPhase, target: JobPhase
) -> None:
    """A job put into ``source`` (one UPDATE): an allowed move changes the parent and its child and
    announces itself; a refused one raises InvalidTransition, leaves both rows as they were and writes
    nothing to the outbox. (Reaching each phase through real moves is covered by the other tests.)"""
    tenant = new_tenant(db)
    parent, _ = new_job(tenant)
    set_phase(db, parent.id, source)
    before, kids_before, mark = snapshot(db, parent.id)
    assert before["state"] == source.value

    if target in PHASE_TRANSITIONS[source]:
        moved = tenant.jobs.move(tenant.scope, parent.id, target, reason="test move")
        row, kids, _ = snapshot(db, parent.id)
        assert moved.phase is target
        assert row["state"] == target.value
        assert row["reason"] == "test move"
        assert [kid["state"] for kid in kids] == [target.value]
        assert (row["finished_at"] is not None) == (
            target in FINAL_PHASES or before["finished_at"] is not None
        )
        if target is JobPhase.RUNNING:
            assert row["started_at"] is not None
        announced = outbox_since(db, mark)
        expected = [JobProgressed.TYPE] + ([JobFinished.TYPE] if target in FINAL_PHASES else [])
        assert [e.type for e in announced] == expected
        assert all(e.data is not None and e.data["job_id"] == parent.id for e in announced)
        assert announced[0].data is not None
        assert announced[0].data["phase"] == target.value
    else:
        with pytest.raises(InvalidTransition):
            tenant.jobs.move(tenant.scope, parent.id, target, reason="refused")
        assert snapshot(db, parent.id) == (before, kids_before, mark)


def test_a_child_unknown_or_foreign_job_is_not_moved(db: Database) -> None:
    """Only parents move (a child follows its parent); a job of another tenant is not found, and its
    row stays as it was."""
    tenant, other = new_tenant(db), new_tenant(db, "other")
    parent, (child,) = new_job(tenant)
    mark = outbox_mark(db)
    with pytest.raises(InvalidTransition):
        tenant.jobs.move(tenant.scope, child.id, JobPhase.ESTIMATING)
    with pytest.raises(JobNotFound):
        tenant.jobs.move(tenant.scope, "no-such-job", JobPhase.ESTIMATING)
    before = job_row(db, parent.id)
    foreign = Scope.for_case(other.tenant_id, other.case_id, "intruder")
    with pytest.raises(JobNotFound):
        other.jobs.move(foreign, parent.id, JobPhase.ESTIMATING)
    assert job_row(db, parent.id) == before
    assert job_row(db, child.id)["state"] == JobPhase.QUEUED.value
    assert outbox_since(db, mark) == []


def _step_in(tenant: Tenant, state: StepState) -> tuple[JobSteps, str]:
    """A child job whose planned ``probe`` step is in ``state`` (through begin and finish)."""
    _, (child,) = new_job(tenant)
    steps = JobSteps(tenant.db)
    steps.plan(tenant.scope, child, {STEP: 1.0})
    if state is StepState.RUNNING:
        steps.begin(tenant.scope, child, STEP, worker="w1", lease_s=60)
    elif state is not StepState.PENDING:
        steps.begin(tenant.scope, child, STEP, worker="w1", lease_s=60)
        assert steps.finish(tenant.scope, child.id, STEP, state, reason="setup")
    assert step_row(tenant.db, child.id, STEP)["state"] == state.value  # type: ignore[index]
    return steps, child.id


@pytest.mark.parametrize(("source", "target"), STEP_PAIRS, ids=_pair_id)
def test_a_step_ends_exactly_when_the_machine_allows_it(
    db: Database, source: StepState, target: StepState
) -> None:
    """JobSteps.finish makes every allowed move (ended states get finished_at, the lease is freed)
    and refuses every other one with False and the row untouched."""
    tenant = new_tenant(db)
    steps, child_id = _step_in(tenant, source)
    before, mark = step_row(db, child_id, STEP), outbox_mark(db)
    assert before is not None

    done = steps.finish(tenant.scope, child_id, STEP, target, reason="test end", units=7.0)

    row = step_row(db, child_id, STEP)
    assert row is not None
    if target in STEP_TRANSITIONS[source]:
        assert done is True
        assert row["state"] == target.value
        assert row["reason"] == "test end"
        assert row["units"] == 7.0
        assert row["lease_until"] is None
        if target.ended:  # the time it ran, when it was seen to start
            assert row["finished_at"] is not None
            assert (row["seconds"] is not None) == (before["started_at"] is not None)
            assert row["seconds"] is None or row["seconds"] >= 0
    else:
        assert done is False
        assert row == before
    assert outbox_since(db, mark) == []


@pytest.mark.parametrize("source", list(StepState), ids=_pair_id)
def test_a_step_starts_only_from_pending(db: Database, source: StepState) -> None:
    """begin takes a pending step (attempt 1); a running one with a live lease is StepBusy, an ended
    one StepEnded, and a refused start leaves the row as it was."""
    tenant = new_tenant(db)
    steps, child_id = _step_in(tenant, source)
    before = step_row(db, child_id, STEP)
    child = tenant.jobs.get(tenant.scope, child_id)
    assert child is not None
    assert before is not None

    if source is StepState.PENDING:
        assert steps.begin(tenant.scope, child, STEP, worker="w2", lease_s=60) == before["attempts"] + 1
        row = step_row(db, child_id, STEP)
        assert row is not None
        assert row["state"] == StepState.RUNNING.value
        assert row["worker"] == "w2"
        return
    expected = StepBusy if source is StepState.RUNNING else StepEnded
    with pytest.raises(expected):
        steps.begin(tenant.scope, child, STEP, worker="w2", lease_s=60)
    assert step_row(db, child_id, STEP) == before


def test_cancel_ends_unfinished_steps_and_keeps_finished_ones(db: Database) -> None:
    """cancel: the job and its children become Cancelled, steps not started cancelled, a running
    one left to end as it ends, a succeeded step stays; progress, finished and a scheduling request
    go out together. A second cancel is refused and writes nothing."""
    tenant = new_tenant(db)
    parent, (child,) = new_job(tenant, ("probe", "faces", "ocr"))
    bring_to(tenant, parent.id, JobPhase.RUNNING)
    steps = JobSteps(db)
    steps.plan(tenant.scope, child, {"probe": 1.0, "faces": 10.0, "ocr": 10.0})
    steps.begin(tenant.scope, child, "probe", worker="w", lease_s=60)
    assert steps.finish(tenant.scope, child.id, "probe", StepState.SUCCEEDED)
    steps.begin(tenant.scope, child, "faces", worker="w", lease_s=60)
    mark = outbox_mark(db)

    cancelled = tenant.jobs.cancel(tenant.scope, parent.id, by="alice")

    assert cancelled.phase is JobPhase.CANCELLED
    assert cancelled.reason == "cancelled by alice"
    assert job_row(db, child.id)["state"] == JobPhase.CANCELLED.value
    states = {s: step_row(db, child.id, s)["state"] for s in ("probe", "faces", "ocr")}  # type: ignore[index]
    assert states == {"probe": "succeeded", "faces": "running", "ocr": "cancelled"}
    types = [e.type for e in outbox_since(db, mark)]
    assert types == [JobProgressed.TYPE, JobFinished.TYPE, SchedulingRequested.TYPE]

    mark = outbox_mark(db)
    with pytest.raises(InvalidTransition):
        tenant.jobs.cancel(tenant.scope, parent.id, by="bob")
    assert outbox_since(db, mark) == []
    assert job_row(db, parent.id)["reason"] == "cancelled by alice"


def test_approve_queues_a_job_that_awaits_approval(db: Database) -> None:
    """approve: AwaitingApproval -> Queued, approved by whom and when, with a scheduling request."""
    tenant = new_tenant(db)
    parent, _ = new_job(tenant)
    bring_to(tenant, parent.id, JobPhase.AWAITING_APPROVAL)
    mark = outbox_mark(db)

    approved = tenant.jobs.approve(tenant.scope, parent.id, by="boss")

    assert approved.phase is JobPhase.QUEUED
    assert approved.approved_by == "boss"
    assert approved.approved_at is not None
    assert [e.type for e in outbox_since(db, mark)] == [JobProgressed.TYPE, SchedulingRequested.TYPE]


@pytest.mark.parametrize("phase", [p for p in JobPhase if p is not JobPhase.AWAITING_APPROVAL], ids=_pair_id)
def test_approve_refuses_a_job_that_does_not_await_approval(db: Database, phase: JobPhase) -> None:
    """approve is for a job awaiting approval only: anything else (a cancelled job above all) is
    refused, and the row and the outbox stay untouched."""
    tenant = new_tenant(db)
    parent, _ = new_job(tenant)
    bring_to(tenant, parent.id, phase)
    before, mark = job_row(db, parent.id), outbox_mark(db)

    with pytest.raises(InvalidTransition):
        tenant.jobs.approve(tenant.scope, parent.id, by="boss")

    assert job_row(db, parent.id) == before
    assert outbox_since(db, mark) == []


@pytest.mark.parametrize("phase", [JobPhase.FAILED, JobPhase.CANCELLED], ids=_pair_id)
def test_resume_queues_a_stopped_job_and_resets_what_did_not_end_well(db: Database, phase: JobPhase) -> None:
    """resume: a failed or cancelled job is queued again (finished_at cleared); its running, failed
    and cancelled steps become pending, with no lease; succeeded and not-run steps stay."""
    tenant = new_tenant(db)
    parent, (child,) = new_job(tenant, ("probe", "faces", "ocr", "pose", "vision"))
    bring_to(tenant, parent.id, JobPhase.RUNNING)
    steps = JobSteps(db)
    steps.plan(tenant.scope, child, dict.fromkeys(("probe", "faces", "ocr", "pose", "vision"), 1.0))
    for step, end in [
        ("probe", StepState.SUCCEEDED),
        ("faces", StepState.FAILED),
        ("vision", StepState.NOT_RUN),
        ("ocr", None),
    ]:
        steps.begin(tenant.scope, child, step, worker="w", lease_s=60)
        if end is not None:
            steps.finish(tenant.scope, child.id, step, end)
    tenant.jobs.move(tenant.scope, parent.id, phase)
    mark = outbox_mark(db)

    resumed = tenant.jobs.resume(tenant.scope, parent.id)

    assert resumed.phase is JobPhase.QUEUED
    row = job_row(db, parent.id)
    assert row["state"] == "Queued"
    assert row["finished_at"] is None
    states = {s: step_row(db, child.id, s) for s in ("probe", "faces", "ocr", "pose", "vision")}
    assert {s: r["state"] for s, r in states.items() if r} == {
        "probe": "succeeded",
        "faces": "pending",
        "ocr": "pending",
        "pose": "pending",
        "vision": "not_run",
    }
    assert states["ocr"] is not None
    assert states["ocr"]["lease_until"] is None
    types = [e.type for e in outbox_since(db, mark)]
    assert sorted(types) == sorted([SchedulingRequested.TYPE, JobProgressed.TYPE])


def test_resume_of_a_running_job_keeps_its_phase_and_frees_its_steps(db: Database) -> None:
    """A running job whose worker died: resume keeps it Running and gives its running step back."""
    tenant = new_tenant(db)
    parent, (child,) = new_job(tenant)
    bring_to(tenant, parent.id, JobPhase.RUNNING)
    steps = JobSteps(db)
    steps.plan(tenant.scope, child, {STEP: 1.0})
    steps.begin(tenant.scope, child, STEP, worker="dead", lease_s=3600)
    mark = outbox_mark(db)

    assert tenant.jobs.resume(tenant.scope, parent.id).phase is JobPhase.RUNNING

    assert job_row(db, parent.id)["state"] == "Running"
    assert step_row(db, child.id, STEP)["state"] == "pending"  # type: ignore[index]
    assert steps.begin(tenant.scope, child, STEP, worker="new", lease_s=60) == 2
    assert [e.type for e in outbox_since(db, mark)] == [SchedulingRequested.TYPE]


@pytest.mark.parametrize(
    "phase", [JobPhase.QUEUED, JobPhase.SUCCEEDED, JobPhase.PARTIALLY_SUCCEEDED], ids=_pair_id
)
def test_resume_refuses_a_queued_or_succeeded_job(db: Database, phase: JobPhase) -> None:
    """Nothing to resume: InvalidTransition, the row and the outbox untouched."""
    tenant = new_tenant(db)
    parent, _ = new_job(tenant)
    bring_to(tenant, parent.id, phase)
    before, mark = job_row(db, parent.id), outbox_mark(db)
    with pytest.raises(InvalidTransition):
        tenant.jobs.resume(tenant.scope, parent.id)
    assert job_row(db, parent.id) == before
    assert outbox_since(db, mark) == []
