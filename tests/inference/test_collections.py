"""Vector collections sized by the model that fills them, on Milvus Lite; mismatches are refused clearly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from aima.model_settings import FaceAnalyzerSettings, TextEmbedderSettings
from aima.storage.vectors import VectorDimensionMismatch, VectorRecord
from aima.storage.vectors_milvus import MilvusVectorStore
from inference.tasks import (
    Box,
    Face,
    FaceAnalyzer,
    FaceInput,
    Faces,
    TextEmbedder,
    TextEmbeddings,
    TextsInput,
)
from inference.vectors import ensure_collection_for


class Face512(FaceAnalyzer):
    backend: ClassVar[str] = "face512"
    native_dimension: ClassVar[int | None] = 512

    def _load(self) -> None:
        return None

    def _predict(self, inputs: FaceInput) -> Faces:
        box = Box(x=0, y=0, width=10, height=10)
        return Faces(faces=[Face(box=box, embedding=[1.0] + [0.0] * 511, score=0.99)])


class Text4(TextEmbedder):
    backend: ClassVar[str] = "text4"
    native_dimension: ClassVar[int | None] = 4

    def _predict(self, inputs: TextsInput) -> TextEmbeddings:
        return TextEmbeddings(vectors=[[1.0, 0.0, 0.0, 0.0] for _ in inputs.texts])


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MilvusVectorStore]:
    vectors = MilvusVectorStore(str(tmp_path / "vectors.db"))
    yield vectors
    vectors.close()


def test_a_collection_takes_the_models_dimension(store: MilvusVectorStore, tmp_path: Path) -> None:
    model = Face512(FaceAnalyzerSettings(backend="face512"))
    assert ensure_collection_for(store, model) == 512
    store.ensure_collections()  # the defaults leave an existing collection as it is
    face = model.predict(FaceInput(path=tmp_path / "f.png")).faces[0]
    assert face.embedding is not None
    store.upsert("faces", [VectorRecord("v1", "t1", "c1", "m1", face.embedding, "frame:1")])
    hits = store.search("faces", face.embedding, tenant_id="t1", case_id="c1", limit=1)
    assert hits[0].id == "v1"
    with pytest.raises(ValueError, match="512 dimensions, got 128"):
        store.upsert("faces", [VectorRecord("v2", "t1", "c1", "m1", [1.0] * 128)])
    assert store.count("voices") == 0  # the others were created with their defaults


def test_a_dimension_mismatch_is_refused_clearly(store: MilvusVectorStore) -> None:
    store.ensure_collections()  # faces: the default 128
    with pytest.raises(VectorDimensionMismatch) as err:
        ensure_collection_for(store, Face512(FaceAnalyzerSettings(backend="face512")))
    assert (err.value.collection, err.value.stored, err.value.wanted) == ("faces", 128, 512)
    assert "holds 128-d vectors but 512-d were asked for" in str(err.value)
    store.ensure_collection("faces", 128)  # the right size is fine, repeatedly
    store.ensure_collection("faces", 128)


def test_dimensions_at_creation_and_bad_requests(store: MilvusVectorStore, tmp_path: Path) -> None:
    store.ensure_collections({"texts": 4})
    model = Text4(TextEmbedderSettings(backend="text4"))
    assert ensure_collection_for(store, model) == 4
    store.upsert("texts", [VectorRecord("t1", "t1", "c1", "m1", [0.0, 1.0, 0.0, 0.0])])
    with pytest.raises(ValueError, match="unknown collection"):
        store.ensure_collection("people", 4)
    with pytest.raises(ValueError, match="dimension must be"):
        store.ensure_collection("texts", 0)
    with pytest.raises(VectorDimensionMismatch):
        store.ensure_collections({"texts": 384})

    reopened = MilvusVectorStore(str(tmp_path / "vectors.db"))  # the dimension is read back
    try:
        assert reopened.search("texts", [0.0, 1.0, 0.0, 0.0], tenant_id="t1", case_id="c1")[0].id == "t1"
    finally:
        reopened.close()
