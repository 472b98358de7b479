"""The document store on litemongo (on disk), limited to the query subset MongoDB shares with it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pymongo.errors import ServerSelectionTimeoutError

from aima.settings import Settings
from aima.storage.documents import DocumentStore


def uri(path: Path) -> str:
    return f"litemongo://{path.absolute()}"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DocumentStore]:
    documents = DocumentStore.from_uri(uri(tmp_path / "docs"), "aima")
    yield documents
    documents.close()


def segment(case: str, start: float, speaker: str, **extra: Any) -> dict[str, Any]:
    return {"tenant_id": "t1", "case_id": case, "start": start, "speaker": speaker, **extra}


@pytest.fixture
def segments(store: DocumentStore) -> DocumentStore:
    for start, speaker in [(0.0, "A"), (2.5, "B"), (5.0, "A"), (7.5, "C")]:
        store.insert_one("segments", segment("c1", start, speaker, words={"count": int(start) + 1}))
    store.insert_one("segments", segment("c2", 1.0, "A", words={"count": 1}))
    return store


def starts(docs: list[dict[str, Any]]) -> list[float]:
    return [doc["start"] for doc in docs]


def test_documents_survive_close_and_reopen(tmp_path: Path) -> None:
    seen = datetime(2025, 3, 1, 12, 30, tzinfo=UTC)
    first = DocumentStore.from_uri(uri(tmp_path / "docs"), "aima")
    doc_id = first.insert_one("findings", {"tenant_id": "t1", "case_id": "c1", "seen": seen, "tags": ["a"]})
    first.close()

    reopened = DocumentStore.from_uri(uri(tmp_path / "docs"), "aima")
    found = reopened.find_one("findings", {"_id": doc_id})
    reopened.close()

    assert isinstance(doc_id, str)
    assert found == {"_id": doc_id, "tenant_id": "t1", "case_id": "c1", "seen": seen, "tags": ["a"]}
    assert found["seen"].utcoffset().total_seconds() == 0


def test_equality_dotted_paths_and_comparisons(segments: DocumentStore) -> None:
    assert starts(segments.find("segments", {"case_id": "c1", "speaker": "A"})) == [0.0, 5.0]
    assert starts(segments.find("segments", {"case_id": "c1", "words.count": 6})) == [5.0]
    assert starts(segments.find("segments", {"speaker": {"$in": ["B", "C"]}})) == [2.5, 7.5]
    assert starts(segments.find("segments", {"case_id": "c1", "speaker": {"$ne": "A"}})) == [2.5, 7.5]
    assert starts(segments.find("segments", {"case_id": "c1", "start": {"$gte": 2.5, "$lte": 5.0}})) == [
        2.5,
        5.0,
    ]
    assert starts(segments.find("segments", {"case_id": "c1", "start": {"$gt": 2.5, "$lt": 7.5}})) == [5.0]
    assert segments.count("segments", {"case_id": "c1"}) == 4
    assert segments.count("segments", {"case_id": "nope"}) == 0
    assert segments.find_one("segments", {"speaker": "Z"}) is None


def test_sort_and_limit(segments: DocumentStore) -> None:
    by_start = segments.find("segments", {"case_id": "c1"}, sort=[("start", -1)], limit=2)
    assert starts(by_start) == [7.5, 5.0]
    two_keys = segments.find("segments", {"case_id": "c1"}, sort=[("speaker", 1), ("start", -1)])
    assert [(d["speaker"], d["start"]) for d in two_keys] == [("A", 5.0), ("A", 0.0), ("B", 2.5), ("C", 7.5)]
    assert len(segments.find("segments", {}, limit=0)) == 5


def test_set_inc_and_upsert(store: DocumentStore) -> None:
    doc_id = store.insert_one("persons", {"tenant_id": "t1", "case_id": "c1", "label": "P1", "faces": 1})

    assert (
        store.update_one("persons", {"_id": doc_id}, {"$set": {"label": "Alice"}, "$inc": {"faces": 2}}) == 1
    )
    assert store.update_one("persons", {"_id": "missing"}, {"$set": {"label": "x"}}) == 0
    assert store.find_one("persons", {"_id": doc_id}) == {
        "_id": doc_id,
        "tenant_id": "t1",
        "case_id": "c1",
        "label": "Alice",
        "faces": 3,
    }

    upsert_filter = {"tenant_id": "t1", "case_id": "c1", "label": "Bob"}
    update = {"$inc": {"faces": 1}, "$setOnInsert": {"first_seen": 4.0}}
    assert store.update_one("persons", upsert_filter, update, upsert=True) == 1
    assert store.update_one("persons", upsert_filter, update, upsert=True) == 1
    bob = store.find_one("persons", {"label": "Bob"})
    assert bob is not None
    assert isinstance(bob["_id"], str)
    assert (bob["faces"], bob["first_seen"]) == (2, 4.0)
    assert store.count("persons", {"case_id": "c1"}) == 2


def test_delete_many_counts(segments: DocumentStore) -> None:
    assert segments.delete_many("segments", {"case_id": "c1", "speaker": "A"}) == 2
    assert segments.delete_many("segments", {"case_id": "c1", "speaker": "A"}) == 0
    assert segments.count("segments", {}) == 3


def test_delete_case_empties_that_case_in_every_collection(segments: DocumentStore) -> None:
    segments.insert_one("persons", {"tenant_id": "t1", "case_id": "c1", "label": "P1"})
    segments.insert_one("persons", {"tenant_id": "t1", "case_id": "c2", "label": "P1"})

    assert segments.delete_case("c1") == 5

    assert segments.count("segments", {"case_id": "c1"}) == 0
    assert segments.count("persons", {"case_id": "c1"}) == 0
    assert segments.count("segments", {"case_id": "c2"}) == 1
    assert segments.count("persons", {"case_id": "c2"}) == 1


@pytest.mark.parametrize(
    "doc",
    [
        {"tenant_id": "t1", "text": "no case"},
        {"case_id": "c1", "text": "no tenant"},
        {"tenant_id": "t1", "case_id": "", "text": "empty case"},
        {"tenant_id": "t1", "case_id": "c1", "_id": 7},
    ],
)
def test_documents_without_scope_or_string_id_are_refused(store: DocumentStore, doc: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="non-empty string"):
        store.insert_one("notes", doc)
    assert store.count("notes", {}) == 0


def test_updates_cannot_drop_the_scope(store: DocumentStore) -> None:
    doc_id = store.insert_one("notes", {"tenant_id": "t1", "case_id": "c1"})
    with pytest.raises(ValueError, match="may not change"):
        store.update_one("notes", {"_id": doc_id}, {"$set": {"case_id": "c2"}})
    with pytest.raises(ValueError, match="upsert filter"):
        store.update_one("notes", {"tenant_id": "t1"}, {"$set": {"x": 1}}, upsert=True)
    assert store.find("notes", {}) == [{"_id": doc_id, "tenant_id": "t1", "case_id": "c1"}]


@pytest.mark.parametrize(
    "filter",
    [{"$or": [{"a": 1}]}, {"a": {"$regex": "x"}}, {"a": {"$exists": True}}, {"a": {"$in": "abc"}}],
)
def test_queries_outside_the_subset_are_refused(store: DocumentStore, filter: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"subset|takes a list"):
        store.find("notes", filter)


@pytest.mark.parametrize("update", [{"a": 1}, {"$unset": {"a": ""}}, {"$set": 1}, {}])
def test_updates_outside_the_subset_are_refused(store: DocumentStore, update: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"subset|takes a document|empty"):
        store.update_one("notes", {"case_id": "c1"}, update)


def test_usable_from_any_thread(store: DocumentStore) -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            store.insert_one("notes", {"tenant_id": "t1", "case_id": "c1", "n": n})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert errors == []
    assert sorted(d["n"] for d in store.find("notes", {"case_id": "c1"})) == [0, 1, 2, 3]


def test_embedded_settings_store_documents_under_the_data_dir(embedded_settings: Settings) -> None:
    store = DocumentStore.from_settings(embedded_settings)
    store.health()
    store.insert_one("notes", {"tenant_id": "t1", "case_id": "c1"})
    store.close()
    assert (embedded_settings.data_dir / "documents" / "aima" / "notes").is_file()


def test_mongodb_client_fails_promptly_without_a_server() -> None:
    store = DocumentStore.from_uri("mongodb://127.0.0.1:1/", "aima", timeout=0.5)
    began = time.monotonic()
    with pytest.raises(ServerSelectionTimeoutError):
        store.health()
    assert time.monotonic() - began < 3
    store.close()


@pytest.mark.parametrize("bad", ["litemongo://relative/path", "redis://localhost", "/plain/path"])
def test_unknown_or_relative_uris_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="URI"):
        DocumentStore.from_uri(bad, "aima")
