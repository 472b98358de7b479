"""Scene descriptions in the document store: one document per media file and version.

Collection ``vision``: ``_id = {media_id}-v{version}``; each run of the `vision` step inserts the
next version (an insert with an existing id fails, so two racing runs cannot overwrite each other:
the loser takes the next number). Readers take the highest version. A document lists every frame
the step was given with its outcome: ``described`` with the model's structured description (kept
as the model returned it), or ``failed`` with the reason; a ``not_run`` document has no frames and
says why. Every read is scoped by tenant and case; deleting a case removes these documents with the
rest of the case.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from aima.domain import ModelRef, utcnow
from aima.storage.documents import DocumentStore
from aima.storage.versioned import VersionedRepository

VISION = "vision"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FrameVision(_Model):
    """One frame's outcome: its description, or why it has none."""

    frame_id: str
    object_key: str
    timestamp_s: float = Field(ge=0)
    status: Literal["described", "failed"]
    reason: str | None = None
    description: dict[str, Any] | None = None


class VisionDocument(_Model):
    """What the vision step found in one media file's frames, one version per run."""

    tenant_id: str
    case_id: str
    media_id: str
    version: int = Field(default=1, ge=1)
    status: Literal["completed", "not_run"] = "completed"
    reason: str | None = None
    model: ModelRef | None = None
    context_prompt: str | None = Field(default=None, description="the case context sent with the frames")
    frames: list[FrameVision] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def described(self) -> list[FrameVision]:
        return [frame for frame in self.frames if frame.status == "described"]

    @property
    def failed(self) -> list[FrameVision]:
        return [frame for frame in self.frames if frame.status == "failed"]


class VisionRepository(VersionedRepository[VisionDocument]):
    """Versioned scene descriptions of media files, scoped by tenant and case."""

    def __init__(self, documents: DocumentStore) -> None:
        super().__init__(documents, VISION, VisionDocument)
