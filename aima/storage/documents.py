"""The document store: one adapter over the pymongo API, on MongoDB (cluster) or litemongo (embedded).

litemongo keeps each collection in an SQLite file and evaluates queries with an embedded copy of
mongomock, so only part of MongoDB's language behaves alike on both. This adapter accepts exactly
that subset and refuses anything else with ValueError, so code tested embedded runs on MongoDB:

* filters: field equality (also dotted paths into sub-documents), ``$in``, ``$ne``, ``$gt``,
  ``$gte``, ``$lt``, ``$lte``;
* updates: ``$set``, ``$inc``, ``$setOnInsert`` (with ``upsert``);
* ``sort`` on one or more fields (1 ascending, -1 descending), ``limit``;
* values: str, int, float, bool, None, lists, sub-documents and timezone-aware datetimes (read back in UTC).

Every document carries ``tenant_id`` and ``case_id`` (so scoping and `DocumentStore.delete_case`
work) and a string ``_id``; updates may not change those three fields.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlparse

import litemongo
from litemongo.sqlite_store import ServerStore
from pymongo import MongoClient
from pymongo.errors import ConnectionFailure, DuplicateKeyError, ServerSelectionTimeoutError

from aima.storage import outages

if TYPE_CHECKING:
    from pymongo.database import Database

    from aima.settings import Settings

Document = dict[str, Any]
T = TypeVar("T")

SCOPE = ("tenant_id", "case_id")
FILTER_OPERATORS = frozenset({"$in", "$ne", "$gt", "$gte", "$lt", "$lte"})
UPDATE_OPERATORS = frozenset({"$set", "$inc", "$setOnInsert"})
FIXED_FIELDS = frozenset({"_id", *SCOPE})

# no server answers (selection timed out), or the connection failed or dropped (AutoReconnect, timeouts)
outages.register("document store", ConnectionFailure, ServerSelectionTimeoutError)


class DuplicateDocument(ValueError):
    """An insert named an ``_id`` that is already stored in that collection."""


class DocumentStore:
    """Case-scoped documents in named collections (see the module docstring for the query subset).

    Build one with `from_uri`. litemongo's SQLite connections may only be used by the thread that
    opened them, so its calls all run on one dedicated thread; MongoDB's client is called directly.
    """

    def __init__(
        self, client: MongoClient[Document], db: str, *, executor: ThreadPoolExecutor | None = None
    ) -> None:
        self._client = client
        self._db: Database[Document] = client[db]
        self._executor = executor

    @classmethod
    def from_uri(cls, uri: str, db: str, *, timeout: float = 5.0) -> DocumentStore:
        """``litemongo:///ABSOLUTE/PATH`` (a folder) or a ``mongodb://``/``mongodb+srv://`` URL.

        ``timeout`` bounds how long a MongoDB call waits for a reachable server.
        """
        parsed = urlparse(uri)
        if parsed.scheme in ("mongodb", "mongodb+srv"):
            millis = int(timeout * 1000)
            client: MongoClient[Document] = MongoClient(
                uri, serverSelectionTimeoutMS=millis, connectTimeoutMS=millis, tz_aware=True
            )
            return cls(client, db)
        if parsed.scheme == "litemongo":
            if parsed.netloc or not parsed.path.startswith("/"):
                raise ValueError(f"litemongo URI must be litemongo:///ABSOLUTE/PATH, got {uri!r}")
            path = Path(parsed.path)
            executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="litemongo")
            opened = executor.submit(lambda: litemongo.MongoClient(ServerStore(path), tz_aware=True))
            return cls(opened.result(), db, executor=executor)
        raise ValueError(f"unsupported document store URI: {uri!r}")

    @classmethod
    def from_settings(cls, settings: Settings) -> DocumentStore:
        """The store named by ``AIMA_DOCUMENTS_URI`` and ``AIMA_DOCUMENTS_DB``."""
        if settings.documents_uri is None:
            raise ValueError("AIMA_DOCUMENTS_URI is not set")
        return cls.from_uri(settings.documents_uri, settings.documents_db, timeout=settings.health_timeout)

    def insert_one(self, collection: str, doc: Mapping[str, Any]) -> str:
        """Store a copy of ``doc`` (``_id`` is generated if missing); returns its id.
        `DuplicateDocument` if that ``_id`` is taken."""
        stored = dict(doc)
        stored.setdefault("_id", uuid.uuid4().hex)
        for field in ("_id", *SCOPE):
            if not isinstance(stored.get(field), str) or not stored[field]:
                raise ValueError(f"document needs a non-empty string {field!r}")
        try:
            self._run(lambda: self._db[collection].insert_one(stored))
        except DuplicateKeyError as exc:
            raise DuplicateDocument(f"{collection} already holds a document {stored['_id']!r}") from exc
        return str(stored["_id"])

    def find(
        self,
        collection: str,
        filter: Mapping[str, Any],
        *,
        sort: list[tuple[str, int]] | None = None,
        limit: int = 0,
    ) -> list[Document]:
        """Matching documents, ordered by ``sort``, at most ``limit`` of them (0: all)."""
        _check_filter(filter)
        if sort is not None and any(direction not in (1, -1) for _, direction in sort):
            raise ValueError("sort directions are 1 or -1")
        if limit < 0:
            raise ValueError("limit must be >= 0")
        return self._run(lambda: list(self._db[collection].find(filter, sort=sort, limit=limit)))

    def find_one(self, collection: str, filter: Mapping[str, Any]) -> Document | None:
        """The first matching document, or None."""
        _check_filter(filter)
        return self._run(lambda: self._db[collection].find_one(filter))

    def update_one(
        self, collection: str, filter: Mapping[str, Any], update: Mapping[str, Any], *, upsert: bool = False
    ) -> int:
        """Update the first match; returns 1 if a document was matched or upserted, else 0.

        An upsert's filter must name ``tenant_id`` and ``case_id`` by equality, so the new document has them.
        """
        _check_filter(filter)
        _check_update(update)
        if upsert:
            if not all(isinstance(filter.get(field), str) and filter[field] for field in SCOPE):
                raise ValueError("an upsert filter needs tenant_id and case_id equal to strings")
            on_insert = dict(update.get("$setOnInsert", {}))
            if "_id" not in filter:
                on_insert["_id"] = uuid.uuid4().hex
            update = {**update, "$setOnInsert": on_insert}
        result = self._run(lambda: self._db[collection].update_one(filter, update, upsert=upsert))
        return 1 if result.upserted_id is not None else result.matched_count

    def delete_many(self, collection: str, filter: Mapping[str, Any]) -> int:
        """Delete every match; returns how many."""
        _check_filter(filter)
        return self._run(lambda: self._db[collection].delete_many(filter).deleted_count)

    def count(self, collection: str, filter: Mapping[str, Any]) -> int:
        """How many documents match."""
        _check_filter(filter)
        return self._run(lambda: self._db[collection].count_documents(filter))

    def delete_case(self, case_id: str) -> int:
        """Delete the case's documents from every collection; returns how many."""

        def delete() -> int:
            names = self._db.list_collection_names()
            return sum(self._db[name].delete_many({"case_id": case_id}).deleted_count for name in names)

        return self._run(delete)

    def health(self) -> None:
        """Raise if the store cannot answer a ping."""
        self._run(lambda: self._db.command("ping"))

    def close(self) -> None:
        """Close the client (and litemongo's thread); the store is unusable afterwards."""
        self._run(self._client.close)
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    def _run(self, call: Callable[[], T]) -> T:
        if self._executor is None:
            return call()
        return self._executor.submit(call).result()


def _check_filter(filter: Mapping[str, Any]) -> None:
    for field, condition in filter.items():
        if field.startswith("$"):
            raise ValueError(f"filter operator {field} is outside the supported subset")
        if isinstance(condition, Mapping) and any(str(key).startswith("$") for key in condition):
            unsupported = set(condition) - FILTER_OPERATORS
            if unsupported:
                raise ValueError(f"filter operators {sorted(unsupported)} are outside the supported subset")
            if "$in" in condition and not isinstance(condition["$in"], list):
                raise ValueError("$in takes a list")


def _check_update(update: Mapping[str, Any]) -> None:
    if not update:
        raise ValueError("empty update")
    for operator, fields in update.items():
        if operator not in UPDATE_OPERATORS:
            raise ValueError(f"update operator {operator} is outside the supported subset")
        if not isinstance(fields, Mapping):
            raise ValueError(f"{operator} takes a document of fields")
        touched = FIXED_FIELDS & set(fields)
        if touched:
            raise ValueError(f"updates may not change {sorted(touched)}")
