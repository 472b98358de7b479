"""The vector store's layout: ``case_key`` and unit vectors under IP; older collections still answer."""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymilvus import DataType, MilvusClient

import aima.storage.vectors_milvus as milvus
from aima.storage.vectors import VectorRecord
from aima.storage.vectors_milvus import CASE_KEY, PREFIX, MilvusVectorStore, case_key

RNG = random.Random(4321)


def unit(dim: int) -> list[float]:
    values = [RNG.gauss(0, 1) for _ in range(dim)]
    norm = math.sqrt(sum(v * v for v in values))
    return [v / norm for v in values]


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(
        sum(x * x for x in a) * sum(y * y for y in b)
    )


def new_id() -> str:
    return uuid.uuid4().hex


def previous_layout(path: str, name: str = "faces", dim: int = 128) -> None:
    """Create ``aima_<name>`` as the store created it before ``case_key``: an older file."""
    client = MilvusClient(uri=path)
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=128)
    for field in ("tenant_id", "case_id", "media_id"):
        schema.add_field(field, DataType.VARCHAR, max_length=128)
    schema.add_field("ref", DataType.VARCHAR, max_length=512)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    client.create_collection(PREFIX + name, schema=schema, consistency_level="Strong")
    params = MilvusClient.prepare_index_params()
    params.add_index(field_name="vector", index_type="FLAT", metric_type="COSINE")
    for field in ("tenant_id", "case_id", "media_id"):
        params.add_index(field_name=field, index_type="INVERTED")
    client.create_index(PREFIX + name, params, sync=False)
    client.close()


def fields(path: str, name: str = "faces") -> dict[str, dict[str, Any]]:
    client = MilvusClient(uri=path)
    try:
        return {field["name"]: field for field in client.describe_collection(PREFIX + name)["fields"]}
    finally:
        client.close()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusVectorStore]:
    vectors = MilvusVectorStore(str(tmp_path_factory.mktemp("milvus") / "vectors.db"))
    vectors.ensure_collections()
    yield vectors
    vectors.close()


@pytest.fixture(scope="module")
def old_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("milvus-old") / "vectors.db")


@pytest.fixture(scope="module")
def old_store(old_path: str) -> Iterator[MilvusVectorStore]:
    """A store opened on a file whose faces collection predates ``case_key``."""
    previous_layout(old_path)
    vectors = MilvusVectorStore(old_path)
    vectors.ensure_collections()
    yield vectors
    vectors.close()


def test_case_key_is_a_non_negative_63_bit_number_per_tenant_and_case() -> None:
    key = case_key("t1", "c1")
    assert key == case_key("t1", "c1")
    assert 0 <= key < 2**63
    assert (
        len({key, case_key("t2", "c1"), case_key("t1", "c2"), case_key("t1c", "1"), case_key("t", "1c1")})
        == 5
    )


def test_a_new_collection_has_the_case_key_and_no_partition_key_on_lite(tmp_path: Path) -> None:
    path = str(tmp_path / "vectors.db")
    vectors = MilvusVectorStore(path)
    vectors.ensure_collections()
    vectors.close()
    found = fields(path)
    assert found[CASE_KEY]["type"] == DataType.INT64
    assert not found[CASE_KEY].get("is_partition_key")  # Lite refuses every filter with one


def test_on_a_server_the_case_key_is_the_partition_key() -> None:
    schema = milvus._schema(128, partition_key=True)
    by_name = {field.name: field for field in schema.fields}
    assert by_name[CASE_KEY].is_partition_key
    assert not any(field.is_partition_key for name, field in by_name.items() if name != CASE_KEY)
    assert milvus.NUM_PARTITIONS > 1


def test_scores_are_cosine_similarities_of_vectors_of_any_length(store: MilvusVectorStore) -> None:
    case = new_id()
    a, b = unit(128), unit(128)
    store.upsert("faces", [VectorRecord("long-" + case, "t1", case, "m1", [3.0 * x for x in a])])
    store.upsert("faces", [VectorRecord("other-" + case, "t1", case, "m1", b)])
    hits = store.search("faces", [0.5 * x for x in a], tenant_id="t1", case_id=case, limit=2)
    assert [hit.id for hit in hits] == ["long-" + case, "other-" + case]
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert hits[1].score == pytest.approx(cosine(a, b), abs=1e-5)


