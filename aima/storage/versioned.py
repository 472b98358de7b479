"""One document per media file and version: how every analysis step keeps its results.

A collection of versioned results has ``_id = {media_id}-v{version}``; each run of the step inserts
the next version (an insert with an existing id fails, so two racing runs never overwrite each
other: the loser takes the next number). Readers take the highest version; older versions stay
readable. Every read is scoped by tenant and case; deleting a case removes the documents with the
rest of the case, deleting a media file removes its versions (`delete_media`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from aima.storage.documents import DocumentStore, DuplicateDocument

MAX_VERSION_RACE = 20


class SkippedFrame(BaseModel):
    """A frame a step could not look at, and why (the step's other frames go on)."""

    model_config = ConfigDict(extra="forbid")

    frame_id: str
    timestamp_s: float = Field(ge=0)
    reason: str


class VersionedResult(Protocol):
    """What a versioned result has: its scope and its version."""

    tenant_id: str
    case_id: str
    media_id: str
    version: int


R = TypeVar("R", bound=BaseModel)


class VersionedRepository(Generic[R]):
    """Versioned results of type ``model`` in ``collection`` (see module docstring)."""

    def __init__(self, documents: DocumentStore, collection: str, model: type[R]) -> None:
        self._docs = documents
        self._collection = collection
        self._model = model

    def latest(self, tenant_id: str, case_id: str, media_id: str) -> R | None:
        """The newest version for the media file, or None."""
        found = self._docs.find(
            self._collection, _where(tenant_id, case_id, media_id=media_id), sort=[("version", -1)], limit=1
        )
        return self._result(found[0]) if found else None

    def get(self, tenant_id: str, case_id: str, media_id: str, version: int) -> R | None:
        doc = self._docs.find_one(self._collection, _where(tenant_id, case_id, _id=doc_id(media_id, version)))
        return self._result(doc) if doc else None

    def versions(self, tenant_id: str, case_id: str, media_id: str) -> list[int]:
        """The stored version numbers, oldest first."""
        docs = self._docs.find(
            self._collection, _where(tenant_id, case_id, media_id=media_id), sort=[("version", 1)]
        )
        return [int(doc["version"]) for doc in docs]

    def latest_for_case(self, tenant_id: str, case_id: str) -> dict[str, R]:
        """Media id -> its newest version, for every media file of the case."""
        newest: dict[str, R] = {}
        for doc in self._docs.find(self._collection, _where(tenant_id, case_id), sort=[("version", 1)]):
            result = self._result(doc)
            newest[str(doc["media_id"])] = result
        return newest

    def add(self, result: R) -> R:
        """Store ``result`` as the media file's next version (its ``version`` is replaced)."""
        scoped: Any = result
        for _ in range(MAX_VERSION_RACE):
            current = self.versions(scoped.tenant_id, scoped.case_id, scoped.media_id)
            candidate = result.model_copy(update={"version": (current[-1] if current else 0) + 1})
            doc = candidate.model_dump(mode="python")
            doc["_id"] = doc_id(scoped.media_id, doc["version"])
            try:
                self._docs.insert_one(self._collection, doc)
            except DuplicateDocument:  # a concurrent run took this version: try the next
                continue
            return candidate
        raise RuntimeError(f"could not find a free {self._collection} version for media {scoped.media_id}")

    def delete_media(self, tenant_id: str, case_id: str, media_id: str) -> int:
        """Remove every version of the media file's results."""
        return self._docs.delete_many(self._collection, _where(tenant_id, case_id, media_id=media_id))

    def _result(self, doc: Mapping[str, Any]) -> R:
        return self._model.model_validate({key: value for key, value in doc.items() if key != "_id"})


def doc_id(media_id: str, version: int) -> str:
    return f"{media_id}-v{version}"


def _where(tenant_id: str, case_id: str, **fields: Any) -> dict[str, Any]:
    return {"tenant_id": tenant_id, "case_id": case_id, **fields}
