"""Sensitivity scores of a media file's frames, and whether its images are served blurred.

Collection ``sensitivity``: one document per media file and version (`aima.storage.versioned`),
written by the ``sensitivity`` function: each frame's id, object key, timestamp and Open-NSFW score
(0..1), the frames that could not be read with the reason, the model, and the tenant's threshold at
scoring time (for the record and the event only).

**The threshold is applied when an image is served, not when it is scored**: the stored score is
compared with the tenant's *current* ``thresholds.sensitive_blur``, so a changed threshold takes
effect at once, without a new run. An image is sensitive (`Verdict.sensitive`) when its score is at
or above the threshold; the score that counts is, for

* a frame: its own;
* a face crop: that of the frame it was cut from;
* the thumbnail and the preview strip: the highest of the file's frames (they are made from the file's
  own pictures and which frame they show is not recorded; an image file's only frame is its still);
* any image without a score (the step has not run yet, ran ``not_run``, or skipped the frame): none,
  so it is served as it is, and the answer says it was not scored.

Scores are read from the newest *completed* version: a later ``not_run`` (no model any more) does not
unblur what an earlier run scored. Blurred derivatives: `aima.storage.blurred`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from aima.domain import ModelRef, utcnow
from aima.storage.documents import DocumentStore
from aima.storage.versioned import SkippedFrame, VersionedRepository

SENSITIVITY = "sensitivity"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FrameScore(_Model):
    """One frame's score."""

    frame_id: str
    object_key: str
    timestamp_s: float = Field(ge=0)
    score: float = Field(ge=0, le=1, description="the model's probability of explicit material")


class SensitivityResult(_Model):
    """One version of a media file's frame scores."""

    tenant_id: str
    case_id: str
    media_id: str
    version: int = Field(ge=1)
    status: Literal["completed", "not_run"] = "completed"
    reason: str | None = None
    model: ModelRef | None = None
    threshold: float | None = Field(default=None, ge=0, le=1, description="the tenant's, when scored")
    frames: list[FrameScore] = Field(default_factory=list)
    skipped: list[SkippedFrame] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=utcnow)

    def score_of(self, frame_id: str) -> float | None:
        """The frame's score, or None if it was not scored."""
        return next((frame.score for frame in self.frames if frame.frame_id == frame_id), None)

    def highest(self) -> FrameScore | None:
        """The frame with the highest score, or None if none was scored."""
        return max(self.frames, key=lambda frame: frame.score, default=None)

    def flagged(self, threshold: float) -> int:
        """How many frames are at or above ``threshold``."""
        return sum(1 for frame in self.frames if Verdict(frame.score, threshold).sensitive)


@dataclass(frozen=True)
class Verdict:
    """Whether an image is served blurred: its score (None: not scored) against the threshold, and
    the frame the score is of."""

    score: float | None
    threshold: float
    frame_id: str | None = None

    @property
    def sensitive(self) -> bool:
        return self.score is not None and self.score >= self.threshold


class SensitivityRepository(VersionedRepository[SensitivityResult]):
    """Versioned frame scores of media files, scoped by tenant and case."""

    def __init__(self, documents: DocumentStore) -> None:
        super().__init__(documents, SENSITIVITY, SensitivityResult)
        self._documents = documents

    def latest_completed(self, tenant_id: str, case_id: str, media_id: str) -> SensitivityResult | None:
        """The newest completed version (the scores that count), or None."""
        where = {"tenant_id": tenant_id, "case_id": case_id, "media_id": media_id, "status": "completed"}
        found = self._documents.find(SENSITIVITY, where, sort=[("version", -1)], limit=1)
        return self._result(found[0]) if found else None

    def frame_verdict(
        self, tenant_id: str, case_id: str, media_id: str, frame_id: str, threshold: float
    ) -> Verdict:
        """A frame's (or a crop of it's) verdict at ``threshold``."""
        result = self.latest_completed(tenant_id, case_id, media_id)
        return Verdict(result.score_of(frame_id) if result else None, threshold, frame_id)

    def media_verdict(self, tenant_id: str, case_id: str, media_id: str, threshold: float) -> Verdict:
        """The verdict for the file's thumbnail and preview: its highest frame score at ``threshold``."""
        result = self.latest_completed(tenant_id, case_id, media_id)
        top = result.highest() if result else None
        return Verdict(top.score if top else None, threshold, top.frame_id if top else None)
