"""Vector store over `pymilvus.MilvusClient`; the only module importing pymilvus.

A `*.db` file path is Milvus Lite (embedded, FLAT index); an `http(s)://host:19530` URI is a Milvus
server (AUTOINDEX). Collections are named `aima_<name>`, use strong consistency and COSINE, and carry
INVERTED indexes on the filter fields. Filters only ever contain ids checked by `validate_id`.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

# gRPC (under pymilvus) logs a line on every fork while its threads run; the pipeline forks only to
# exec tools (ffmpeg, tesseract), whose children never use gRPC, so its fork handlers are not needed
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
# Milvus Lite 2.5 imports pkg_resources, whose deprecation warning would reach every CLI's stderr
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

from pymilvus import DataType, MilvusClient, MilvusException

from aima.storage.vectors import (
    COLLECTIONS,
    MAX_ID_LENGTH,
    MAX_LIMIT,
    MAX_REF_LENGTH,
    VectorDimensionMismatch,
    VectorHit,
    VectorRecord,
    VectorStore,
    dimension,
    validate_dimension,
    validate_id,
    validate_record,
    validate_vector,
)

if TYPE_CHECKING:
    from aima.settings import Settings

PREFIX = "aima_"
BATCH = 1000
_STRONG = "Strong"
_FILTER_FIELDS = ("tenant_id", "case_id", "media_id")


class _LiteIteratorNotice(logging.Filter):
    """Milvus Lite gives an iterator no server timestamp; pymilvus then takes the client's latest (what a
    strong read wants anyway) and logs a warning for every iterator. That line is dropped for Lite."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "failed to get mvccTs" not in record.getMessage()


_ITERATOR_LOG = logging.getLogger("pymilvus.client.iterator.query_iterator")


