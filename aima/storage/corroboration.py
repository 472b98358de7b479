"""Vision and pose on the same frame: a restraint indicator and a matching posture reinforce each
other; a restraint indicator whose posture the body landmarks clearly do not show is kept as a
disagreement. Both are findings of step ``pose`` (``kind`` ``corroborated`` or ``disagreement``),
for human review, never verdicts.

`corroborate` reads a media file's stored vision findings (``kind: restraint``, the fields of
``functions.vision.core.VisionFinding``) and its newest pose result (`aima.storage.poses`), and
makes these findings the file's only corroboration findings. For every restraint indicator on a
frame:

* the postures it expects: the cues that its ``body_position`` names ("behind" → hands behind the
  back; "front", "together", "wrist" → wrists together; "raised", "above", "overhead", "hands up" →
  arms raised; "lying", "floor", "ground" → lying down); without such a word, the restraint postures
  (wrists together, hands behind the back, arms raised); a gag without one expects none;
* **corroborated**: a crop of that frame on which an expected cue holds. The best such cue (its
  confidence times the crop's) is ``b``, the vision confidence ``a``: the finding's confidence is
  ``1 - (1 - a)(1 - b)``, at most 0.95 (the two models look at the same pixels, so their errors are
  not fully independent) and never below ``max(a, b)``. Both are its evidence: the vision
  finding's id, the crop and cue, and the posture finding's id where one was stored (a cue below
  the tenant's floor is not a finding of its own but still counts here);
* **disagreement**: no expected cue holds on the frame, every crop of the frame was posed, and on
  each of them every expected cue is clearly not seen (``holds`` False). Its confidence is the vision
  confidence, unchanged: the indicator stands for review, with the disagreement beside it.

Safe to run from both steps, in any order and again: ids are derived from the vision finding; the
call writes its findings, drops the file's other corroboration findings, then reads its inputs
again and writes once more if they changed meanwhile (up to `ROUNDS` times).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from pydantic import Field

from aima.domain import EvidenceRef, Finding, ModelRef, Step
from aima.storage.documents import DocumentStore
from aima.storage.findings import FINDINGS, FindingRepository
from aima.storage.poses import Cue, PersonCrop, PoseRepository, PoseResult, PostureFinding, posture_finding_id

STEP = Step.POSE
KINDS = ("corroborated", "disagreement")
CAP = 0.95
ROUNDS = 3
RESTRAINT_CUES: tuple[Cue, ...] = ("wrists_together", "hands_behind_back", "arms_raised")
_WORDS: tuple[tuple[re.Pattern[str], Cue], ...] = (
    (re.compile(r"\bbehind\b"), "hands_behind_back"),
    (re.compile(r"\b(front|together|wrists?)\b"), "wrists_together"),
    (re.compile(r"\b(raised|above|overhead)\b|\b(hands|arms) up\b"), "arms_raised"),
    (re.compile(r"\b(lying|lies|lay|floor|ground|prone|supine)\b"), "lying_down"),
)
_NAMESPACE = uuid.UUID("9f4d2a61-7c3e-4b58-8e1a-2d6f0b9c5e73")
_RUN = "corroboration"
_KEYS = ("_id", "tenant_id", "case_id")
F = TypeVar("F", bound=Finding)


class CorroborationFinding(Finding):
    """A vision restraint indicator read together with the body landmarks of the same frame."""

    kind: Literal["corroborated", "disagreement"]
    media_id: str
    frame_id: str
    timestamp_s: float = Field(ge=0)
    vision_finding_id: str
    vision_confidence: float = Field(ge=0, le=1)
    restraint_type: str | None = None
    body_position: str | None = None
    expected_cues: list[Cue]
    pose_version: int = Field(ge=1)
    crop_ids: list[str] = Field(description="corroborated: the matching crop; disagreement: every crop")
    cue: Cue | None = Field(default=None, description="corroborated: the matching posture")
    posture_confidence: float | None = Field(default=None, ge=0, le=1)
    posture_finding_id: str | None = Field(default=None, description="None if below the tenant's floor")
    note: str


class _Restraint(Finding):
    """What corroboration reads of a stored vision finding."""

    media_id: str
    frame_id: str
    timestamp_s: float
    kind: str
    restraint_type: str | None = None
    body_position: str | None = None


@dataclass(frozen=True)
class Corroboration:
    """What one call stored."""

    corroborated: int
    disagreements: int
    rounds: int


def corroborate(documents: DocumentStore, tenant_id: str, case_id: str, media_id: str) -> Corroboration:
    """Make the media file's corroboration findings match its vision findings and newest poses."""
    made = _compute(documents, tenant_id, case_id, media_id)
    rounds = 0
    while rounds < ROUNDS:
        rounds += 1
        _write(documents, tenant_id, case_id, media_id, made)
        again = _compute(documents, tenant_id, case_id, media_id)
        settled = _same(again, made) and _same(_stored(documents, tenant_id, case_id, media_id), made)
        made = again
        if settled:
            break
    corroborated = sum(1 for finding in made if finding.kind == "corroborated")
    return Corroboration(corroborated, len(made) - corroborated, rounds)


