"""Reviewer decisions on findings: confirmed, rejected or unclear, with a reason, kept across re-analysis.

A finding's id changes whenever its step runs again (ids derive from the run), so a decision does not
attach to the id but to the finding's **indicator key** (`indicator_key`): a digest of what the finding
says and where, the same for the same indicator on the same evidence whichever run produced it:

* the step and the finding's ``kind`` (vision: restraint or distress; pose: posture, corroborated or
  disagreement; spoken cues have none);
* what it is an indicator *of*: a restraint's ``restraint_type``, a distress or posture ``cue``, a
  spoken cue's ``cue_id`` (and the tenant ``phrase`` that matched, if any); any other finding its label;
* the media file;
* the evidence it rests on: the frame (``frame_id``), else the transcript segment (``segment_id``,
  stable: media id and start millisecond), else its first evidence range with both ends rounded to
  0.5 s; a posture finding adds its crop (``{frame_id}-{track label}``: which person on the frame).

Confidence, model, notes and run are left out: a re-analysis by another model version that sees the
same thing in the same place yields the same key, and the decision applies to it again. Findings
that say the same thing about the same evidence share a key (and so a decision). A decision whose key
no finding has any more stays stored; readers report it as no longer found.

Collection ``reviews``: one document per (case, indicator key), ``_id = {case_id}-{key}``, with
``history`` (every decision, oldest first: decision, reason, reviewer, time, and a snapshot of the
finding it was made on: id, step, label, confidence, evidence) and the latest decision's fields at the
top level. Writers compare and set on ``revision``, so two reviewers deciding at once both land in the
history. Every document carries ``tenant_id`` and ``case_id``: deleting the case removes them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from aima.domain import EvidenceRef, Finding, Step, utcnow
from aima.storage.documents import DocumentStore, DuplicateDocument
from aima.storage.findings import FINDINGS

REVIEWS = "reviews"
MAX_REASON = 2000
ROUNDS = 10
"""Compare-and-set attempts before a decision gives up (only under heavy contention on one key)."""

Decision = Literal["confirmed", "rejected", "unclear"]
ReviewState = Literal["confirmed", "rejected", "unclear", "unreviewed"]
DECISIONS: tuple[Decision, ...] = get_args(Decision)
UNREVIEWED: ReviewState = "unreviewed"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ReviewError(ValueError):
    """A decision that cannot be recorded (the message says why)."""


class FindingSnapshot(BaseModel):
    """The finding as the reviewer saw it when deciding."""

    model_config = ConfigDict(extra="ignore")

    id: str
    step: Step
    label: str
    confidence: float = Field(ge=0, le=1)
    evidence: list[EvidenceRef]


class DecisionEntry(BaseModel):
    """One decision of the history."""

    model_config = ConfigDict(extra="ignore")

    decision: Decision
    reason: str
    reviewer: str
    decided_at: datetime
    finding: FindingSnapshot


class Review(BaseModel):
    """Every decision on one indicator of a case; the last of ``history`` is the current one."""

    model_config = ConfigDict(extra="ignore")

    tenant_id: str
    case_id: str
    indicator_key: str
    media_id: str
    history: list[DecisionEntry] = Field(min_length=1)
    revision: int = Field(ge=1)

    @property
    def current(self) -> DecisionEntry:
        return self.history[-1]

    @property
    def decision(self) -> Decision:
        return self.current.decision


@dataclass(frozen=True)
class KeyedFinding:
    """A stored finding (its common fields) with its media file, kind and indicator key."""

    finding: Finding
    media_id: str
    kind: str | None
    key: str


def indicator_key(finding: Finding | Mapping[str, Any]) -> str:
    """The finding's indicator key (see module docstring): a stored document or a `Finding` (subclass)."""
    doc: Mapping[str, Any] = finding.model_dump(mode="json") if isinstance(finding, Finding) else finding
    evidence = [e for e in doc.get("evidence") or () if isinstance(e, Mapping)]
    step = str(doc.get("step"))
    kind = doc.get("kind")
    media_id = doc.get("media_id") or next((e.get("media_id") for e in evidence), None)
    parts: dict[str, Any] = {
        "step": step,
        "kind": kind,
        "of": _subject(doc),
        "media": media_id,
        "at": _anchor(doc, evidence),
    }
    if kind == "posture":
        parts["crop"] = doc.get("crop_id")
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _subject(doc: Mapping[str, Any]) -> Any:
    kind = doc.get("kind")
    if kind in ("restraint", "corroborated", "disagreement"):
        return doc.get("restraint_type")
    if kind in ("distress", "posture"):
        return doc.get("cue")
    if doc.get("cue_id") is not None:
        return [doc.get("cue_id"), doc.get("phrase")]
    return doc.get("label")


def _anchor(doc: Mapping[str, Any], evidence: Sequence[Mapping[str, Any]]) -> str:
    frame = doc.get("frame_id") or next((e["frame_id"] for e in evidence if e.get("frame_id")), None)
    if frame:
        return f"frame:{frame}"
    segment = doc.get("segment_id") or next((e["segment_id"] for e in evidence if e.get("segment_id")), None)
    if segment:
        return f"segment:{segment}"
    first = evidence[0] if evidence else {}
    return f"time:{_half(first.get('start_s'))}-{_half(first.get('end_s'))}"


def _half(seconds: Any) -> str:
    return "" if seconds is None else f"{round(float(seconds) * 2) / 2:.1f}"


