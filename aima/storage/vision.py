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

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from aima.domain import ModelRef, utcnow
from aima.storage.documents import DocumentStore, DuplicateDocument

VISION = "vision"
MAX_VERSION_RACE = 20


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


class VisionRepository:
    """Versioned scene descriptions of media files, scoped by tenant and case."""

    def __init__(self, documents: DocumentStore) -> None:
        self._docs = documents

    def latest(self, tenant_id: str, case_id: str, media_id: str) -> VisionDocument | None:
        """The newest version for the media file, or None."""
        found = self._docs.find(
            VISION, _where(tenant_id, case_id, media_id=media_id), sort=[("version", -1)], limit=1
        )
        return _document(found[0]) if found else None

    def get(self, tenant_id: str, case_id: str, media_id: str, version: int) -> VisionDocument | None:
        doc = self._docs.find_one(VISION, _where(tenant_id, case_id, _id=_doc_id(media_id, version)))
        return _document(doc) if doc else None

    def versions(self, tenant_id: str, case_id: str, media_id: str) -> list[int]:
        """The stored version numbers, oldest first."""
        docs = self._docs.find(VISION, _where(tenant_id, case_id, media_id=media_id), sort=[("version", 1)])
        return [int(doc["version"]) for doc in docs]

    def add(self, document: VisionDocument) -> VisionDocument:
        """Store ``document`` as the media file's next version (its ``version`` is replaced)."""
        for _ in range(MAX_VERSION_RACE):
            current = self.versions(document.tenant_id, document.case_id, document.media_id)
            candidate = document.model_copy(update={"version": (current[-1] if current else 0) + 1})
            doc = candidate.model_dump(mode="python")
            doc["_id"] = _doc_id(candidate.media_id, candidate.version)
            try:
                self._docs.insert_one(VISION, doc)
            except DuplicateDocument:  # a concurrent run took this version: try the next
                continue
            return candidate
        raise RuntimeError(f"could not find a free vision version for media {document.media_id}")

    def delete_media(self, tenant_id: str, case_id: str, media_id: str) -> int:
        """Remove every version of the media file's descriptions."""
        return self._docs.delete_many(VISION, _where(tenant_id, case_id, media_id=media_id))


def _doc_id(media_id: str, version: int) -> str:
    return f"{media_id}-v{version}"


def _where(tenant_id: str, case_id: str, **fields: Any) -> dict[str, Any]:
    return {"tenant_id": tenant_id, "case_id": case_id, **fields}


def _document(doc: Mapping[str, Any]) -> VisionDocument:
    return VisionDocument.model_validate({key: value for key, value in doc.items() if key != "_id"})
