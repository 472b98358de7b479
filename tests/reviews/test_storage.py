"""Decisions in the document store: indicator keys stable across a re-run, different on other evidence;
every decision kept in order, the latest current; bad decisions refused."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aima.domain import EvidenceRef, Finding, ModelRef, Step
from aima.storage.documents import DocumentStore
from aima.storage.findings import FindingRepository
from aima.storage.reviews import ReviewError, ReviewRepository, indicator_key

from .seed import posture_finding, seed_findings, vision_finding

TENANT, CASE = "tenant-1", "case-1"


@pytest.fixture
def documents(tmp_path: Path) -> Iterator[DocumentStore]:
    store = DocumentStore.from_uri(f"litemongo://{(tmp_path / 'docs').absolute()}", "aima")
    yield store
    store.close()


def test_a_rerun_with_new_ids_keeps_the_key_and_the_decision(documents: DocumentStore) -> None:
    seed = seed_findings(documents, TENANT, CASE, run="run-1")
    reviews = ReviewRepository(documents)
    first = reviews.finding(TENANT, CASE, seed.restraint)
    assert first is not None
    reviews.decide(first, "confirmed", "rope at both wrists", reviewer="ann")

    # the vision step runs again: a new run, a new id, another confidence, the same indicator
    again = vision_finding(TENANT, CASE, seed.media_id, run="run-2", confidence=0.55)
    assert again.id != seed.restraint
    FindingRepository(documents).replace_media(TENANT, CASE, seed.media_id, Step.VISION, [again], run="run-2")
    assert reviews.finding(TENANT, CASE, seed.restraint) is None
    second = reviews.finding(TENANT, CASE, again.id)
    assert second is not None
    assert second.key == first.key == indicator_key(again)
    review = reviews.for_finding(second)
    assert review is not None
    assert review.decision == "confirmed"
    states = reviews.review_state(TENANT, CASE, reviews.findings(TENANT, CASE))
    assert states == {again.id: "confirmed", seed.posture: "unreviewed"}


def test_other_evidence_or_another_indicator_is_another_key(documents: DocumentStore) -> None:
    base = vision_finding(TENANT, CASE, "m1", run="r")
    other_frame = vision_finding(TENANT, CASE, "m1", run="r", frame_id="frame-0002")
    other_type = vision_finding(TENANT, CASE, "m1", run="r", restraint_type="tape")
    other_file = vision_finding(TENANT, CASE, "m2", run="r")
    posture = posture_finding(TENANT, CASE, "m1")
    keys = {indicator_key(f) for f in (base, other_frame, other_type, other_file, posture)}
    assert len(keys) == 5
    # another model version or pose version seeing the same: the same key
    assert indicator_key(
        posture_finding(TENANT, CASE, "m1", pose_version=2, confidence=0.9)
    ) == indicator_key(posture)
    # stored documents and models give the same key
    assert indicator_key(base.model_dump(mode="json")) == indicator_key(base)


def test_spoken_cues_key_on_segment_and_plain_findings_on_half_seconds() -> None:
    model = ModelRef(name="m", version="1", backend="test")

    def cue(segment: str, cue_id: str) -> dict[str, object]:
        ref = EvidenceRef(media_id="m1", start_s=1.0, end_s=2.0, segment_id=segment)
        finding = Finding(tenant_id=TENANT, case_id=CASE, step=Step.PHRASES, label="x", confidence=0.5,
                          model=model, evidence=[ref])  # fmt: skip
        return {**finding.model_dump(mode="json"), "media_id": "m1", "segment_id": segment, "cue_id": cue_id}

    assert indicator_key(cue("m1-1000", "c1")) == indicator_key(cue("m1-1000", "c1") | {"id": "other"})
    assert indicator_key(cue("m1-1000", "c1")) != indicator_key(cue("m1-3000", "c1"))
    assert indicator_key(cue("m1-1000", "c1")) != indicator_key(cue("m1-1000", "c2"))

    def plain(start: float, end: float) -> Finding:
        ref = EvidenceRef(media_id="m1", start_s=start, end_s=end)
        return Finding(tenant_id=TENANT, case_id=CASE, step=Step.FUSE, label="y", confidence=0.5,
                       model=model, evidence=[ref])  # fmt: skip

    assert indicator_key(plain(1.1, 2.9)) == indicator_key(plain(0.9, 3.1))
    assert indicator_key(plain(1.1, 2.9)) != indicator_key(plain(1.6, 2.9))


def test_history_is_kept_in_order_and_the_latest_wins(documents: DocumentStore) -> None:
    seed = seed_findings(documents, TENANT, CASE)
    reviews = ReviewRepository(documents)
    finding = reviews.finding(TENANT, CASE, seed.posture)
    assert finding is not None
    start = datetime(2026, 1, 1, tzinfo=UTC)
    reviews.decide(finding, "unclear", "too dark", reviewer="ann", at=start)
    reviews.decide(
        finding, "rejected", "  hands in pockets  ", reviewer="bob", at=start + timedelta(minutes=1)
    )
    review = reviews.decide(
        finding, "confirmed", "seen on the next frame", reviewer="ann", at=start + timedelta(minutes=2)
    )
    assert [(e.decision, e.reason, e.reviewer) for e in review.history] == [
        ("unclear", "too dark", "ann"),
        ("rejected", "hands in pockets", "bob"),
        ("confirmed", "seen on the next frame", "ann"),
    ]
    [stored] = reviews.for_case(TENANT, CASE)
    assert stored == review
    assert stored.decision == "confirmed"
    assert stored.revision == 3
    assert stored.current.finding.id == seed.posture
    assert stored.current.finding.step is Step.POSE
    assert stored.current.finding.evidence[0].frame_id == "frame-0001"
    assert reviews.for_case(TENANT, "other-case") == []


@pytest.mark.parametrize(
    ("decision", "reason", "message"),
    [
        ("approved", "fine", "the decision is one of confirmed, rejected, unclear"),
        ("confirmed", "   ", "a decision needs a reason"),
        ("confirmed", "x" * 2001, "the reason is longer than 2000 characters"),
        ("confirmed", "line\nbreak", "the reason contains control characters"),
    ],
)
def test_bad_decisions_are_refused(
    documents: DocumentStore, decision: str, reason: str, message: str
) -> None:
    seed = seed_findings(documents, TENANT, CASE)
    reviews = ReviewRepository(documents)
    finding = reviews.finding(TENANT, CASE, seed.restraint)
    assert finding is not None
    with pytest.raises(ReviewError, match=message):
        reviews.decide(finding, decision, reason, reviewer="ann")
    assert reviews.for_case(TENANT, CASE) == []
