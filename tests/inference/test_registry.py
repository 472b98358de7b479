"""The registry imports a backend only when a model is made; the pool makes one model per task."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest

from aima.model_settings import ModelsSettings, ModelTask, NarratorSettings, TranscriberSettings
from aima.settings import load_settings
from inference.errors import ModelNotConfigured
from inference.pool import ModelPool
from inference.registry import BUILTIN, REGISTRY, Registry
from inference.remote.openai import OpenAINarrator
from inference.tasks import Narrator, Transcriber, Transcript, TranscriptionInput, VisionDescriber

HEAVY = (
    "numpy",
    "onnxruntime",
    "torch",
    "ctranslate2",
    "faster_whisper",
    "dlib",
    "mediapipe",
    "sentence_transformers",
    "PIL",
    "pytesseract",
)

COLD_START = """
import json, sys
import aima, inference
from aima.settings import load_settings
from inference.pool import ModelPool
from inference.registry import Registry
from inference.tasks import TASK_CLASSES

registry = Registry()
settings = load_settings(models={
    "narrator": {"backend": "openai", "endpoint": "http://127.0.0.1:9/v1", "model": "m"},
    "text_embedder": {"backend": "kserve", "endpoint": "http://127.0.0.1:9", "model": "e"},
})
pool = ModelPool.from_settings(settings, registry)
pool.model("narrator"); pool.model("text_embedder")   # created (backend modules imported), not loaded
pool.statuses(["transcriber", "speech_detector", "voice_embedder", "ocr"])  # CPU defaults: made, not loaded
print(json.dumps(sorted(sys.modules)))
"""


def test_import_registry_and_model_creation_import_no_ml_library(tmp_path: Any) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", COLD_START],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "AIMA_DATA_DIR": str(tmp_path)},
        check=True,
    )
    modules = set(json.loads(proc.stdout))
    assert "inference.remote.openai" in modules  # the check saw the backends being imported
    assert sorted(m for m in modules if m.split(".")[0] in HEAVY) == []


LONE_IMPORT = """
import sys, inference
print(sorted(m for m in sys.modules if m.startswith(("aima", "inference", "pydantic", "httpx"))))
"""


def test_importing_inference_alone_imports_nothing_else() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", LONE_IMPORT],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert proc.stdout.strip() == "['inference']"


def test_builtin_entries_resolve_to_their_task_classes() -> None:
    for (task, backend), entry in BUILTIN.items():
        assert isinstance(entry, str)
        cls = REGISTRY.resolve(task, backend)
        assert cls.task == task
        assert cls.backend == backend
    assert REGISTRY.backends(ModelTask.TEXT_EMBEDDER) == ["kserve", "openai", "sentence-transformers"]
    assert REGISTRY.backends(ModelTask.TRANSCRIBER) == ["faster-whisper", "openai"]
    assert REGISTRY.backends(ModelTask.SPEECH_DETECTOR) == ["silero"]
    assert REGISTRY.backends(ModelTask.VOICE_EMBEDDER) == ["resemblyzer"]
    assert REGISTRY.backends(ModelTask.OCR) == ["tesseract"]


class EchoTranscriber(Transcriber):
    backend: ClassVar[str] = "echo"

    def _load(self) -> None:
        return None

    def _predict(self, inputs: TranscriptionInput) -> Transcript:
        return Transcript(language="en")


def test_lazy_factories_run_only_when_a_model_is_made() -> None:
    calls: list[str] = []

    def factory() -> type[EchoTranscriber]:
        calls.append("imported")
        return EchoTranscriber

    registry = Registry({})
    registry.register(ModelTask.TRANSCRIBER, "echo", factory)
    assert calls == []
    assert registry.backends("transcriber") == ["echo"]
    model = registry.create("transcriber", TranscriberSettings(backend="echo"))
    assert isinstance(model, EchoTranscriber)
    assert not model.loaded
    registry.create("transcriber", TranscriberSettings(backend="echo"))
    assert calls == ["imported"]  # resolved once, kept


def test_registry_refuses_what_does_not_fit() -> None:
    registry = Registry({})
    with pytest.raises(ValueError, match="backend name"):
        registry.register("transcriber", "none", lambda: EchoTranscriber)
    with pytest.raises(ValueError, match="module:Class"):
        registry.register("transcriber", "x", "not an entry")
    registry.register("narrator", "echo", lambda: EchoTranscriber)  # a transcriber posing as a narrator
    with pytest.raises(TypeError, match="not a Narrator"):
        registry.resolve("narrator", "echo")
    registry.register("transcriber", "gone", "inference.no_such_module:Model")
    with pytest.raises(ModelNotConfigured, match="not installed"):
        registry.resolve("transcriber", "gone")
    with pytest.raises(ModelNotConfigured, match="no 'nope' backend for transcriber"):
        registry.resolve("transcriber", "nope")
    with pytest.raises(ModelNotConfigured, match="AIMA_MODELS__TRANSCRIBER__BACKEND") as err:
        registry.create("transcriber", TranscriberSettings(backend="none"))
    assert err.value.outcome == "not_run"


def test_pool_makes_one_typed_model_per_task(tmp_path: Any) -> None:
    settings = load_settings(
        data_dir=tmp_path,
        models={"narrator": {"backend": "openai", "endpoint": "http://127.0.0.1:9/v1", "model": "m"}},
    )
    pool = ModelPool.from_settings(settings)
    narrator = pool.get(Narrator)
    assert isinstance(narrator, OpenAINarrator)
    assert pool.get(Narrator) is narrator
    assert not narrator.loaded
    assert pool.configured(ModelTask.NARRATOR)
    assert not pool.configured("vision_describer")
    with pytest.raises(ModelNotConfigured, match="no model configured for vision_describer"):
        pool.get(VisionDescriber)
    pool.close()


def test_pool_with_its_own_registry() -> None:
    registry = Registry({(ModelTask.TRANSCRIBER, "echo"): lambda: EchoTranscriber})
    pool = ModelPool(ModelsSettings(transcriber=TranscriberSettings(backend="echo")), registry)
    assert pool.get(Transcriber).predict(TranscriptionInput(path=Path("a.wav"))).language == "en"
    pool.unload_all()
    assert not pool.get(Transcriber).loaded
    assert pool.settings.narrator == NarratorSettings()
