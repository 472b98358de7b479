"""Findings written straight into the stores as the steps store them (no model): a vision restraint
indicator and a posture cue on one frame. For review tests and the API's
route tables."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from aima.domain import EvidenceRef, ModelRef, Step
from aima.storage.documents import DocumentStore
from aima.storage.findings import FindingRepository
from aima.storage.poses import Landmark, PostureFinding, posture_finding_id
from functions.vision.core import VisionFinding

VISION_MODEL = ModelRef(name="qwen2.5-vl", version="3b", backend="test")
POSE_MODEL = ModelRef(name="mediapipe-pose", version="1", backend="test")
FRAME = "frame-0001"
FRAME_S = 4.0


@dataclass(frozen=True)
class SeededFindings:
    media_id: str
    restraint: str  # the vision finding's id
    posture: str  # the posture finding's id


def vision_finding(
    tenant_id: str,
    case_id: str,
    media_id: str,
    *,
    run: str,
    frame_id: str = FRAME,
    timestamp_s: float = FRAME_S,
    restraint_type: str = "rope",
    confidence: float = 0.7,
) -> VisionFinding:
    """A restraint indicator as the vision core stores it: its id derives from the run."""
    return VisionFinding.model_validate(
        {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{run}/{media_id}/{frame_id}/restraint/0")),
            "tenant_id": tenant_id,
            "case_id": case_id,
            "step": Step.VISION,
            "model": VISION_MODEL,
            "evidence": [
                EvidenceRef(media_id=media_id, start_s=timestamp_s, end_s=timestamp_s, frame_id=frame_id)
            ],
            "media_id": media_id,
            "frame_id": frame_id,
            "timestamp_s": timestamp_s,
            "vision_version": 1,
            "kind": "restraint",
            "restraint_type": restraint_type,
            "body_position": "hands behind the back",
            "scene": "a room",
            "context_given": False,
            "label": f"possible restraint indicator: {restraint_type}",
            "confidence": confidence,
            "note": "An indicator for human review, not a finding of fact.",
        }
    )


def posture_finding(
    tenant_id: str, case_id: str, media_id: str, *, pose_version: int = 1, confidence: float = 0.6
) -> PostureFinding:
    """A posture cue on a person crop as the pose step stores it: its id derives from the pose version."""
    crop_id = f"{FRAME}-F1"
    return PostureFinding(
        id=posture_finding_id(media_id, pose_version, crop_id, "hands_behind_back"),
        tenant_id=tenant_id,
        case_id=case_id,
        step=Step.POSE,
        label="possible posture: hands behind the back",
        confidence=confidence,
        model=POSE_MODEL,
        evidence=[EvidenceRef(media_id=media_id, start_s=FRAME_S, end_s=FRAME_S, frame_id=FRAME)],
        media_id=media_id,
        frame_id=FRAME,
        timestamp_s=FRAME_S,
        pose_version=pose_version,
        crop_id=crop_id,
        cue="hands_behind_back",
        cue_confidence=confidence,
        crop_confidence=0.9,
        landmarks=[Landmark(name="left_wrist", x=0.4, y=0.6, visibility=0.9)],
        note="An indicator for human review, not a finding of fact.",
    )


def seed_findings(
    documents: DocumentStore, tenant_id: str, case_id: str, *, media_id: str | None = None, run: str = "run-1"
) -> SeededFindings:
    """One restraint indicator (vision) and one posture cue (pose) on the same frame of a file."""
    media = media_id or str(uuid.uuid4())
    repository = FindingRepository(documents)
    restraint = vision_finding(tenant_id, case_id, media, run=run)
    posture = posture_finding(tenant_id, case_id, media)
    repository.replace_media(tenant_id, case_id, media, Step.VISION, [restraint], run=run)
    repository.replace_media(tenant_id, case_id, media, Step.POSE, [posture], run=f"pose-{run}")
    return SeededFindings(media, restraint.id, posture.id)


def review_request(
    documents: DocumentStore, tenant_id: str, case_id: str
) -> tuple[str, str, dict[str, object]]:
    """(method, path, body) of a successful decision on a freshly seeded finding (for the route tables)."""
    seed = seed_findings(documents, tenant_id, case_id)
    path = f"/api/v1/cases/{case_id}/findings/{seed.restraint}/review"
    return "PUT", path, {"decision": "confirmed", "reason": "rope visible at both wrists"}
