"""The Resemblyzer voice embedder on espeak-ng speech: unit vectors that tell two voices apart."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from aima.model_settings import VoiceEmbedderSettings
from inference.cpu.voices import ResemblyzerVoiceEmbedder
from inference.registry import REGISTRY
from inference.tasks.common import TimeSpan
from inference.tasks.speech import VoiceEmbedder, VoiceInput

from .conftest import MAN, WOMAN, Recording


def spans_of(recording: Recording) -> list[TimeSpan]:
    return [TimeSpan(start=span.start, end=span.end) for span in recording.spans]


def test_the_registry_resolves_the_default_backend() -> None:
    cls = REGISTRY.resolve(VoiceEmbedder.task, "resemblyzer")
    assert cls is ResemblyzerVoiceEmbedder
    assert VoiceEmbedderSettings().backend == "resemblyzer"


def test_health_is_cheap_and_needs_no_load() -> None:
    model = ResemblyzerVoiceEmbedder(VoiceEmbedderSettings())
    health = model.health()
    assert (health.state, model.loaded, model.load_attempts) == ("not_loaded", False, 0)
    assert model.dimension == 256


def test_turns_of_one_voice_are_nearer_than_turns_of_two(
    embedder: ResemblyzerVoiceEmbedder, alternating: Recording
) -> None:
    out = embedder.predict(VoiceInput(path=alternating.path, segments=spans_of(alternating)))
    vectors = np.array([e.vector for e in out.embeddings])
    assert vectors.shape == (6, 256)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert [(e.start, e.end) for e in out.embeddings] == [(s.start, s.end) for s in alternating.spans]
    voices = np.array(alternating.voices())
    similarity = vectors @ vectors.T
    same = similarity[np.equal.outer(voices, voices) & ~np.eye(6, dtype=bool)]
    other = similarity[np.ix_(voices == WOMAN, voices == MAN)]
    assert same.min() > 0.8
    assert other.max() < 0.75
    assert same.min() - other.max() > 0.1


def test_short_empty_and_outside_stretches_give_unit_vectors(
    embedder: ResemblyzerVoiceEmbedder, alternating: Recording
) -> None:
    first = alternating.spans[0]
    segments = [
        TimeSpan(start=first.start + 0.5, end=first.start + 0.6),  # 0.1 s: repeated to fill a window
        TimeSpan(start=1.0, end=1.0),  # no samples
        TimeSpan(start=500.0, end=501.0),  # after the end of the file
        TimeSpan(start=first.start, end=first.end),
    ]
    out = embedder.predict(VoiceInput(path=alternating.path, segments=segments))
    for embedding in out.embeddings:
        vector = np.array(embedding.vector)
        assert np.isfinite(vector).all()
        assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)


def test_a_call_leaves_the_callers_torch_threads_as_they_were(
    embedder: ResemblyzerVoiceEmbedder, alternating: Recording
) -> None:
    seen: dict[str, int] = {}

    def call() -> None:
        torch.set_num_threads(2)
        embedder.predict(VoiceInput(path=alternating.path, segments=spans_of(alternating)[:1]))
        seen["after"] = torch.get_num_threads()

    worker = threading.Thread(target=call)
    worker.start()
    worker.join()
    assert embedder.threads == 1
    assert seen["after"] == 2


def test_a_damaged_file_is_refused_with_a_reason(embedder: ResemblyzerVoiceEmbedder, tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.wav"
    damaged.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    with pytest.raises(ValueError, match="could not be read"):
        embedder.predict(VoiceInput(path=damaged, segments=[TimeSpan(start=0, end=1)]))