def stored_corroborations(
    documents: DocumentStore, tenant_id: str, case_id: str, media_id: str
) -> list[CorroborationFinding]:
    """The media file's corroboration findings, by confidence."""
    return _stored(documents, tenant_id, case_id, media_id)


def expected_cues(restraint_type: str | None, body_position: str | None) -> list[Cue]:
    """The postures a restraint indicator's body position names (see module docstring)."""
    text = (body_position or "").casefold()
    named = [cue for pattern, cue in _WORDS if pattern.search(text)]
    if named:
        return named
    return [] if restraint_type == "gag" else list(RESTRAINT_CUES)


# --- computing -----------------------------------------------------------------------------------


def _compute(
    documents: DocumentStore, tenant_id: str, case_id: str, media_id: str
) -> list[CorroborationFinding]:
    findings = FindingRepository(documents)
    poses = PoseRepository(documents).latest(tenant_id, case_id, media_id)
    if poses is None or poses.status != "completed":
        return []
    vision = findings.list(tenant_id, case_id, media_id=media_id, step=Step.VISION, model=_Restraint)
    postures = {f.id for f in _postures(documents, tenant_id, case_id, media_id)}
    made: list[CorroborationFinding] = []
    for restraint in sorted(
        (f for f in vision if f.kind == "restraint"), key=lambda f: (f.timestamp_s, f.id)
    ):
        expected = expected_cues(restraint.restraint_type, restraint.body_position)
        crops = poses.crops_on(restraint.frame_id)
        if not expected or not crops:
            continue
        found = _corroborated(restraint, expected, crops, poses, postures) or _disagreement(
            restraint, expected, crops, poses
        )
        if found is not None:
            made.append(found)
    return made


def _corroborated(
    restraint: _Restraint, expected: list[Cue], crops: list[PersonCrop], poses: PoseResult, postures: set[str]
) -> CorroborationFinding | None:
    best: tuple[float, PersonCrop, Cue] | None = None
    for crop in crops:
        for check in crop.cues:
            if crop.status == "posed" and check.holds and check.cue in expected:
                strength = round(check.confidence * crop.confidence, 4)
                if best is None or strength > best[0]:
                    best = (strength, crop, check.cue)
    if best is None:
        return None
    b, crop, cue = best
    a = restraint.confidence
    combined = round(max(a, b, min(CAP, 1 - (1 - a) * (1 - b))), 4)
    posture_id = posture_finding_id(poses.media_id, poses.version, crop.id, cue)
    what = cue.replace("_", " ")
    restraint_name = restraint.restraint_type or "a restraint"
    return CorroborationFinding(
        **_common(restraint, expected, poses, "corroborated"),
        label=f"possible restraint indicator seen by vision and pose: {restraint_name}, {what}",
        confidence=combined,
        crop_ids=[crop.id],
        cue=cue,
        posture_confidence=b,
        posture_finding_id=posture_id if posture_id in postures else None,
        note=(
            f"The vision model reports a possible restraint ({_said(restraint)}) with confidence {a:.2f}, "
            f"and the body landmarks of crop {crop.id} show {what} with confidence {b:.2f} on the same "
            "frame. An indicator for human review, not a finding of fact."
        ),
    )


