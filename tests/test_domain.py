"""Domain rules that hold in every layer."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from aima.domain import EvidenceRef, Finding, JobState, ModelRef, Step

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


def test_final_job_states() -> None:
    assert {s for s in JobState if s.final} == {JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED}


def test_the_job_state_machine_never_leaves_a_final_state_and_resumes_a_running_job() -> None:
    from aima.domain import JOB_TRANSITIONS, JobState

    assert set(JOB_TRANSITIONS) == set(JobState)
    for state in JobState:
        assert not state.can_become(state)
        if state.final:
            assert JOB_TRANSITIONS[state] == frozenset()
    assert JobState.RUNNING.can_become(JobState.PENDING)  # resumed after a crash
    assert not JobState.COMPLETED.can_become(JobState.RUNNING)


def test_the_repository_refuses_a_move_the_state_machine_forbids(sqlite_db: object) -> None:
    import pytest

    from aima.access.scope import Scope
    from aima.identity.users import UserDirectory
    from aima.storage.cases import CaseRepository
    from aima.storage.jobs import InvalidTransition, JobRepository
    from aima.storage.relational import Database

    assert isinstance(sqlite_db, Database)
    directory = UserDirectory(sqlite_db)
    tenant = directory.ensure_tenant("acme")
    owner = directory.create_user(tenant, "owner", None, "user")
    case_id = str(CaseRepository(sqlite_db).create(Scope.for_tenant(tenant, "t"), "c", owner.id)["id"])
    scope = Scope.for_case(tenant, case_id, "t")
    jobs = JobRepository(sqlite_db)
    job = jobs.create_parent(scope, case_id, ["probe"])
    assert jobs.set_state(scope, job.id, "running")
    assert jobs.set_state(scope, job.id, "completed")
    with pytest.raises(InvalidTransition, match="is completed; it cannot become running"):
        jobs.set_state(scope, job.id, "running")
    assert jobs.set_state(scope, "no-such-job", "running") is False
