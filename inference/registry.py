"""Backends by (task, name), resolved lazily so no ML library is imported before a model is made.

An entry is a ``"module:Class"`` string or a factory returning the class; neither runs until
`Registry.resolve` is called for that backend, so ``import inference``, the registry and a
function's cold start stay free of numpy, ONNX Runtime, PyTorch, CTranslate2 or dlib.

Adding a backend is one line in `BUILTIN` (plus its module); settings then select it by name:
``AIMA_MODELS__<TASK>__BACKEND=<name>``.
"""

from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aima.model_settings import NONE, ModelSettings, ModelsSettings, ModelTask, model_env
from aima.settings import SettingsError
from inference.base import InferenceModel
from inference.errors import ModelNotConfigured
from inference.tasks import TASK_CLASSES

ModelClass = type[InferenceModel[Any, Any]]
Entry = str | Callable[[], ModelClass]

BUILTIN: dict[tuple[ModelTask, str], Entry] = {
    (ModelTask.SPEECH_DETECTOR, "silero"): "inference.cpu.vad:SileroSpeechDetector",
    (ModelTask.TRANSCRIBER, "faster-whisper"): "inference.cpu.whisper:WhisperTranscriber",
    (ModelTask.TRANSCRIBER, "openai"): "inference.remote.openai_audio:OpenAITranscriber",
    (ModelTask.VOICE_EMBEDDER, "resemblyzer"): "inference.cpu.voices:ResemblyzerVoiceEmbedder",
    (ModelTask.TEXT_EMBEDDER, "sentence-transformers"): "inference.cpu.texts:MiniLMTextEmbedder",
    (ModelTask.OCR, "tesseract"): "inference.cpu.ocr:TesseractOcr",
    (ModelTask.FACE_ANALYZER, "dlib"): "inference.cpu.faces:DlibFaceAnalyzer",
    (ModelTask.FACE_ANALYZER, "insightface"): "inference.cpu.insightface:InsightFaceAnalyzer",
    (ModelTask.POSE_ESTIMATOR, "mediapipe"): "inference.cpu.pose:MediaPipePoseEstimator",
    (ModelTask.SENSITIVITY_SCORER, "open-nsfw"): "inference.cpu.nsfw:OpenNsfwScorer",
    (ModelTask.NARRATOR, "openai"): "inference.remote.openai:OpenAINarrator",
    (ModelTask.VISION_DESCRIBER, "openai"): "inference.remote.openai_vision:OpenAIFramesDescriber",
    (ModelTask.TEXT_EMBEDDER, "openai"): "inference.remote.openai:OpenAITextEmbedder",
    (ModelTask.TEXT_EMBEDDER, "kserve"): "inference.remote.kserve:KServeTextEmbedder",
}
"""The backends of this build; each issue that adds a backend adds its line here."""

_BACKEND_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


class Registry:
    """Backend entries by (task, name); classes are imported on first `resolve` and kept."""

    def __init__(self, entries: Mapping[tuple[ModelTask, str], Entry] | None = None) -> None:
        self._entries: dict[tuple[ModelTask, str], Entry] = {}
        self._classes: dict[tuple[ModelTask, str], ModelClass] = {}
        self._lock = threading.Lock()
        for (task, backend), entry in (BUILTIN if entries is None else entries).items():
            self.register(task, backend, entry)

    def register(self, task: ModelTask | str, backend: str, entry: Entry) -> None:
        """Add (or replace) a backend; nothing is imported now."""
        task = ModelTask(task)
        if backend == NONE or not _BACKEND_NAME.match(backend):
            raise ValueError(f"invalid backend name {backend!r}")
        if isinstance(entry, str) and not re.fullmatch(r"[\w.]+:\w+", entry):
            raise ValueError(f"entry must be 'module:Class', got {entry!r}")
        with self._lock:
            self._entries[(task, backend)] = entry
            self._classes.pop((task, backend), None)

    def backends(self, task: ModelTask | str) -> list[str]:
        """The backend names known for ``task``, sorted."""
        task = ModelTask(task)
        return sorted(backend for t, backend in self._entries if t == task)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def resolve(self, task: ModelTask | str, backend: str) -> ModelClass:
        """Import and check the backend's class (a subclass of the task's class)."""
        task = ModelTask(task)
        key = (task, backend)
        with self._lock:
            if key in self._classes:
                return self._classes[key]
            entry = self._entries.get(key)
        if entry is None:
            raise ModelNotConfigured(
                f"no {backend!r} backend for {task} in this build (known: {self.backends(task) or 'none'})",
                task=str(task),
                backend=backend,
            )
        try:
            cls = _load_entry(entry)
        except ImportError as exc:
            raise ModelNotConfigured(
                f"{backend} backend for {task} needs {exc.name or exc}, not installed",
                task=str(task),
                backend=backend,
            ) from exc
        expected = TASK_CLASSES[task]
        if not (isinstance(cls, type) and issubclass(cls, expected)) or cls.backend != backend:
            raise TypeError(f"{entry!r} is not a {expected.__name__} with backend {backend!r}")
        with self._lock:
            self._classes[key] = cls
        return cls

    def create(self, task: ModelTask | str, settings: ModelSettings) -> InferenceModel[Any, Any]:
        """A model for ``task`` from its settings, not loaded; `ModelNotConfigured` if it has none."""
        task = ModelTask(task)
        if not settings.configured:
            raise ModelNotConfigured(
                f"no model configured for {task} (set {model_env(task, 'backend')})",
                task=str(task),
                backend=NONE,
            )
        return self.resolve(task, settings.backend)(settings)

    def check(self, models: ModelsSettings, tasks: Iterable[ModelTask | str] | None = None) -> None:
        """Refuse an unknown backend name with the one-line settings error naming its variable."""
        for task in ModelTask if tasks is None else (ModelTask(t) for t in tasks):
            backend = models.for_task(task).backend
            if backend != NONE and (task, backend) not in self._entries:
                known = ", ".join([NONE, *self.backends(task)])
                raise SettingsError(
                    model_env(task, "backend"), f"unknown backend {backend!r} (known: {known})"
                )


def _load_entry(entry: Entry) -> ModelClass:
    if isinstance(entry, str):
        module, _, name = entry.partition(":")
        cls: ModelClass = getattr(importlib.import_module(module), name)
        return cls
    return entry()


REGISTRY = Registry()
"""The process-wide registry of this build's backends."""


def check_models(models: ModelsSettings, tasks: Iterable[ModelTask | str] | None = None) -> None:
    """Start-up check of the model settings against this build's backends (`SettingsError`)."""
    REGISTRY.check(models, tasks)