def test_results_are_the_same_as_in_the_previous_layout(
    store: MilvusVectorStore, old_store: MilvusVectorStore
) -> None:
    cases = [new_id() for _ in range(3)]
    records = [
        VectorRecord(new_id(), f"t{i % 2}", cases[i % 3], f"m{i % 7}", unit(128), ref=f"r{i}")
        for i in range(300)
    ]
    assert store.upsert("faces", records) == old_store.upsert("faces", records) == 300
    for record in records[:12]:
        query = [x + RNG.gauss(0, 0.03) for x in record.vector]
        new = store.search("faces", query, tenant_id=record.tenant_id, case_id=record.case_id, limit=10)
        old = old_store.search("faces", query, tenant_id=record.tenant_id, case_id=record.case_id, limit=10)
        assert [(h.id, h.case_id, h.media_id, h.ref) for h in new] == [
            (h.id, h.case_id, h.media_id, h.ref) for h in old
        ]
        assert [h.score for h in new] == pytest.approx([h.score for h in old], abs=1e-5)
        assert new[0].id == record.id
        assert all(h.case_id == record.case_id for h in new)


def test_an_older_collection_still_answers_and_keeps_its_layout(
    old_store: MilvusVectorStore, old_path: str
) -> None:
    case, other = new_id(), new_id()
    exact = unit(128)
    own = [VectorRecord(new_id(), "t1", case, "m1", unit(128), ref="own") for _ in range(5)]
    store_records = [
        *own,
        VectorRecord(new_id(), "t1", other, "m1", exact),
        VectorRecord(new_id(), "t2", case, "m1", exact),
    ]
    old_store.upsert("faces", store_records)
    hits = old_store.search("faces", exact, tenant_id="t1", case_id=case, limit=10)
    assert {hit.id for hit in hits} == {record.id for record in own}
    assert old_store.count("faces", case_id=case) == 6
    assert old_store.delete_media_in("faces", "m1", case_id=case, keep={own[0].id}) == 5
    assert old_store.delete_case(case) == 1
    assert old_store.search("faces", exact, tenant_id="t1", case_id=case) == []
    old_store.ensure_collections()
    assert CASE_KEY not in fields(old_path)  # nothing was migrated
    assert CASE_KEY in fields(old_path, "voices")  # a collection missing from the old file is new


def test_a_case_key_shared_with_another_case_still_finds_only_the_case(
    store: MilvusVectorStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(milvus, "case_key", lambda tenant_id, case_id: 7)  # every case collides
    case = new_id()
    exact = unit(128)
    own = [VectorRecord(new_id(), "t1", case, "m1", unit(128)) for _ in range(4)]
    intruders = [
        VectorRecord(new_id(), "t1", new_id(), "m1", exact),
        VectorRecord(new_id(), "t2", case, "m1", exact),
    ]
    store.upsert("faces", own + intruders)
    searches: list[str] = []
    search = store._search

    def counted(*args: Any) -> Any:
        searches.append(args[-1])
        return search(*args)

    monkeypatch.setattr(store, "_search", counted)
    hits = store.search("faces", exact, tenant_id="t1", case_id=case, limit=4)
    assert {hit.id for hit in hits} == {record.id for record in own}
    assert searches == [f"{CASE_KEY} == 7", f'tenant_id == "t1" and case_id == "{case}"']


def test_a_search_without_collision_asks_once_by_the_key(
    store: MilvusVectorStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = new_id()
    store.upsert("faces", [VectorRecord(new_id(), "t1", case, "m1", unit(128)) for _ in range(3)])
    searches: list[str] = []
    search = store._search

    def counted(*args: Any) -> Any:
        searches.append(args[-1])
        return search(*args)

    monkeypatch.setattr(store, "_search", counted)
    assert len(store.search("faces", unit(128), tenant_id="t1", case_id=case, limit=10)) == 3
    assert searches == [f"{CASE_KEY} == {case_key('t1', case)}"]


def test_flush(store: MilvusVectorStore, tmp_path: Path) -> None:
    case = new_id()
    store.upsert("faces", [VectorRecord(new_id(), "t1", case, "m1", unit(128))])
    store.flush("faces")
    assert store.count("faces", case_id=case) == 1
    with pytest.raises(ValueError, match="unknown collection"):
        store.flush("bodies")
    empty = MilvusVectorStore(str(tmp_path / "empty.db"))
    try:
        empty.flush("faces")  # no collection yet: nothing to do
    finally:
        empty.close()
