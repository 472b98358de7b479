"""Body landmarks and posture cues of a media file's people, in the document store: one version per run.

Collection ``poses`` (`aima.storage.versioned`): each run of the ``pose`` function stores the
file's next version, made from one face result version (``faces_version``). A version lists every
**person crop** it looked at: a region of a frame around one face (``track_id``), or the whole
frame where no face was found; per crop the box, how much of a neighbour falls into it
(``overlap``), its outcome (``posed``, ``no_body``, ``skipped_overlap``, ``skipped_mismatch``) with
the reason, MediaPipe's 33 landmarks in pixels of the upright frame, how surely the skeleton is the
crop's person (``confidence``) and the four posture cues as checked on it (`CueCheck`).

`PostureFinding` is what the step stores as findings (`aima.storage.findings`, step ``pose``):
a cue that holds on a crop, with the landmarks it was read from; an indicator for human review,
never a verdict.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from aima.domain import Finding, ModelRef, utcnow
from aima.storage.documents import DocumentStore
from aima.storage.faces import FaceBox
from aima.storage.versioned import SkippedFrame, VersionedRepository

POSES = "poses"

Cue = Literal["wrists_together", "hands_behind_back", "arms_raised", "lying_down"]
CUES: tuple[Cue, ...] = ("wrists_together", "hands_behind_back", "arms_raised", "lying_down")
CropStatus = Literal["posed", "no_body", "skipped_overlap", "skipped_mismatch"]
_NAMESPACE = uuid.UUID("5b0e9f3a-2c71-4d8e-a6f4-91c2d7e3b845")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CropBox(_Model):
    """A region of a frame, in pixels of the upright frame."""

    x: float = Field(ge=0)
    y: float = Field(ge=0)
    width: float = Field(ge=0)
    height: float = Field(ge=0)


class Landmark(_Model):
    """One body landmark (MediaPipe's name) in pixels of the upright frame."""

    name: str
    x: float
    y: float
    z: float | None = Field(default=None, description="relative depth, larger is farther from the camera")
    visibility: float = Field(ge=0, le=1)


class CueCheck(_Model):
    """One posture cue as read from a crop's landmarks."""

    cue: Cue
    holds: bool | None = Field(description="True: seen; False: clearly not; None: cannot tell")
    confidence: float = Field(ge=0, le=1, description="how clearly it holds (0 unless it holds)")
    measure: float | None = Field(default=None, description="the cue's geometric measure (docs/pose.md)")
    landmarks: list[str] = Field(default_factory=list, description="the landmarks it was read from")
    detail: str = ""


class PersonCrop(_Model):
    """One crop around one person of a frame and what the pose model found in it."""

    id: str = Field(description="{frame_id}-{track label}, or {frame_id}-frame for a frame without faces")
    frame_id: str
    timestamp_s: float = Field(ge=0)
    track_id: str | None = Field(default=None, description="the face track the crop was built around")
    face_box: FaceBox | None = None
    box: CropBox
    trimmed: bool = Field(default=False, description="cut back towards a neighbour beside the person")
    neighbours: int = Field(default=0, ge=0, description="other people whose torso reaches into the crop")
    overlap: float = Field(default=0.0, ge=0, le=1, description="largest share of a neighbour's torso inside")
    status: CropStatus
    reason: str | None = None
    confidence: float = Field(default=0.0, ge=0, le=1, description="how surely the skeleton is this person")
    pose_score: float | None = Field(
        default=None, ge=0, le=1, description="mean visibility of the upper body"
    )
    landmarks: list[Landmark] = Field(default_factory=list)
    cues: list[CueCheck] = Field(default_factory=list)

    def landmark(self, name: str) -> Landmark | None:
        return next((point for point in self.landmarks if point.name == name), None)

    def check(self, cue: Cue) -> CueCheck | None:
        return next((check for check in self.cues if check.cue == cue), None)


class PoseResult(_Model):
    """One version of a media file's poses."""

    tenant_id: str
    case_id: str
    media_id: str
    version: int = Field(default=1, ge=1)
    status: Literal["completed", "not_run"] = "completed"
    reason: str | None = None
    model: ModelRef | None = None
    faces_version: int | None = Field(default=None, ge=1)
    frames: int = Field(default=0, ge=0, description="frames read")
    crops: list[PersonCrop] = Field(default_factory=list)
    skipped: list[SkippedFrame] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def posed(self) -> list[PersonCrop]:
        return [crop for crop in self.crops if crop.status == "posed"]

    @property
    def skipped_crops(self) -> list[PersonCrop]:
        return [crop for crop in self.crops if crop.status.startswith("skipped")]

    def crops_on(self, frame_id: str) -> list[PersonCrop]:
        return [crop for crop in self.crops if crop.frame_id == frame_id]


class PostureFinding(Finding):
    """A posture cue seen on one person crop: the body-position half of a restraint indicator."""

    kind: Literal["posture"] = "posture"
    media_id: str
    frame_id: str
    timestamp_s: float = Field(ge=0)
    pose_version: int = Field(ge=1)
    crop_id: str
    track_id: str | None = None
    cue: Cue
    cue_confidence: float = Field(ge=0, le=1, description="how clearly the landmarks show the cue")
    crop_confidence: float = Field(ge=0, le=1, description="how surely the skeleton is this person")
    measure: float | None = None
    landmarks: list[Landmark] = Field(description="the landmarks the cue was read from")
    note: str


def posture_finding_id(media_id: str, pose_version: int, crop_id: str, cue: Cue) -> str:
    """The deterministic id of a cue's finding on a crop of a pose version."""
    return str(uuid.uuid5(_NAMESPACE, f"{media_id}/v{pose_version}/{crop_id}/{cue}"))


class PoseRepository(VersionedRepository[PoseResult]):
    """Versioned pose results of media files, scoped by tenant and case."""

    def __init__(self, documents: DocumentStore) -> None:
        super().__init__(documents, POSES, PoseResult)
