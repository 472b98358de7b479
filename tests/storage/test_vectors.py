"""Vector store on Milvus Lite: case isolation, validation, deletes and persistence."""

from __future__ import annotations

import math
import random
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from aima.settings import load_settings
from aima.storage.vectors import COLLECTIONS, VectorRecord, VectorStore
from aima.storage.vectors_milvus import MilvusVectorStore, vector_store_from_settings

RNG = random.Random(1234)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusVectorStore]:
    """One Lite store for the module; every test works in its own fresh case ids."""
    vectors = MilvusVectorStore(str(tmp_path_factory.mktemp("milvus") / "vectors.db"))
    vectors.ensure_collections()
    yield vectors
    vectors.close()


def new_id() -> str:
    return uuid.uuid4().hex


def unit(dim: int) -> list[float]:
    values = [RNG.gauss(0, 1) for _ in range(dim)]
    norm = math.sqrt(sum(v * v for v in values))
    return [v / norm for v in values]


def near(vector: list[float], noise: float = 0.05) -> list[float]:
    return [v + RNG.gauss(0, noise / math.sqrt(len(vector))) for v in vector]


def record(
    case_id: str, vector: list[float], *, tenant: str = "t1", media: str = "m1", ref: str = ""
) -> VectorRecord:
    return VectorRecord(new_id(), tenant, case_id, media, vector, ref)


def test_ensure_collections_is_idempotent(store: MilvusVectorStore) -> None:
    store.ensure_collections()
    store.ensure_collections()
    store.health()
    for name in COLLECTIONS:
        assert store.count(name, case_id=new_id()) == 0


def test_search_returns_the_nearest_within_the_case(store: MilvusVectorStore) -> None:
    case = new_id()
    records = [record(case, unit(128), ref=f"frame:{i}") for i in range(30)]
    assert store.upsert("faces", records) == 30
    target = records[7]
    hits = store.search("faces", near(list(target.vector)), tenant_id="t1", case_id=case, limit=5)
    assert len(hits) == 5
    assert (hits[0].id, hits[0].case_id, hits[0].media_id, hits[0].ref) == (target.id, case, "m1", "frame:7")
    assert hits[0].score > 0.95
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert store.count("faces", case_id=case) == 30


def test_upsert_replaces_by_id(store: MilvusVectorStore) -> None:
    case = new_id()
    first = record(case, unit(256), ref="old")
    store.upsert("voices", [first])
    moved = unit(256)
    store.upsert("voices", [VectorRecord(first.id, "t1", case, "m1", moved, "new")])
    assert store.count("voices", case_id=case) == 1
    hit = store.search("voices", moved, tenant_id="t1", case_id=case, limit=1)[0]
    assert (hit.id, hit.ref) == (first.id, "new")
    assert hit.score == pytest.approx(1.0, abs=1e-4)


def test_other_cases_and_tenants_are_never_returned(store: MilvusVectorStore) -> None:
    case, other_case = new_id(), new_id()
    exact = unit(384)
    own = [record(case, unit(384)) for _ in range(3)]
    intruders = [
        record(other_case, exact),  # same tenant, other case, the exact match
        record(case, exact, tenant="t2"),  # other tenant reusing the same case id, the exact match
    ]
    store.upsert("texts", own + intruders)

    hits = store.search("texts", exact, tenant_id="t1", case_id=case, limit=len(own))
    assert {h.id for h in hits} == {r.id for r in own}
    assert all(h.case_id == case for h in hits)
    assert max(h.score for h in hits) < 0.9

    # the intruders are there and found in their own scope
    assert store.search("texts", exact, tenant_id="t1", case_id=other_case, limit=1)[0].id == intruders[0].id
    assert store.search("texts", exact, tenant_id="t2", case_id=case, limit=1)[0].id == intruders[1].id
    assert store.search("texts", exact, tenant_id="t3", case_id=case) == []


def test_wrong_dimension_unknown_collection_and_bad_vectors_are_refused(store: MilvusVectorStore) -> None:
    case = new_id()
    good = record(case, unit(128))
    with pytest.raises(ValueError, match="128 dimensions, got 127"):
        store.upsert("faces", [good, record(case, unit(127))])
    with pytest.raises(ValueError, match="dimensions"):
        store.search("faces", unit(129), tenant_id="t1", case_id=case)
    with pytest.raises(ValueError, match="unknown collection"):
        store.upsert("bodies", [good])
    with pytest.raises(ValueError, match="unknown collection"):
        store.count("bodies")
    with pytest.raises(ValueError, match="finite"):
        store.upsert("faces", [record(case, [float("nan")] * 128)])
    with pytest.raises(ValueError, match="zero"):
        store.upsert("faces", [record(case, [0.0] * 128)])
    with pytest.raises(ValueError, match="limit"):
        store.search("faces", unit(128), tenant_id="t1", case_id=case, limit=0)
    assert store.count("faces", case_id=case) == 0  # a refused batch writes nothing


