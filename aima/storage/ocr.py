"""Text recognised in a media file's frames, in the document store: one document per version.

Collection ``ocr``: ``_id = {media_id}-v{version}``; each run of the ``ocr`` function inserts the
next version (an insert with an existing id fails, so two racing runs never overwrite each other:
the loser takes the next number). Readers take the highest version. Every read is scoped by
tenant and case; deleting a case removes the documents with the rest of the case.

A line (`OcrLine`) is one piece of text as it stays visible: the same normalised text in
overlapping boxes on consecutive frames is one line, with the first and last frame and timestamp.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from aima.domain import ModelRef, utcnow
from aima.storage.documents import DocumentStore, DuplicateDocument

OCR = "ocr"
MAX_VERSION_RACE = 20
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


class SkippedFrame(_Model):
    frame_id: str
    timestamp_s: float = Field(ge=0)
    reason: str


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


class OcrRepository:
    """Versioned OCR results of media files, scoped by tenant and case."""

    def __init__(self, documents: DocumentStore) -> None:
        self._docs = documents

    def latest(self, tenant_id: str, case_id: str, media_id: str) -> OcrResult | None:
        found = self._docs.find(
            OCR, _where(tenant_id, case_id, media_id=media_id), sort=[("version", -1)], limit=1
        )
        return _result(found[0]) if found else None

    def get(self, tenant_id: str, case_id: str, media_id: str, version: int) -> OcrResult | None:
        doc = self._docs.find_one(OCR, _where(tenant_id, case_id, _id=_doc_id(media_id, version)))
        return _result(doc) if doc else None

    def versions(self, tenant_id: str, case_id: str, media_id: str) -> list[int]:
        docs = self._docs.find(OCR, _where(tenant_id, case_id, media_id=media_id), sort=[("version", 1)])
        return [int(doc["version"]) for doc in docs]

    def add(self, result: OcrResult) -> OcrResult:
        """Store ``result`` as the media's next version (its ``version`` is replaced)."""
        for _ in range(MAX_VERSION_RACE):
            current = self.versions(result.tenant_id, result.case_id, result.media_id)
            candidate = result.model_copy(update={"version": (current[-1] if current else 0) + 1})
            doc = candidate.model_dump(mode="python")
            doc["_id"] = _doc_id(candidate.media_id, candidate.version)
            try:
                self._docs.insert_one(OCR, doc)
            except DuplicateDocument:
                continue
            return candidate
        raise RuntimeError(f"could not find a free OCR version for media {result.media_id}")

    def delete_media(self, tenant_id: str, case_id: str, media_id: str) -> int:
        return self._docs.delete_many(OCR, _where(tenant_id, case_id, media_id=media_id))


def _doc_id(media_id: str, version: int) -> str:
    return f"{media_id}-v{version}"


def _where(tenant_id: str, case_id: str, **fields: Any) -> dict[str, Any]:
    return {"tenant_id": tenant_id, "case_id": case_id, **fields}


def _result(doc: Mapping[str, Any]) -> OcrResult:
    return OcrResult.model_validate({key: value for key, value in doc.items() if key != "_id"})
