"""Deleting one media's vectors in one collection: other collections, media and cases keep theirs."""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator

import pytest

from aima.storage.vectors import VectorRecord
from aima.storage.vectors_milvus import BATCH, MilvusVectorStore

RNG = random.Random(99)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusVectorStore]:
    vectors = MilvusVectorStore(str(tmp_path_factory.mktemp("milvus") / "vectors.db"))
    vectors.ensure_collections()
    yield vectors
    vectors.close()


def unit(dim: int) -> list[float]:
    values = [RNG.gauss(0, 1) for _ in range(dim)]
    norm = math.sqrt(sum(v * v for v in values))
    return [v / norm for v in values]


def records(case_id: str, media_id: str, collection_dim: int, n: int, prefix: str) -> list[VectorRecord]:
    return [
        VectorRecord(f"{prefix}-{i}", "t1", case_id, media_id, unit(collection_dim), f"seg-{i}")
        for i in range(n)
    ]


def test_only_the_named_collection_and_media_lose_vectors(store: MilvusVectorStore) -> None:
    case, other = uuid.uuid4().hex, uuid.uuid4().hex
    store.upsert("texts", records(case, "m1", 384, 5, f"{case}-a"))
    store.upsert("texts", records(case, "m2", 384, 2, f"{case}-b"))
    store.upsert("voices", records(case, "m1", 256, 3, f"{case}-c"))
    store.upsert("texts", records(other, "m1", 384, 4, f"{other}-d"))  # same media id, other case

    assert store.delete_media_in("texts", "m1", case_id=case) == 5
    assert store.count("texts", case_id=case) == 2  # m2 keeps its own
    assert store.count("voices", case_id=case) == 3  # the voices of m1 stay
    assert store.count("texts", case_id=other) == 4
    assert store.delete_media_in("texts", "m1", case_id=case) == 0


def test_kept_ids_survive(store: MilvusVectorStore) -> None:
    case = uuid.uuid4().hex
    written = records(case, "m1", 384, 6, case)
    store.upsert("texts", written)
    keep = {written[0].id, written[3].id, "not-stored"}
    assert store.delete_media_in("texts", "m1", case_id=case, keep=keep) == 4
    remaining = store.search("texts", written[3].vector, tenant_id="t1", case_id=case, limit=10)
    assert {hit.id for hit in remaining} == {written[0].id, written[3].id}


def test_more_than_one_batch_is_deleted(store: MilvusVectorStore) -> None:
    case = uuid.uuid4().hex
    many = [
        VectorRecord(f"{case}-{i}", "t1", case, "m1", [1.0, float(i % 7) + 1.0] + [0.0] * 382, "s")
        for i in range(BATCH + 30)
    ]
    store.upsert("texts", many)
    assert store.delete_media_in("texts", "m1", case_id=case, keep={many[-1].id}) == BATCH + 29
    assert store.count("texts", case_id=case) == 1


def test_bad_arguments_are_refused(store: MilvusVectorStore) -> None:
    with pytest.raises(ValueError, match="unknown collection"):
        store.delete_media_in("songs", "m1", case_id="c1")
    with pytest.raises(ValueError, match="case_id"):
        store.delete_media_in("texts", "m1", case_id='x" or case_id != "')
    with pytest.raises(ValueError, match="media_id"):
        store.delete_media_in("texts", "m 1", case_id="c1")