def clean_reason(reason: str) -> str:
    """The reason, stripped; `ReviewError` if blank, longer than `MAX_REASON` or with control characters."""
    text = reason.strip()
    if not text:
        raise ReviewError("a decision needs a reason")
    if len(text) > MAX_REASON:
        raise ReviewError(f"the reason is longer than {MAX_REASON} characters")
    if _CONTROL.search(text):
        raise ReviewError("the reason contains control characters")
    return text


class ReviewRepository:
    """Decisions on the findings of a case (see module docstring)."""

    def __init__(self, documents: DocumentStore) -> None:
        self._docs = documents

    # --- findings --------------------------------------------------------------------------------

    def findings(
        self, tenant_id: str, case_id: str, *, media_id: str | None = None, step: Step | None = None
    ) -> list[KeyedFinding]:
        """The case's stored findings (of one file, of one step) with their keys, by confidence."""
        where: dict[str, Any] = {"tenant_id": tenant_id, "case_id": case_id}
        if media_id is not None:
            where["media_id"] = media_id
        if step is not None:
            where["step"] = step.value
        docs = self._docs.find(FINDINGS, where, sort=[("confidence", -1), ("_id", 1)])
        return [_keyed(doc) for doc in docs]

    def finding(self, tenant_id: str, case_id: str, finding_id: str) -> KeyedFinding | None:
        """One stored finding of the case with its key, or None."""
        doc = self._docs.find_one(FINDINGS, {"tenant_id": tenant_id, "case_id": case_id, "_id": finding_id})
        return None if doc is None else _keyed(doc)

    # --- decisions -------------------------------------------------------------------------------

    def decide(
        self,
        finding: KeyedFinding,
        decision: str,
        reason: str,
        *,
        reviewer: str,
        at: datetime | None = None,
    ) -> Review:
        """Record ``decision`` on the finding's indicator; it becomes the current one, the older ones
        stay in the history. `ReviewError` for an unknown decision or a bad reason."""
        if decision not in DECISIONS:
            raise ReviewError(f"the decision is one of {', '.join(DECISIONS)}")
        base = finding.finding
        entry = DecisionEntry(
            decision=decision,
            reason=clean_reason(reason),
            reviewer=reviewer,
            decided_at=at or utcnow(),
            finding=FindingSnapshot.model_validate(base.model_dump()),
        )
        tenant_id, case_id = base.tenant_id, base.case_id
        where = {"tenant_id": tenant_id, "case_id": case_id, "_id": _doc_id(case_id, finding.key)}
        for _ in range(ROUNDS):
            stored = self._docs.find_one(REVIEWS, where)
            if stored is None:
                review = Review(
                    tenant_id=tenant_id,
                    case_id=case_id,
                    indicator_key=finding.key,
                    media_id=finding.media_id,
                    history=[entry],
                    revision=1,
                )
                try:
                    self._docs.insert_one(REVIEWS, {**where, **_fields(review)})
                except DuplicateDocument:
                    continue
                return review
            old = Review.model_validate(stored)
            review = old.model_copy(update={"history": [*old.history, entry], "revision": old.revision + 1})
            if self._docs.update_one(REVIEWS, {**where, "revision": old.revision}, {"$set": _fields(review)}):
                return review
        raise ReviewError("the indicator is being reviewed by someone else; try again")

    def for_case(self, tenant_id: str, case_id: str) -> list[Review]:
        """Every decided indicator of the case, the most recently decided first."""
        docs = self._docs.find(
            REVIEWS, {"tenant_id": tenant_id, "case_id": case_id}, sort=[("decided_at", -1), ("_id", 1)]
        )
        return [Review.model_validate(doc) for doc in docs]

    def for_finding(self, finding: KeyedFinding) -> Review | None:
        """The decisions on the finding's indicator, or None if it was never reviewed."""
        base = finding.finding
        where = {
            "tenant_id": base.tenant_id,
            "case_id": base.case_id,
            "_id": _doc_id(base.case_id, finding.key),
        }
        doc = self._docs.find_one(REVIEWS, where)
        return None if doc is None else Review.model_validate(doc)

    def review_state(
        self, tenant_id: str, case_id: str, findings: Iterable[KeyedFinding]
    ) -> dict[str, ReviewState]:
        """Each finding's id -> the current decision on its indicator, or ``unreviewed``."""
        current = {review.indicator_key: review.decision for review in self.for_case(tenant_id, case_id)}
        return {f.finding.id: current.get(f.key, UNREVIEWED) for f in findings}


def _doc_id(case_id: str, key: str) -> str:
    return f"{case_id}-{key}"


def _fields(review: Review) -> dict[str, Any]:
    """What a review document holds besides its id and scope: the history and the current decision."""
    doc = review.model_dump(mode="json", exclude={"tenant_id", "case_id"})
    current = review.current
    doc.update(
        decision=current.decision,
        reviewer=current.reviewer,
        decided_at=current.decided_at,
        finding_id=current.finding.id,
    )
    return doc


def _keyed(doc: Mapping[str, Any]) -> KeyedFinding:
    fields = {k: v for k, v in doc.items() if k in Finding.model_fields}
    finding = Finding.model_validate({**fields, "id": doc["_id"]})
    media_id = doc.get("media_id") or finding.evidence[0].media_id
    kind = doc.get("kind")
    return KeyedFinding(finding, str(media_id), str(kind) if kind is not None else None, indicator_key(doc))
