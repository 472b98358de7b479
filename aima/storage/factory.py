"""`Stores`: every storage adapter of one process, opened from settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from aima.settings import Settings
from aima.storage.cache import Cache, cache_from_url
from aima.storage.documents import DocumentStore
from aima.storage.objects import ObjectStore, object_store_from_settings
from aima.storage.relational import Database
from aima.storage.vectors import VectorStore


@dataclass
class Stores:
    """The relational, object, vector, document and cache stores chosen by settings.

    The vector store opens on first use (Milvus Lite takes a second or two to start), so commands
    that never touch vectors do not pay for it.
    """

    db: Database
    objects: ObjectStore
    documents: DocumentStore
    cache: Cache
    settings: Settings
    migrate_vectors: bool = True
    _vectors: VectorStore | None = field(default=None, init=False, repr=False)

    @classmethod
    def open(cls, settings: Settings, *, migrate: bool = True) -> Stores:
        """Connect every store; with ``migrate`` bring the schema (and, when opened, the vector
        collections) up to date."""
        assert settings.cache_url is not None  # filled or required by the profile
        db = Database.from_settings(settings)
        if migrate:
            db.migrate()
        return cls(
            db=db,
            objects=object_store_from_settings(settings),
            documents=DocumentStore.from_settings(settings),
            cache=cache_from_url(settings.cache_url),
            settings=settings,
            migrate_vectors=migrate,
        )

    @property
    def vectors(self) -> VectorStore:
        """The vector store, opened (and its collections ensured) on first use."""
        if self._vectors is None:
            from aima.storage.vectors_milvus import vector_store_from_settings  # pymilvus is slow to import

            vectors = vector_store_from_settings(self.settings)
            if self.migrate_vectors:
                vectors.ensure_collections(configured_dimensions(self.settings))
            self._vectors = vectors
        return self._vectors

    def purge_case(self, case_id: str) -> dict[str, int]:
        """Delete everything of a case outside the relational store: objects under
        `case_object_prefix`, its vectors, its documents and cache entries under `case_cache_prefix`.
        Returns how many of each were deleted; idempotent. The rows are the caller's
        (`aima.storage.cases.CaseRepository.delete_rows`)."""
        return {
            "objects": self.objects.delete_prefix(case_object_prefix(case_id)),
            "vectors": self.vectors.delete_case(case_id),
            "documents": self.documents.delete_case(case_id),
            "cache": self.cache.delete_prefix(case_cache_prefix(case_id)),
        }

    def health_checks(self) -> dict[str, Callable[[], None]]:
        """One readiness check per store, for the health registry."""
        return {
            "database": self.db.health,
            "objects": self.objects.health,
            "vectors": lambda: self.vectors.health(),
            "documents": self.documents.health,
            "cache": self.cache.health,
        }

    def close(self) -> None:
        """Release connections and file handles."""
        if self._vectors is not None:
            self._vectors.close()
        self.documents.close()
        self.cache.close()
        self.db.dispose()


EMBEDDERS = {"faces": "face_analyzer", "voices": "voice_embedder", "texts": "text_embedder"}
"""Which model task fills which vector collection."""


def configured_dimensions(settings: Settings) -> dict[str, int]:
    """Collection -> the dimension its configured model states (collections of other models keep
    their default size, or the size they were created with)."""
    dimensions: dict[str, int] = {}
    for collection, task in EMBEDDERS.items():
        block = getattr(settings.models, task)
        dimension = getattr(block, "dimension", None)
        if block.configured and dimension is not None:
            dimensions[collection] = int(dimension)
    return dimensions


def case_object_prefix(case_id: str) -> str:
    """Where a case's objects live in the object store: every key of the case starts with this."""
    return f"cases/{case_id}/"


def case_cache_prefix(case_id: str) -> str:
    """The prefix of every cache key that belongs to a case (purged with the case)."""
    return f"case:{case_id}:"
