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
