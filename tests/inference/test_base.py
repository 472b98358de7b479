"""The model interface: lazy idempotent load, checked outputs, bounded async calls, (idle) unload."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest

from aima.model_settings import FaceAnalyzerSettings, TextEmbedderSettings, TranscriberSettings
from inference import base
from inference.base import ModelUnavailable as BaseModelUnavailable
from inference.errors import InvalidModelOutput, ModelNotConfigured, ModelUnavailable, Outcome, outcome_of
from inference.tasks import (
    Box,
    Face,
    FaceAnalyzer,
    FaceInput,
    Faces,
    ImageInput,
    TextEmbedder,
    TextEmbeddings,
    TextsInput,
    Transcriber,
    Transcript,
    TranscriptionInput,
    TranscriptSegment,
)


class CountingTranscriber(Transcriber):
    """A local backend stand-in: counts loads and unloads, can be slowed down or broken."""

    backend: ClassVar[str] = "counting"

    def __init__(self, settings: TranscriberSettings, *, delay: float = 0.0) -> None:
        super().__init__(settings)
        self.delay = delay
        self.loads = 0
        self.unloads = 0
        self.running = 0
        self.peak = 0
        self.threads_seen: set[str] = set()
        self.fail_load: Exception | None = None
        self.started = threading.Event()
        self._count = threading.Lock()

    def _load(self) -> None:
        time.sleep(self.delay)
        if self.fail_load is not None:
            raise self.fail_load
        self.loads += 1

    def _unload(self) -> None:
        self.unloads += 1

    def _predict(self, inputs: TranscriptionInput) -> Transcript:
        self.started.set()
        with self._count:
            self.running += 1
            self.peak = max(self.peak, self.running)
        self.threads_seen.add(threading.current_thread().name)
        time.sleep(self.delay)
        with self._count:
            self.running -= 1
        return Transcript(
            language=inputs.language or "en",
            duration_s=2.0,
            segments=[TranscriptSegment(start=0.0, end=1.5, text="hello", confidence=0.9)],
        )


def audio(tmp_path: Path) -> TranscriptionInput:
    return TranscriptionInput(path=tmp_path / "a.wav")


def test_load_is_lazy_idempotent_and_happens_once_across_threads(tmp_path: Path) -> None:
    model = CountingTranscriber(TranscriberSettings(backend="counting"), delay=0.05)
    assert not model.loaded
    assert model.loads == 0
    threads = [threading.Thread(target=model.load) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    model.load()
    assert (model.loaded, model.loads) == (True, 1)
    assert model.predict(audio(tmp_path)).segments[0].text == "hello"
    assert model.loads == 1


def test_predict_loads_on_first_use_and_again_after_unload(tmp_path: Path) -> None:
    model = CountingTranscriber(TranscriberSettings(backend="counting", idle_unload_seconds=0))
    model.predict(audio(tmp_path))
    assert (model.loaded, model.loads) == (True, 1)
    assert model.unload() is True
    assert (model.loaded, model.unloads) == (False, 1)
    assert model.unload() is False  # idempotent
    model.predict(audio(tmp_path))
    assert model.loads == 2


def test_wrong_input_type_is_a_type_error(tmp_path: Path) -> None:
    model = CountingTranscriber(TranscriberSettings(backend="counting"))
    with pytest.raises(TypeError, match="TranscriptionInput"):
        model.predict(ImageInput(path=tmp_path / "x.png"))  # type: ignore[arg-type]


def test_model_unloads_itself_after_the_idle_time(tmp_path: Path) -> None:
    model = CountingTranscriber(TranscriberSettings(backend="counting", idle_unload_seconds=0.6))
    model.predict(audio(tmp_path))
    time.sleep(0.4)
    model.predict(audio(tmp_path))  # a call restarts the idle clock
    time.sleep(0.4)
    assert model.loaded  # 0.8 s after loading but only 0.4 s idle
    deadline = time.monotonic() + 3
    while model.loaded and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (model.loaded, model.unloads) == (False, 1)
    model.predict(audio(tmp_path))
    assert model.loads == 2
    model.close()


def test_unload_waits_for_a_running_call(tmp_path: Path) -> None:
    model = CountingTranscriber(TranscriberSettings(backend="counting", idle_unload_seconds=0), delay=0.2)
    model.load()
    worker = threading.Thread(target=model.predict, args=(audio(tmp_path),))
    worker.start()
    assert model.started.wait(5)
    assert model.unload(wait=False) is False  # busy: not now
    assert model.unload() is True  # waits for the call
    worker.join()
    assert model.running == 0
    assert not model.loaded


async def test_apredict_runs_on_the_models_own_bounded_executor(tmp_path: Path) -> None:
    model = CountingTranscriber(TranscriberSettings(backend="counting", workers=2), delay=0.05)
    started = time.perf_counter()
    results = await asyncio.gather(*(model.apredict(audio(tmp_path)) for _ in range(6)))
    elapsed = time.perf_counter() - started
    assert len(results) == 6
    assert all(r.segments for r in results)
    assert model.peak == 2  # never more calls at once than workers
    assert all(name.startswith("model-transcriber") for name in model.threads_seen)
    assert elapsed >= 3 * 0.05 * 0.9  # six calls, two at a time
    model.close()


async def test_a_local_model_runs_one_call_at_a_time_by_default(tmp_path: Path) -> None:
    model = CountingTranscriber(TranscriberSettings(backend="counting"), delay=0.02)
    await asyncio.gather(*(model.apredict(audio(tmp_path)) for _ in range(4)))
    assert model.peak == 1
    assert model.executor._max_workers == 1
    model.close()


def test_load_failures_become_failure_kinds() -> None:
    model = CountingTranscriber(TranscriberSettings(backend="counting"))
    model.fail_load = ModuleNotFoundError("No module named 'faster_whisper'", name="faster_whisper")
    with pytest.raises(ModelNotConfigured, match="faster_whisper") as missing:
        model.load()
    assert (missing.value.task, missing.value.backend) == ("transcriber", "counting")
    model.fail_load = OSError("weights truncated")
    with pytest.raises(ModelUnavailable, match="weights truncated"):
        model.load()
    model.fail_load = None
    model.load()
    assert model.load_attempts == 3
    assert model.loaded


def test_failure_kinds_map_to_outcomes() -> None:
    assert BaseModelUnavailable is ModelUnavailable  # still importable from inference.base
    assert outcome_of(ModelNotConfigured("x")) is Outcome.NOT_RUN
    assert outcome_of(ModelUnavailable("x", retry_after=3)) is Outcome.RETRY
    assert outcome_of(InvalidModelOutput("x")) is Outcome.ITEM_FAILED
    assert outcome_of(ValueError("x")) is None


class BadTranscriber(CountingTranscriber):
    def _predict(self, inputs: TranscriptionInput) -> Transcript:
        return Transcript(duration_s=1.0, segments=[TranscriptSegment(start=0, end=5.0, text="too long")])


class NotATranscript(CountingTranscriber):
    def _predict(self, inputs: TranscriptionInput) -> Transcript:
        return {"segments": []}  # type: ignore[return-value]


class BuildsBadOutput(CountingTranscriber):
    def _predict(self, inputs: TranscriptionInput) -> Transcript:
        return Transcript.model_validate({"segments": [{"start": 3, "end": 1, "text": "backwards"}]})


@pytest.mark.parametrize(
    ("cls", "match"),
    [(BadTranscriber, "after the audio"), (NotATranscript, "expected Transcript"), (BuildsBadOutput, "end")],
)
def test_invalid_output_is_refused(tmp_path: Path, cls: type[CountingTranscriber], match: str) -> None:
    model = cls(TranscriberSettings(backend="counting"))
    with pytest.raises(InvalidModelOutput, match=match) as err:
        model.predict(audio(tmp_path))
    assert err.value.task == "transcriber"


class FixedEmbedder(TextEmbedder):
    backend: ClassVar[str] = "fixed"
    native_dimension: ClassVar[int | None] = 4
    vectors: list[list[float]] = []

    def _load(self) -> None:
        return None

    def _predict(self, inputs: TextsInput) -> TextEmbeddings:
        return TextEmbeddings(vectors=self.vectors)


def test_embedders_own_their_dimension_and_vectors_must_fit_it() -> None:
    model = FixedEmbedder(TextEmbedderSettings(backend="fixed"))
    assert model.dimension == 4
    assert model.collection == "texts"
    model.vectors = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]
    assert len(model.predict(TextsInput(texts=["a", "b"])).vectors) == 2
    with pytest.raises(InvalidModelOutput, match="2 vectors for 1 texts"):
        model.predict(TextsInput(texts=["a"]))
    model.vectors = [[1.0, 0.0, 0.0]]
    with pytest.raises(InvalidModelOutput, match="3 values"):
        model.predict(TextsInput(texts=["a"]))
    model.vectors = [[0.0] * 4]
    with pytest.raises(InvalidModelOutput, match="all zero"):
        model.predict(TextsInput(texts=["a"]))
    model.vectors = [[float("nan"), 1.0, 0.0, 0.0]]
    with pytest.raises(InvalidModelOutput, match="finite"):
        model.predict(TextsInput(texts=["a"]))
    mismatched = FixedEmbedder(TextEmbedderSettings(backend="fixed", dimension=384))
    with pytest.raises(ModelNotConfigured, match="AIMA_MODELS__TEXT_EMBEDDER__DIMENSION=384"):
        _ = mismatched.dimension


class OneFace(FaceAnalyzer):
    backend: ClassVar[str] = "one"
    native_dimension: ClassVar[int | None] = 3

    def _load(self) -> None:
        return None

    def _predict(self, inputs: FaceInput) -> Faces:
        box = Box(x=1, y=2, width=30, height=40)
        return Faces(faces=[Face(box=box, embedding=[0.1, 0.2], score=0.9), Face(box=box, score=0.5)])


def test_face_embeddings_are_checked_against_the_dimension(tmp_path: Path) -> None:
    with pytest.raises(InvalidModelOutput, match="face 0 embedding has 2 values"):
        OneFace(FaceAnalyzerSettings(backend="one")).predict(FaceInput(path=tmp_path / "f.png"))


class Overlaps:
    """Records how many loads (and late imports) run at the same time."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self._lock = threading.Lock()

    def span(self, seconds: float) -> None:
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        time.sleep(seconds)
        with self._lock:
            self.running -= 1


def test_models_load_one_at_a_time_and_late_imports_wait_for_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two threads importing interdependent packages at once may see a half-initialised module
    (inference.base.LOADING): loads of different models, and `import_lazily`, never overlap."""
    overlaps = Overlaps()

    class Slow(CountingTranscriber):
        def _load(self) -> None:
            overlaps.span(0.1)
            super()._load()

    models = [Slow(TranscriberSettings(backend="counting")) for _ in range(3)]

    def import_module(name: str) -> object:
        overlaps.span(0.1)
        return name

    monkeypatch.setattr(base.importlib, "import_module", import_module)
    workers = [threading.Thread(target=m.load) for m in models]
    workers += [
        threading.Thread(target=base.import_lazily, args=("scipy.cluster.hierarchy",)) for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=10)
    assert [m.loads for m in models] == [1, 1, 1]
    assert overlaps.peak == 1
