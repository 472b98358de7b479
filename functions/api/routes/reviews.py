"""Reviewer decisions on the findings of a case: confirmed, rejected or unclear, with a reason.

* ``GET /cases/{case_id}/findings``: every finding (indicator for review) of the case, by confidence,
  with its indicator key and the current decision on it (``unreviewed`` if none); filters
  ``media_id``, ``step`` and ``state``;
* ``PUT .../findings/{finding_id}/review``: ``{"decision": "confirmed"|"rejected"|"unclear",
  "reason": ...}`` records a decision on the finding's indicator; returns the indicator's decisions;
* ``GET /cases/{case_id}/reviews``: every decided indicator with its history (oldest first), the
  current decision, and whether a finding of the case still has its key (``found``).

A decision attaches to the finding's indicator key, not to its id, so it applies again when a
re-analysis yields the same indicator on the same evidence (`aima.storage.reviews`). Reading needs
``case.read`` (viewers), deciding ``case.update`` (analysts, owners); every call writes one audit
record, a decision's naming the finding and indicator with the decision and reason. Problems: 404 for
a finding the case does not have; 422 for a decision or reason the body model refuses.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from aima.access.policy import Action
from aima.domain import EvidenceRef, Step
from aima.storage.reviews import (
    MAX_REASON,
    Decision,
    DecisionEntry,
    KeyedFinding,
    Review,
    ReviewError,
    ReviewRepository,
    ReviewState,
)
from functions.api.problems import Problem
from functions.api.schemas import CaseId
from functions.api.security import Access, RouteTable, api_route, not_found

router = RouteTable(tags=["reviews"])

ID = r"^[A-Za-z0-9_-]{1,36}$"
FindingId = Annotated[str, Path(pattern=ID, description="A finding's id.")]
Reason = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_REASON, pattern=r"^[^\x00-\x1f\x7f]*\S[^\x00-\x1f\x7f]*$"),
]
MediaFilter = Annotated[str | None, Query(pattern=ID, description="Findings of this media file.")]
StepFilter = Annotated[Step | None, Query(description="Findings of this pipeline step.")]
StateFilter = Annotated[ReviewState | None, Query(description="Findings whose indicator is in this state.")]


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Decision = Field(description="what the reviewer makes of the indicator")
    reason: Reason = Field(description="why (required; no control characters)")


class FindingOut(BaseModel):
    id: str
    step: Step
    kind: str | None = Field(description="the step's kind of finding, if it has kinds")
    label: str
    confidence: float
    media_id: str
    evidence: list[EvidenceRef]
    person_id: str | None
    indicator_key: str = Field(description="what a decision attaches to: the same across re-analysis")
    review_state: ReviewState


class FindingsOut(BaseModel):
    findings: list[FindingOut]


class DecisionOut(BaseModel):
    decision: Decision
    reason: str
    reviewer: str
    decided_at: datetime
    finding_id: str = Field(description="the finding it was made on (ids change with re-analysis)")
    finding_label: str
    finding_confidence: float


class ReviewOut(BaseModel):
    indicator_key: str
    media_id: str
    decision: Decision = Field(description="the current (latest) decision")
    reason: str
    reviewer: str
    decided_at: datetime
    found: bool = Field(description="false: no finding of the case has this indicator any more")
    finding_ids: list[str] = Field(description="the case's findings with this indicator now")
    history: list[DecisionOut] = Field(description="every decision, oldest first")


class ReviewsOut(BaseModel):
    reviews: list[ReviewOut]


def _finding_out(keyed: KeyedFinding, state: ReviewState) -> FindingOut:
    f = keyed.finding
    return FindingOut(
        id=f.id,
        step=f.step,
        kind=keyed.kind,
        label=f.label,
        confidence=f.confidence,
        media_id=keyed.media_id,
        evidence=f.evidence,
        person_id=f.person_id,
        indicator_key=keyed.key,
        review_state=state,
    )


def _decision_out(entry: DecisionEntry) -> DecisionOut:
    return DecisionOut(
        decision=entry.decision,
        reason=entry.reason,
        reviewer=entry.reviewer,
        decided_at=entry.decided_at,
        finding_id=entry.finding.id,
        finding_label=entry.finding.label,
        finding_confidence=entry.finding.confidence,
    )


def review_out(review: Review, finding_ids: list[str]) -> ReviewOut:
    current = review.current
    return ReviewOut(
        indicator_key=review.indicator_key,
        media_id=review.media_id,
        decision=current.decision,
        reason=current.reason,
        reviewer=current.reviewer,
        decided_at=current.decided_at,
        found=bool(finding_ids),
        finding_ids=finding_ids,
        history=[_decision_out(entry) for entry in review.history],
    )


def _repository(access: Access) -> ReviewRepository:
    return ReviewRepository(access.services.stores.documents)


@api_route(router, "GET", "/cases/{case_id}/findings", action=Action.CASE_READ)
def list_findings(
    case_id: CaseId,
    access: Access,
    media_id: MediaFilter = None,
    step: StepFilter = None,
    state: StateFilter = None,
) -> FindingsOut:
    """The case's findings, by confidence, each with its indicator key and current review state."""
    access.require_case()
    repository = _repository(access)
    tenant_id = access.subject.tenant_id
    findings = repository.findings(tenant_id, case_id, media_id=media_id, step=step)
    states = repository.review_state(tenant_id, case_id, findings)
    out = [_finding_out(f, states[f.finding.id]) for f in findings]
    if state is not None:
        out = [f for f in out if f.review_state == state]
    filters = {"media_id": media_id, "step": step.value if step else None, "state": state}
    detail = {"findings": len(out), **{k: v for k, v in filters.items() if v is not None}}
    access.audit(object=f"case/{case_id}/findings", detail=detail)
    return FindingsOut(findings=out)