@pytest.mark.parametrize("crafted", ['x" or case_id != "', "a b", "", "c" * 129, "é"])
def test_crafted_ids_cannot_widen_a_filter(store: MilvusVectorStore, crafted: str) -> None:
    case = new_id()
    store.upsert("faces", [record(case, unit(128))])
    with pytest.raises(ValueError, match="case_id"):
        store.search("faces", unit(128), tenant_id="t1", case_id=crafted)
    with pytest.raises(ValueError, match="tenant_id"):
        store.search("faces", unit(128), tenant_id=crafted, case_id=case)
    with pytest.raises(ValueError, match="case_id"):
        store.delete_case(crafted)
    with pytest.raises(ValueError, match="media_id"):
        store.delete_media(crafted, case_id=case)
    with pytest.raises(ValueError, match="case_id"):
        store.count("faces", case_id=crafted)
    with pytest.raises(ValueError, match="id"):
        store.upsert("faces", [VectorRecord(crafted, "t1", case, "m1", unit(128))])
    assert store.count("faces", case_id=case) == 1


def test_delete_media_and_case_keep_other_cases(store: MilvusVectorStore) -> None:
    case, other = new_id(), new_id()
    store.upsert("faces", [record(case, unit(128), media="m1") for _ in range(4)])
    store.upsert("faces", [record(case, unit(128), media="m2") for _ in range(2)])
    store.upsert("voices", [record(case, unit(256), media="m1") for _ in range(3)])
    store.upsert(
        "faces", [record(other, unit(128), media="m1") for _ in range(5)]
    )  # same media id, other case

    assert store.delete_media("m1", case_id=case) == 7
    assert store.count("faces", case_id=case) == 2
    assert store.count("voices", case_id=case) == 0
    assert store.count("faces", case_id=other) == 5
    assert store.delete_media("m1", case_id=case) == 0

    assert store.delete_case(case) == 2
    for name in COLLECTIONS:
        assert store.count(name, case_id=case) == 0
    assert store.search("faces", unit(128), tenant_id="t1", case_id=case) == []
    assert store.count("faces", case_id=other) == 5
    assert store.count("faces") >= 5


WRITER = """
import sys
from aima.storage.vectors import VectorRecord
from aima.storage.vectors_milvus import MilvusVectorStore

store = MilvusVectorStore(sys.argv[1])
store.ensure_collections()
store.upsert("faces", [VectorRecord("gone-writer", "t1", sys.argv[2], "m1", [1.0] + [0.0] * 127, "frame:1")])
store.close()
"""


def test_data_persists_across_close_and_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "data" / "vectors.db")
    case = new_id()
    # written by a process that has exited since: the bytes must be on disk
    subprocess.run([sys.executable, "-c", WRITER, path, case], check=True, timeout=60)

    first = MilvusVectorStore(path)
    first.ensure_collections()
    assert first.count("faces", case_id=case) == 1
    kept = record(case, unit(128), ref="frame:9")
    first.upsert("faces", [kept])
    first.close()
    first.close()  # idempotent

    second: VectorStore = MilvusVectorStore(path)
    try:
        second.ensure_collections()
        assert second.count("faces", case_id=case) == 2
        hit = second.search("faces", list(kept.vector), tenant_id="t1", case_id=case, limit=1)[0]
        assert (hit.id, hit.ref) == (kept.id, "frame:9")
        assert second.search("faces", [1.0] + [0.0] * 127, tenant_id="t1", case_id=case, limit=1)[0].id == (
            "gone-writer"
        )
    finally:
        second.close()


def test_store_from_settings_uses_the_embedded_lite_file(tmp_path: Path) -> None:
    settings = load_settings(profile="embedded", data_dir=tmp_path / "aima")
    store = vector_store_from_settings(settings)
    try:
        store.ensure_collections()
        store.health()
        assert (tmp_path / "aima" / "vectors.db").exists()
    finally:
        store.close()


def test_lite_path_must_end_with_db(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.db"):
        MilvusVectorStore(str(tmp_path / "vectors"))


def test_a_fresh_store_sizes_a_collection_from_its_configured_model(tmp_path: Path) -> None:
    from aima.settings import load_settings
    from aima.storage.factory import Stores, configured_dimensions

    settings = load_settings(
        profile="embedded",
        data_dir=tmp_path / "aima",
        models={
            "text_embedder": {"backend": "openai", "model": "e5", "endpoint": "http://x", "dimension": 768}
        },
    )
    assert configured_dimensions(settings) == {"texts": 768}
    stores = Stores.open(settings)
    try:
        stores.vectors.ensure_collection("texts", 768)  # no mismatch: created at the model's size
        stores.vectors.ensure_collection("faces", 128)  # an unconfigured model's collection: default
    finally:
        stores.close()
