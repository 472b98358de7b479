"""The CPU text embedder: packaged MiniLM, offline, normalised vectors, threads kept to its own calls."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from aima.model_settings import TextEmbedderSettings
from inference.cpu.texts import MiniLMTextEmbedder, declared_dimension, model_folder, torch_threads
from inference.errors import ModelNotConfigured
from inference.registry import REGISTRY
from inference.tasks.text import TextsInput


@pytest.fixture(scope="module")
def embedder() -> Iterator[MiniLMTextEmbedder]:
    model = MiniLMTextEmbedder(TextEmbedderSettings(idle_unload_seconds=0))
    yield model
    model.close()


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_the_default_settings_resolve_to_this_backend() -> None:
    settings = TextEmbedderSettings()
    assert (settings.backend, settings.model) == ("sentence-transformers", "all-MiniLM-L6-v2")
    model = REGISTRY.create("text_embedder", settings)
    assert isinstance(model, MiniLMTextEmbedder)
    assert model.health().state == "not_loaded"
    assert model.dimension == 384  # stated by the packaged folder: nothing was loaded for it
    assert not model.loaded


def test_vectors_are_normalised_and_paraphrases_are_near(embedder: MiniLMTextEmbedder) -> None:
    texts = [
        "I was at home with my sister and we watched a film",
        "she spent the evening at her place watching a movie with a sibling",
        "the quarterly tax return is due at the end of the month",
    ]
    vectors = embedder.predict(TextsInput(texts=texts)).vectors
    assert [len(v) for v in vectors] == [384, 384, 384]
    assert all(math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, abs_tol=1e-4) for v in vectors)
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.3
    assert embedder.health().state == "ready"


def test_batches_give_the_same_vectors_as_single_calls(embedder: MiniLMTextEmbedder) -> None:
    texts = [f"sentence number {i} about the harbour" for i in range(5)]
    small = MiniLMTextEmbedder(TextEmbedderSettings(batch_size=2, idle_unload_seconds=0))
    try:
        batched = small.predict(TextsInput(texts=texts)).vectors
    finally:
        small.close()
    single = [embedder.predict(TextsInput(texts=[text])).vectors[0] for text in texts]
    for a, b in zip(batched, single, strict=True):
        assert cosine(a, b) > 0.9999


def test_threads_are_set_for_the_call_and_put_back() -> None:
    import torch

    seen: dict[str, int] = {}

    def run() -> None:
        before = torch.get_num_threads()
        with torch_threads(1):
            seen["inside"] = torch.get_num_threads()
        seen["after"] = torch.get_num_threads()
        seen["before"] = before

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    assert seen["inside"] == 1
    assert seen["after"] == seen["before"]


def test_a_missing_folder_is_not_configured(tmp_path: Path) -> None:
    model = MiniLMTextEmbedder(TextEmbedderSettings(model=str(tmp_path / "nothing")))
    status = model.health()
    assert status.state == "not_configured"
    assert "sentence-transformers model" in (status.error or "")
    with pytest.raises(ModelNotConfigured):
        model.load()


def test_a_folder_of_ones_own_is_used_as_it_is(tmp_path: Path) -> None:
    packaged = model_folder("all-MiniLM-L6-v2")
    assert (packaged / "model.safetensors").is_file()
    assert declared_dimension(packaged) == 384
    (tmp_path / "modules.json").write_text('[{"type": "sentence_transformers.models.Dense", "path": "2"}]')
    assert model_folder(str(tmp_path)) == tmp_path
    assert declared_dimension(tmp_path) is None  # a dense layer may resize: only loading tells


def test_calls_from_several_threads_share_the_model_safely(embedder: MiniLMTextEmbedder) -> None:
    texts = [f"call number {i} from another thread about the harbour" for i in range(8)]
    expected = embedder.predict(TextsInput(texts=texts)).vectors
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(
            pool.map(lambda text: embedder.predict(TextsInput(texts=[text])).vectors[0], texts * 3)
        )
    for got, want in zip(answers, expected * 3, strict=True):
        assert cosine(got, want) > 0.9999