class MilvusVectorStore(VectorStore):
    """`VectorStore` on Milvus Lite (file uri) or a Milvus server (http/https uri)."""

    def __init__(self, uri: str, token: str | None = None) -> None:
        self._lite = "://" not in uri
        if self._lite:
            if not uri.endswith(".db"):
                raise ValueError(f"a Milvus Lite path must end with .db: {uri!r}")
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
            if not any(isinstance(f, _LiteIteratorNotice) for f in _ITERATOR_LOG.filters):
                _ITERATOR_LOG.addFilter(_LiteIteratorNotice())
        self._client = MilvusClient(uri=uri, token=token or "", dedicated=True)
        self._dimensions: dict[str, int] = {}  # collection -> dimension as stored, read once

    def ensure_collections(self, dimensions: Mapping[str, int] | None = None) -> None:
        wanted: dict[str, int] = {}
        for name, dim in (dimensions or {}).items():
            dimension(name)  # refuses an unknown collection
            wanted[name] = validate_dimension(dim)
        for name, default in COLLECTIONS.items():
            self._ensure(name, wanted.get(name, default), strict=name in wanted)

    def ensure_collection(self, collection: str, dim: int) -> None:
        dimension(collection)
        self._ensure(collection, validate_dimension(dim), strict=True)

    def _ensure(self, name: str, dim: int, *, strict: bool) -> None:
        """Create the collection sized ``dim`` if missing; an existing one keeps its dimension,
        which must equal ``dim`` when ``strict``."""
        physical = PREFIX + name
        load = True
        if not self._client.has_collection(physical):
            try:
                self._client.create_collection(physical, schema=_schema(dim), consistency_level=_STRONG)
            except MilvusException:
                if not self._client.has_collection(physical):  # not a lost creation race
                    raise
                load = False  # the winner indexes and loads it
            else:
                # sync=False skips pymilvus' 0.5 s polling per index: the collection is empty, load waits
                self._client.create_index(physical, self._index_params(), sync=False)
        stored = self._stored_dimension(physical)
        self._dimensions[name] = stored
        if strict and stored != dim:
            raise VectorDimensionMismatch(name, stored, dim)
        if load:
            self._client.load_collection(physical)

    def _stored_dimension(self, physical: str) -> int:
        for field in self._client.describe_collection(physical)["fields"]:
            if field["name"] == "vector":
                return int(field["params"]["dim"])
        raise ValueError(f"collection {physical!r} has no vector field")

    def _dimension(self, collection: str) -> int:
        """The dimension of ``collection`` as stored (its default while it does not exist)."""
        default = dimension(collection)
        if collection not in self._dimensions:
            physical = PREFIX + collection
            if not self._client.has_collection(physical):
                return default
            self._dimensions[collection] = self._stored_dimension(physical)
        return self._dimensions[collection]

    def upsert(self, collection: str, records: Iterable[VectorRecord]) -> int:
        dim = self._dimension(collection)
        rows = [
            {
                "id": record.id,
                "tenant_id": record.tenant_id,
                "case_id": record.case_id,
                "media_id": record.media_id,
                "ref": record.ref,
                "vector": validate_record(collection, record, dim),
            }
            for record in records
        ]
        for start in range(0, len(rows), BATCH):
            self._client.upsert(PREFIX + collection, rows[start : start + BATCH])
        return len(rows)

    def search(
        self, collection: str, vector: Sequence[float], *, tenant_id: str, case_id: str, limit: int = 10
    ) -> list[VectorHit]:
        values = validate_vector(collection, vector, self._dimension(collection))
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be 1..{MAX_LIMIT}")
        tenant_id = validate_id(tenant_id, "tenant_id")
        case_id = validate_id(case_id, "case_id")
        results = self._client.search(
            PREFIX + collection,
            data=[values],
            filter=f'tenant_id == "{tenant_id}" and case_id == "{case_id}"',
            limit=limit,
            output_fields=["tenant_id", "case_id", "media_id", "ref"],
            search_params={"metric_type": "COSINE"},
            consistency_level=_STRONG,
        )
        hits = []
        for hit in results[0]:
            entity: dict[str, Any] = hit["entity"]
            if entity["tenant_id"] == tenant_id and entity["case_id"] == case_id:  # defence in depth
                hits.append(
                    VectorHit(
                        str(hit["id"]),
                        case_id,
                        str(entity["media_id"]),
                        str(entity["ref"]),
                        float(hit["distance"]),
                    )
                )
        return hits

    def delete_media(self, media_id: str, *, case_id: str) -> int:
        media_id = validate_id(media_id, "media_id")
        return self._delete(f'case_id == "{validate_id(case_id, "case_id")}" and media_id == "{media_id}"')

    def delete_media_in(
        self, collection: str, media_id: str, *, case_id: str, keep: Collection[str] = ()
    ) -> int:
        dimension(collection)
        media_id = validate_id(media_id, "media_id")
        expression = f'case_id == "{validate_id(case_id, "case_id")}" and media_id == "{media_id}"'
        physical = PREFIX + collection
        if not self._client.has_collection(physical):
            return 0
        kept = set(keep)
        stale: list[str] = []
        rows = self._client.query_iterator(
            physical, batch_size=BATCH, filter=expression, output_fields=["id"], consistency_level=_STRONG
        )
        try:
            while batch := rows.next():
                stale.extend(str(row["id"]) for row in batch if str(row["id"]) not in kept)
        finally:
            rows.close()
        for start in range(0, len(stale), BATCH):
            self._client.delete(physical, ids=stale[start : start + BATCH])
        return len(stale)

    def delete_case(self, case_id: str) -> int:
        return self._delete(f'case_id == "{validate_id(case_id, "case_id")}"')

    def count(self, collection: str, *, case_id: str | None = None) -> int:
        dimension(collection)
        return self._count(
            PREFIX + collection, "" if case_id is None else f'case_id == "{validate_id(case_id, "case_id")}"'
        )

    def health(self) -> None:
        self._client.list_collections()

    def close(self) -> None:
        """Close this store's connection (idempotent); Lite's in-process server stops at process exit."""
        self._client.close()

    def _delete(self, expression: str) -> int:
        """Delete by filter in every collection; the count is taken first since deletes report none."""
        deleted = 0
        for name in COLLECTIONS:
            physical = PREFIX + name
            found = self._count(physical, expression)
            if found:
                self._client.delete(physical, filter=expression)
                deleted += found
        return deleted

    def _count(self, physical: str, expression: str) -> int:
        rows = self._client.query(
            physical, filter=expression, output_fields=["count(*)"], consistency_level=_STRONG
        )
        return int(rows[0]["count(*)"])

    def _index_params(self) -> Any:
        params = MilvusClient.prepare_index_params()
        params.add_index(
            field_name="vector", index_type="FLAT" if self._lite else "AUTOINDEX", metric_type="COSINE"
        )
        for field in _FILTER_FIELDS:
            params.add_index(field_name=field, index_type="INVERTED")
        return params


def _schema(dim: int) -> Any:
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=MAX_ID_LENGTH)
    for field in _FILTER_FIELDS:
        schema.add_field(field, DataType.VARCHAR, max_length=MAX_ID_LENGTH)
    schema.add_field("ref", DataType.VARCHAR, max_length=MAX_REF_LENGTH)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    return schema


def vector_store_from_settings(settings: Settings) -> VectorStore:
    """The Milvus store at `settings.vector_uri` (a Lite file in the embedded profile)."""
    uri = settings.vector_uri or str(settings.data_dir / "vectors.db")
    token = settings.vector_token.get_secret_value() if settings.vector_token else None
    return MilvusVectorStore(uri, token)