def _disagreement(
    restraint: _Restraint, expected: list[Cue], crops: list[PersonCrop], poses: PoseResult
) -> CorroborationFinding | None:
    if any(crop.status != "posed" for crop in crops):
        return None
    for crop in crops:
        checks = {check.cue: check.holds for check in crop.cues}
        if any(checks.get(cue) is not False for cue in expected):
            return None
    wanted = ", ".join(cue.replace("_", " ") for cue in expected)
    restraint_name = restraint.restraint_type or "a restraint"
    return CorroborationFinding(
        **_common(restraint, expected, poses, "disagreement"),
        label=f"vision and pose disagree: {restraint_name} reported, no matching posture seen",
        confidence=restraint.confidence,
        crop_ids=[crop.id for crop in crops],
        note=(
            f"The vision model reports a possible restraint ({_said(restraint)}), but the body landmarks "
            f"of every person posed on this frame clearly show none of: {wanted}. Both are kept for "
            "human review."
        ),
    )


def _said(restraint: _Restraint) -> str:
    kind = restraint.restraint_type or "unspecified"
    return f"{kind}; body position: {restraint.body_position or 'not stated'}"


def _common(
    restraint: _Restraint,
    expected: list[Cue],
    poses: PoseResult,
    kind: Literal["corroborated", "disagreement"],
) -> dict[str, Any]:
    model = poses.model or ModelRef(name="", version="", backend="none")
    return {
        "id": str(uuid.uuid5(_NAMESPACE, f"{restraint.media_id}/{restraint.id}/{kind}")),
        "tenant_id": restraint.tenant_id,
        "case_id": restraint.case_id,
        "step": STEP,
        "model": model,
        "evidence": [
            EvidenceRef(
                media_id=restraint.media_id,
                start_s=restraint.timestamp_s,
                end_s=restraint.timestamp_s,
                frame_id=restraint.frame_id,
            )
        ],
        "kind": kind,
        "media_id": restraint.media_id,
        "frame_id": restraint.frame_id,
        "timestamp_s": restraint.timestamp_s,
        "vision_finding_id": restraint.id,
        "vision_confidence": restraint.confidence,
        "restraint_type": restraint.restraint_type,
        "body_position": restraint.body_position,
        "expected_cues": expected,
        "pose_version": poses.version,
    }


# --- storing -------------------------------------------------------------------------------------


def _where(tenant_id: str, case_id: str, media_id: str) -> dict[str, Any]:
    return {"tenant_id": tenant_id, "case_id": case_id, "media_id": media_id, "step": STEP.value}


def _write(
    documents: DocumentStore,
    tenant_id: str,
    case_id: str,
    media_id: str,
    made: Sequence[CorroborationFinding],
) -> None:
    for finding in made:
        doc = finding.model_dump(mode="json")
        fields = {key: value for key, value in doc.items() if key not in _KEYS}
        one = {"tenant_id": tenant_id, "case_id": case_id, "_id": finding.id}
        documents.update_one(
            FINDINGS, one, {"$set": {**fields, "media_id": media_id, "run": _RUN}}, upsert=True
        )
    keep = {finding.id for finding in made}
    where: dict[str, Any] = {**_where(tenant_id, case_id, media_id), "kind": {"$in": list(KINDS)}}
    for doc in documents.find(FINDINGS, where):
        if doc["_id"] not in keep:
            documents.delete_many(FINDINGS, {"tenant_id": tenant_id, "case_id": case_id, "_id": doc["_id"]})


def _stored(
    documents: DocumentStore, tenant_id: str, case_id: str, media_id: str
) -> list[CorroborationFinding]:
    where = {**_where(tenant_id, case_id, media_id), "kind": {"$in": list(KINDS)}}
    docs = documents.find(FINDINGS, where, sort=[("confidence", -1), ("_id", 1)])
    return [_parse(doc, CorroborationFinding) for doc in docs]


def _postures(documents: DocumentStore, tenant_id: str, case_id: str, media_id: str) -> list[PostureFinding]:
    where = {**_where(tenant_id, case_id, media_id), "kind": "posture"}
    return [_parse(doc, PostureFinding) for doc in documents.find(FINDINGS, where)]


def _parse(doc: Mapping[str, Any], model: type[F]) -> F:
    fields = {key: value for key, value in doc.items() if key in model.model_fields}
    fields["id"] = doc["_id"]
    return model.model_validate(fields)


def _same(a: Sequence[CorroborationFinding], b: Sequence[CorroborationFinding]) -> bool:
    def key(findings: Sequence[CorroborationFinding]) -> list[dict[str, Any]]:
        return sorted((f.model_dump(mode="json") for f in findings), key=lambda doc: str(doc["id"]))

    return key(a) == key(b)