@api_route(router, "PUT", "/cases/{case_id}/findings/{finding_id}/review", action=Action.CASE_UPDATE)
def review_finding(case_id: CaseId, finding_id: FindingId, body: ReviewIn, access: Access) -> ReviewOut:
    """Record a decision on the finding's indicator; it stays with the indicator when the case's files
    are analysed again, and the earlier decisions stay in its history."""
    access.require_case()
    repository = _repository(access)
    tenant_id = access.subject.tenant_id
    finding = repository.finding(tenant_id, case_id, finding_id)
    if finding is None:
        raise not_found("finding")
    try:
        review = repository.decide(finding, body.decision, body.reason, reviewer=access.subject.user_id)
    except ReviewError as exc:
        raise Problem(422, "invalid-review", "Decision not possible", f"{exc}.") from None
    access.audit(
        object=f"finding/{finding_id}",
        detail={"indicator_key": finding.key, "decision": body.decision, "reason": review.current.reason},
    )
    found = repository.findings(tenant_id, case_id, media_id=finding.media_id)
    return review_out(review, [f.finding.id for f in found if f.key == finding.key])


@api_route(router, "GET", "/cases/{case_id}/reviews", action=Action.CASE_READ)
def list_reviews(case_id: CaseId, access: Access) -> ReviewsOut:
    """Every decided indicator of the case, the most recently decided first, with its history and
    whether a finding still has it (a re-analysis may have dropped it: ``found`` false)."""
    access.require_case()
    repository = _repository(access)
    tenant_id = access.subject.tenant_id
    by_key: dict[str, list[str]] = {}
    for f in repository.findings(tenant_id, case_id):
        by_key.setdefault(f.key, []).append(f.finding.id)
    reviews = [
        review_out(r, by_key.get(r.indicator_key, [])) for r in repository.for_case(tenant_id, case_id)
    ]
    gone = sum(1 for r in reviews if not r.found)
    access.audit(object=f"case/{case_id}/reviews", detail={"reviews": len(reviews), "no_longer_found": gone})
    return ReviewsOut(reviews=reviews)
