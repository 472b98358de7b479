"""Faces found in a media file's frames, in the document store: one document per version.

Collection ``faces`` (`aima.storage.versioned`): each run of the ``faces`` function stores the
file's next version. A version lists the file's **tracks**: the detections of one face followed
across consecutive sampled frames of a video (a person visible in 300 frames is one track), or one
detection of a still image. Each track keeps its detections (frame, time, box, five landmarks,
detector, score and quality), its best detection (the sharpest, largest, most frontal), the object
key of that detection's crop, and its embedding: the normalised mean of its detections' vectors,
which is also the track's vector in the case's ``faces`` collection (vector id = track id), so a
vector hit names its track.

Boxes and landmarks are in pixels of the upright frame (EXIF orientation and video rotation
applied before detection).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from aima.domain import ModelRef, utcnow
from aima.storage.documents import DocumentStore
from aima.storage.versioned import SkippedFrame, VersionedRepository

FACES = "faces"
"""The document collection, and the vector collection of track embeddings."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FaceBox(_Model):
    """A box in pixels of the upright frame."""

    x: float
    y: float
    width: float = Field(gt=0)
    height: float = Field(gt=0)

    @property
    def area(self) -> float:
        return self.width * self.height

    def iou(self, other: FaceBox) -> float:
        """Intersection over union of the two boxes."""
        w = min(self.x + self.width, other.x + other.width) - max(self.x, other.x)
        h = min(self.y + self.height, other.y + other.height) - max(self.y, other.y)
        inter = max(0.0, w) * max(0.0, h)
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0


class FaceDetection(_Model):
    """One face on one frame."""

    frame_id: str
    timestamp_s: float = Field(ge=0)
    box: FaceBox
    landmarks: list[tuple[float, float]] = Field(
        default_factory=list, description="five points: eye corners, nose (dlib's five-point order)"
    )
    detector: str = Field(max_length=40, description="which detector found it: mediapipe, cnn, hog, ...")
    score: float = Field(ge=0, le=1, description="detection confidence")
    quality: float = Field(ge=0, le=1, description="how useful the face is to recognise: size, sharpness")


class FaceTrack(_Model):
    """One face followed across frames of a video, or one face of an image."""

    id: str = Field(description="{media_id}-v{version}-{label}; also its vector's id")
    label: str = Field(pattern=r"^F[1-9][0-9]{0,5}$", description="F1, F2, ... by first appearance")
    detections: list[FaceDetection] = Field(min_length=1)
    best: int = Field(ge=0, description="index of the best detection (its crop is the track's crop)")
    crop_key: str | None = Field(default=None, description="object key of the best detection's crop")
    embedding: str = Field(description="the track's unit vector, base64 float32 little-endian")

    @property
    def first_s(self) -> float:
        return self.detections[0].timestamp_s

    @property
    def last_s(self) -> float:
        return self.detections[-1].timestamp_s

    @property
    def best_detection(self) -> FaceDetection:
        return self.detections[self.best]

    @property
    def quality(self) -> float:
        return self.best_detection.quality


class FaceResult(_Model):
    """One version of a media file's faces."""

    tenant_id: str
    case_id: str
    media_id: str
    version: int = Field(default=1, ge=1)
    status: Literal["completed", "not_run"] = "completed"
    reason: str | None = None
    model: ModelRef | None = None
    frames: int = Field(default=0, ge=0, description="frames read")
    frame_sizes: dict[str, tuple[int, int]] = Field(
        default_factory=dict, description="frame id -> (width, height) of the upright frame"
    )
    tracks: list[FaceTrack] = Field(default_factory=list)
    skipped: list[SkippedFrame] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=utcnow)

    def faces_on(self, frame_id: str) -> list[tuple[FaceTrack, FaceDetection]]:
        """The tracks seen on ``frame_id`` with their detection there."""
        return [
            (track, detection)
            for track in self.tracks
            for detection in track.detections
            if detection.frame_id == frame_id
        ]


def track_id(media_id: str, version: int, label: str) -> str:
    return f"{media_id}-v{version}-{label}"


class FaceRepository(VersionedRepository[FaceResult]):
    """Versioned face results of media files, scoped by tenant and case."""

    def __init__(self, documents: DocumentStore) -> None:
        super().__init__(documents, FACES, FaceResult)
