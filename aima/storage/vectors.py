"""Vector-store port: embeddings of faces, voices and texts, always searched within one tenant and case.

Record ids must be unique per collection (e.g. UUIDs): an upsert with an existing id replaces it.
Ids, tenant, case and media ids are restricted to `[A-Za-z0-9_-]` so that adapters can place them in
filter expressions without any escaping.
"""

from __future__ import annotations

import abc
import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

COLLECTIONS: dict[str, int] = {"faces": 128, "voices": 256, "texts": 384}
"""Collection name -> default vector dimension (the model that fills a collection may size it
differently through `VectorStore.ensure_collection`)."""

MAX_DIMENSION = 32768

MAX_ID_LENGTH = 128
MAX_REF_LENGTH = 512
MAX_LIMIT = 1000

_ID = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_ID_LENGTH}}}")


@dataclass(frozen=True)
class VectorRecord:
    """One embedding; `ref` points at its evidence (a frame, segment or chunk id)."""

    id: str
    tenant_id: str
    case_id: str
    media_id: str
    vector: Sequence[float]
    ref: str = ""


@dataclass(frozen=True)
class VectorHit:
    """A search result; `score` is the cosine similarity (higher is nearer)."""

    id: str
    case_id: str
    media_id: str
    ref: str
    score: float


def validate_id(value: str, what: str = "id") -> str:
    """Return `value` if it is 1..128 characters of `[A-Za-z0-9_-]`, else raise ValueError."""
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise ValueError(f"{what} must be 1..{MAX_ID_LENGTH} characters of [A-Za-z0-9_-]: {value!r}")
    return value


def dimension(collection: str) -> int:
    """The vector dimension of `collection`; ValueError for an unknown one."""
    try:
        return COLLECTIONS[collection]
    except KeyError:
        raise ValueError(f"unknown collection {collection!r}; known: {sorted(COLLECTIONS)}") from None


class VectorDimensionMismatch(ValueError):
    """A collection exists with another dimension than the one asked for."""

    def __init__(self, collection: str, stored: int, wanted: int) -> None:
        self.collection, self.stored, self.wanted = collection, stored, wanted
        super().__init__(
            f"vector collection {collection!r} holds {stored}-d vectors but {wanted}-d were asked for: "
            f"configure a model with {stored}-d vectors, or re-embed the collection"
        )


def validate_dimension(value: int) -> int:
    """`value` if it is a usable vector dimension (1..MAX_DIMENSION), else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_DIMENSION:
        raise ValueError(f"vector dimension must be 1..{MAX_DIMENSION}, got {value!r}")
    return value


def validate_vector(collection: str, vector: Sequence[float], dim: int | None = None) -> list[float]:
    """The vector as floats if it has the collection's dimension (``dim``, or the default of
    `COLLECTIONS`), finite values and a non-zero norm."""
    expected = dimension(collection) if dim is None else dim
    values = [float(x) for x in vector]
    if len(values) != expected:
        raise ValueError(f"{collection} vectors have {expected} dimensions, got {len(values)}")
    if not all(math.isfinite(x) for x in values) or not any(values):
        raise ValueError("vector values must be finite and not all zero")
    return values


def validate_record(collection: str, record: VectorRecord, dim: int | None = None) -> list[float]:
    """Check every id of `record` and its vector; return the vector as floats."""
    validate_id(record.id)
    validate_id(record.tenant_id, "tenant_id")
    validate_id(record.case_id, "case_id")
    validate_id(record.media_id, "media_id")
    if len(record.ref.encode()) > MAX_REF_LENGTH:
        raise ValueError(f"ref longer than {MAX_REF_LENGTH} bytes (UTF-8)")
    return validate_vector(collection, record.vector, dim)


class VectorStore(abc.ABC):
    """Port for embeddings in the collections of `COLLECTIONS`, using cosine similarity."""

    @abc.abstractmethod
    def ensure_collections(self, dimensions: Mapping[str, int] | None = None) -> None:
        """Create (or load) every collection; safe to call repeatedly. A collection named in
        ``dimensions`` is ensured with that dimension (`ensure_collection`); any other is created
        with its default dimension if missing and otherwise kept as it is."""

    @abc.abstractmethod
    def ensure_collection(self, collection: str, dim: int) -> None:
        """Create (or load) one collection sized ``dim``; `VectorDimensionMismatch` if it exists
        with another dimension. Later upserts and searches expect ``dim`` values."""

    @abc.abstractmethod
    def upsert(self, collection: str, records: Iterable[VectorRecord]) -> int:
        """Insert or replace records; ValueError on an unknown collection, wrong dimension or bad id."""

    def flush(self, collection: str) -> None:
        """Seal what was written so far, once after a bulk load (not after every write): an adapter
        whose index is built per sealed segment builds it then. Searches see writes without it."""
        dimension(collection)

    @abc.abstractmethod
    def search(
        self, collection: str, vector: Sequence[float], *, tenant_id: str, case_id: str, limit: int = 10
    ) -> list[VectorHit]:
        """Nearest records of that tenant AND case only, best first."""

    @abc.abstractmethod
    def delete_media(self, media_id: str, *, case_id: str) -> int:
        """Delete the media's vectors in every collection; return how many."""

    @abc.abstractmethod
    def delete_media_in(
        self, collection: str, media_id: str, *, case_id: str, keep: Collection[str] = ()
    ) -> int:
        """Delete the media's records in ``collection`` only, except those whose id is in ``keep``
        (e.g. the records a re-analysis just wrote); return how many. Other collections are untouched."""

    @abc.abstractmethod
    def delete_case(self, case_id: str) -> int:
        """Delete the case's vectors in every collection; return how many."""

    @abc.abstractmethod
    def count(self, collection: str, *, case_id: str | None = None) -> int:
        """Exact number of records (of one case, if given), including the effect of recent deletes."""

    @abc.abstractmethod
    def health(self) -> None:
        """Raise if the store cannot be reached."""

    @abc.abstractmethod
    def close(self) -> None: ...
