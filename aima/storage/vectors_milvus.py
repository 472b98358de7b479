"""Vector store over `pymilvus.MilvusClient`; the only module importing pymilvus.

A `*.db` file path is Milvus Lite (embedded, FLAT index); an `http(s)://host:19530` URI is a Milvus
server (AUTOINDEX). Collections are named `aima_<name>` and carry INVERTED indexes on the filter
fields. Filters only ever contain ids checked by `validate_id`.

**Layout.** A collection created by this module also holds ``case_key``, a 63-bit hash of tenant and
case id (`case_key`), and stores unit vectors under the IP metric (for unit vectors IP is the cosine
similarity, so scores are unchanged). A search filters on ``case_key == N`` alone and checks the
tenant and case of every hit; if a hit belongs elsewhere (two cases sharing a key: odds of about
2^-63 a pair) it searches again with the tenant and case ids themselves. On a server ``case_key`` is
the partition key (`NUM_PARTITIONS` partitions), so a search reads only the partition holding its
case. On Milvus Lite 2.5 it is an ordinary field: Lite implements no partitions and refuses every
filter on a collection with a partition key (milvus-io/milvus#43163). Measured on Lite with 100,000
faces in 10 cases (``benchmarks/_face_search_bench.py``, docs/storage.md): a search takes about 3-4
ms, 2.6-2.8x NumPy brute force over the case's rows; the layout before took about 7 ms (4.6-5.7x):
Lite's brute force is slower under COSINE than under IP, and the filter compared two strings per
row. What remains is Lite's own cost per search (the call, the plan, a pass over every row of the
collection).

**Older collections** (no ``case_key``: files and servers from before this layout) keep working
unchanged: COSINE, filtered on the tenant and case strings, no partitions. Nothing is migrated
automatically; a collection gets the new layout when it is created again (drop it and re-run the
steps that fill it, or start from an empty data folder).

**Consistency.** Reads are Strong. The pipeline writes in one process and searches in another (faces
writes the tracks that persons searches a moment later; speakers links to voices another replica
saved), so Session consistency, which pymilvus tracks per client, would not give read-your-writes, and
Bounded could miss the write that triggered the search. On Lite the level makes no difference
(measured: Strong, Bounded, Session and Eventually all within noise); on a server Strong waits for
the latest time tick.

**Flush.** Writes are not flushed: on Lite a flush is a no-op (2 ms, no change to search time), and
on a server a flush per small write would seal many tiny segments. A bulk writer calls `flush` once
when done, which on a server seals the segments so that their index is built.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import warnings
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

# gRPC (under pymilvus) logs a line on every fork while its threads run; the pipeline forks only to
# exec tools (ffmpeg, tesseract), whose children never use gRPC, so its fork handlers are not needed
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
# Milvus Lite 2.5 imports pkg_resources, whose deprecation warning would reach every CLI's stderr
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

from pymilvus import DataType, MilvusClient, MilvusException  # noqa: E402 - after the settings above

from aima.storage.vectors import (  # noqa: E402
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
NUM_PARTITIONS = 64
"""Partitions of a collection created on a Milvus server (partition key ``case_key``): a case's rows
sit in one of them, so a search reads about 1/64 of the collection."""
CASE_KEY = "case_key"
_STRONG = "Strong"
_FILTER_FIELDS = ("tenant_id", "case_id", "media_id")
_OUTPUT_FIELDS = ["tenant_id", "case_id", "media_id", "ref"]


def case_key(tenant_id: str, case_id: str) -> int:
    """The ``case_key`` of a tenant's case: 63 bits of BLAKE2b over both ids (``/`` is not an id
    character, so the pair is unambiguous); non-negative, so that it is a plain INT64 literal."""
    digest = hashlib.blake2b(f"{tenant_id}/{case_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


@dataclass(frozen=True)
class _Layout:
    """How a stored collection is organised: its dimension, and whether it has ``case_key`` (unit
    vectors under IP, searched by the key) or is an older one (COSINE, searched by the id strings)."""

    dim: int
    keyed: bool

    @property
    def metric(self) -> str:
        return "IP" if self.keyed else "COSINE"


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
        self._layouts: dict[str, _Layout] = {}  # collection -> its layout as stored, read once

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
            partitioned = not self._lite  # Lite has no partitions (module docstring)
            try:
                self._client.create_collection(
                    physical,
                    schema=_schema(dim, partition_key=partitioned),
                    consistency_level=_STRONG,
                    **({"num_partitions": NUM_PARTITIONS} if partitioned else {}),
                )
            except MilvusException:
                if not self._client.has_collection(physical):  # not a lost creation race
                    raise
                load = False  # the winner indexes and loads it
            else:
                # sync=False skips pymilvus' 0.5 s polling per index: the collection is empty, load waits
                self._client.create_index(physical, self._index_params(), sync=False)
        layout = self._stored_layout(physical)
        self._layouts[name] = layout
        if strict and layout.dim != dim:
            raise VectorDimensionMismatch(name, layout.dim, dim)
        if load:
            self._client.load_collection(physical)

    def _stored_layout(self, physical: str) -> _Layout:
        fields = {field["name"]: field for field in self._client.describe_collection(physical)["fields"]}
        if "vector" not in fields:
            raise ValueError(f"collection {physical!r} has no vector field")
        return _Layout(int(fields["vector"]["params"]["dim"]), keyed=CASE_KEY in fields)

    def _layout(self, collection: str) -> _Layout:
        """The layout of ``collection`` as stored (the default one while it does not exist)."""
        default = _Layout(dimension(collection), keyed=True)
        if collection not in self._layouts:
            physical = PREFIX + collection
            if not self._client.has_collection(physical):
                return default
            self._layouts[collection] = self._stored_layout(physical)
        return self._layouts[collection]

    def upsert(self, collection: str, records: Iterable[VectorRecord]) -> int:
        layout = self._layout(collection)
        rows: list[dict[str, Any]] = []
        for record in records:
            row: dict[str, Any] = {
                "id": record.id,
                "tenant_id": record.tenant_id,
                "case_id": record.case_id,
                "media_id": record.media_id,
                "ref": record.ref,
                "vector": _unit(validate_record(collection, record, layout.dim)),
            }
            if layout.keyed:
                row[CASE_KEY] = case_key(record.tenant_id, record.case_id)
            rows.append(row)
        for start in range(0, len(rows), BATCH):
            self._client.upsert(PREFIX + collection, rows[start : start + BATCH])
        return len(rows)

    def flush(self, collection: str) -> None:
        """Seal the collection's segments (a server then builds their index); for bulk writers."""
        dimension(collection)
        physical = PREFIX + collection
        if self._client.has_collection(physical):
            self._client.flush(physical)

    def search(
        self, collection: str, vector: Sequence[float], *, tenant_id: str, case_id: str, limit: int = 10
    ) -> list[VectorHit]:
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be 1..{MAX_LIMIT}")
        tenant_id = validate_id(tenant_id, "tenant_id")
        case_id = validate_id(case_id, "case_id")
        layout = self._layout(collection)
        values = _unit(validate_vector(collection, vector, layout.dim))
        by_ids = f'tenant_id == "{tenant_id}" and case_id == "{case_id}"'
        by_key = f"{CASE_KEY} == {case_key(tenant_id, case_id)}"
        found = self._search(collection, layout, values, limit, by_key if layout.keyed else by_ids)
        if any(entity["tenant_id"] != tenant_id or entity["case_id"] != case_id for _, _, entity in found):
            # another tenant's case shares the key: search by the ids themselves, which is exact
            found = self._search(collection, layout, values, limit, by_ids)
        return [
            VectorHit(hit_id, case_id, str(entity["media_id"]), str(entity["ref"]), score)
            for hit_id, score, entity in found
            if entity["tenant_id"] == tenant_id and entity["case_id"] == case_id  # defence in depth
        ]

    def _search(
        self, collection: str, layout: _Layout, values: list[float], limit: int, expression: str
    ) -> list[tuple[str, float, dict[str, Any]]]:
        results = self._client.search(
            PREFIX + collection,
            data=[values],
            filter=expression,
            limit=limit,
            output_fields=_OUTPUT_FIELDS,
            search_params={"metric_type": layout.metric},
            consistency_level=_STRONG,
        )
        return [(str(hit["id"]), float(hit["distance"]), hit["entity"]) for hit in results[0]]

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
        """FLAT on Lite: exact, and the only choice that is, since Lite searches every collection as
        one growing segment whose interim IVF index ignores ``nprobe`` (recall@10 0.27 on random
        vectors, measured); AUTOINDEX on a server."""
        params = MilvusClient.prepare_index_params()
        params.add_index(
            field_name="vector", index_type="FLAT" if self._lite else "AUTOINDEX", metric_type="IP"
        )
        for field in _FILTER_FIELDS:  # not case_key: partition pruning finds a case's rows on a server
            params.add_index(field_name=field, index_type="INVERTED")
        return params


def _schema(dim: int, *, partition_key: bool) -> Any:
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=MAX_ID_LENGTH)
    for field in _FILTER_FIELDS:
        schema.add_field(field, DataType.VARCHAR, max_length=MAX_ID_LENGTH)
    schema.add_field(CASE_KEY, DataType.INT64, is_partition_key=partition_key)
    schema.add_field("ref", DataType.VARCHAR, max_length=MAX_REF_LENGTH)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    return schema


def _unit(values: list[float]) -> list[float]:
    """``values`` scaled to length 1 (`validate_vector` has refused a zero vector)."""
    norm = math.hypot(*values)
    return [value / norm for value in values]


def vector_store_from_settings(settings: Settings) -> VectorStore:
    """The Milvus store at `settings.vector_uri` (a Lite file in the embedded profile)."""
    uri = settings.vector_uri or str(settings.data_dir / "vectors.db")
    token = settings.vector_token.get_secret_value() if settings.vector_token else None
    return MilvusVectorStore(uri, token)
