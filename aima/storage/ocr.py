"""Text recognised in a media file's frames, in the document store: one document per version.

Collection ``ocr``: one document per media file and version (`aima.storage.versioned`).

A line (`OcrLine`) is one piece of text as it stays visible: the same normalised text in
overlapping boxes on consecutive frames is one line, with the first and last frame and timestamp.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from aima.domain import ModelRef, utcnow
from aima.storage.documents import DocumentStore
from aima.storage.versioned import SkippedFrame, VersionedRepository

OCR = "ocr"
_SPACE = re.compile(r"\s+")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextBox(_Model):
    """A box in pixels of the upright frame."""

    x: float = Field(ge=0)
    y: float = Field(ge=0)
    width: float = Field(ge=0)
    height: float = Field(ge=0)

    def overlaps(self, other: TextBox) -> bool:
        """Whether the boxes share any area (a line that moved a little still overlaps itself)."""
        return min(self.x + self.width, other.x + other.width) > max(self.x, other.x) and min(
            self.y + self.height, other.y + other.height
        ) > max(self.y, other.y)


class OcrLine(_Model):
    """A line of text as long as it stays visible on consecutive frames."""

    id: str = Field(description="stable id: {media_id}-l{first timestamp ms}-{index on that frame}")
    text: str
    language: str | None = None
    confidence: float = Field(ge=0, le=1, description="the best confidence over its frames")
    box: TextBox = Field(description="its box on the first frame")
    first_s: float = Field(ge=0)
    last_s: float = Field(ge=0)
    first_frame_id: str
    last_frame_id: str
    frame_ids: list[str] = Field(default_factory=list)


class OcrResult(_Model):
    """One version of a media file's recognised text."""

    tenant_id: str
    case_id: str
    media_id: str
    version: int = Field(ge=1)
    status: Literal["completed", "not_run"] = "completed"
    reason: str | None = None
    model: ModelRef | None = None
    frames: int = Field(default=0, ge=0, description="frames read")
    lines: list[OcrLine] = Field(default_factory=list)
    skipped: list[SkippedFrame] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=utcnow)


def normalise(text: str) -> str:
    """The text as compared across frames: NFKC, case-folded, white space collapsed."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip().casefold()


class OcrRepository(VersionedRepository[OcrResult]):
    """Versioned OCR results of media files, scoped by tenant and case."""

    def __init__(self, documents: DocumentStore) -> None:
        super().__init__(documents, OCR, OcrResult)
