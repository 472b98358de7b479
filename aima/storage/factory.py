"""`Stores`: every storage adapter of one process, opened from settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aima.settings import Settings
from aima.storage.cache import Cache, cache_from_url
from aima.storage.documents import DocumentStore
from aima.storage.objects import ObjectStore, object_store_from_settings
from aima.storage.relational import Database
from aima.storage.vectors import VectorStore
from aima.storage.vectors_milvus import vector_store_from_settings


@dataclass
class Stores:
    """The relational, object, vector, document and cache stores chosen by settings."""

    db: Database
    objects: ObjectStore
    vectors: VectorStore
    documents: DocumentStore
    cache: Cache

    @classmethod
    def open(cls, settings: Settings, *, migrate: bool = True) -> Stores:
        """Connect every store; with ``migrate`` bring the schema and vector collections up to date."""
        assert settings.cache_url is not None  # filled or required by the profile
        db = Database.from_settings(settings)
        if migrate:
            db.migrate()
        vectors = vector_store_from_settings(settings)
        if migrate:
            vectors.ensure_collections()
        return cls(
            db=db,
            objects=object_store_from_settings(settings),
            vectors=vectors,
            documents=DocumentStore.from_settings(settings),
            cache=cache_from_url(settings.cache_url),
        )

    def health_checks(self) -> dict[str, Callable[[], None]]:
        """One readiness check per store, for the health registry."""
        return {
            "database": self.db.health,
            "objects": self.objects.health,
            "vectors": self.vectors.health,
            "documents": self.documents.health,
            "cache": self.cache.health,
        }

    def close(self) -> None:
        """Release connections and file handles."""
        self.vectors.close()
        self.documents.close()
        self.cache.close()
        self.db.dispose()
