"""Domain rules that hold in every layer."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from aima.domain import EvidenceRef, Finding, JobPhase, ModelRef, Step

MODEL = ModelRef(name="m", version="1", backend="cpu")


def test_a_finding_needs_evidence_and_a_bounded_confidence() -> None:
    ev = EvidenceRef(media_id="m1", start_s=1.0, end_s=2.5, frame_id="f1")
    finding = Finding(
        tenant_id="t",
        case_id="c",
        step=Step.VISION,
        label="restraint: cable tie",
        confidence=0.7,
        model=MODEL,
        evidence=[ev],
    )
    assert finding.review_state == "unreviewed"
    with pytest.raises(ValidationError):
        Finding(
            tenant_id="t", case_id="c", step=Step.VISION, label="x", confidence=0.7, model=MODEL, evidence=[]
        )
    with pytest.raises(ValidationError):
        Finding(
            tenant_id="t",
            case_id="c",
            step=Step.VISION,
            label="x",
            confidence=1.2,
            model=MODEL,
            evidence=[ev],
        )


def test_evidence_time_range_is_ordered() -> None:
    with pytest.raises(ValidationError):
        EvidenceRef(media_id="m", start_s=3, end_s=1)


def test_final_job_phases() -> None:
    assert {p for p in JobPhase if p.final} == {
        JobPhase.SUCCEEDED,
        JobPhase.PARTIALLY_SUCCEEDED,
        JobPhase.FAILED,
        JobPhase.CANCELLED,
    }


def test_the_job_state_machine_never_leaves_success_and_queues_a_resumed_job() -> None:
    from aima.domain import PHASE_TRANSITIONS, STEP_TRANSITIONS, StepState

    assert set(PHASE_TRANSITIONS) == set(JobPhase)
    assert set(STEP_TRANSITIONS) == set(StepState)
    for phase in JobPhase:
        assert not phase.can_become(phase)
    assert PHASE_TRANSITIONS[JobPhase.SUCCEEDED] == frozenset()
    assert PHASE_TRANSITIONS[JobPhase.PARTIALLY_SUCCEEDED] == frozenset()
    assert JobPhase.CANCELLED.can_become(JobPhase.QUEUED)  # resumed
    assert JobPhase.AWAITING_APPROVAL.can_become(JobPhase.QUEUED)  # approved
    assert not JobPhase.SUCCEEDED.can_become(JobPhase.RUNNING)
    assert StepState.RUNNING.can_become(StepState.PENDING)  # its worker died
    assert not StepState.SUCCEEDED.can_become(StepState.RUNNING)


def test_the_repository_refuses_a_move_the_state_machine_forbids(sqlite_db: object) -> None:
    import pytest

    from aima.access.scope import Scope
    from aima.identity.users import UserDirectory
    from aima.storage.cases import CaseRepository
    from aima.storage.jobs import InvalidTransition, JobNotFound, JobRepository
    from aima.storage.relational import Database

    assert isinstance(sqlite_db, Database)
    directory = UserDirectory(sqlite_db)
    tenant = directory.ensure_tenant("acme")
    owner = directory.create_user(tenant, "owner", None, "user")
    case_id = str(CaseRepository(sqlite_db).create(Scope.for_tenant(tenant, "t"), "c", owner.id)["id"])
    scope = Scope.for_case(tenant, case_id, "t")
    jobs = JobRepository(sqlite_db)
    job = jobs.create_parent(scope, case_id, ["probe"])
    jobs.move(scope, job.id, JobPhase.ESTIMATING)
    jobs.move(scope, job.id, JobPhase.RUNNING)
    jobs.move(scope, job.id, JobPhase.SUCCEEDED)
    with pytest.raises(InvalidTransition, match="is Succeeded; it cannot become Running"):
        jobs.move(scope, job.id, JobPhase.RUNNING)
    with pytest.raises(JobNotFound):
        jobs.move(scope, "no-such-job", JobPhase.RUNNING)
