"""Model health for readiness: cheap, never loads, 'not configured' is not 'down'."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from aima.model_settings import ModelsSettings, ModelTask, OcrSettings, TranscriberSettings
from aima.telemetry.health import HealthRegistry
from inference.errors import ModelNotConfigured
from inference.pool import ModelPool
from inference.registry import Registry
from inference.tasks import ImageInput, OcrReader, TextLines, Transcriber, Transcript, TranscriptionInput


class LocalTranscriber(Transcriber):
    backend: ClassVar[str] = "local"
    weights_present = True
    loads = 0

    def _check_available(self) -> None:
        if not self.weights_present:
            raise FileNotFoundError("weights missing")

    def _load(self) -> None:
        type(self).loads += 1

    def _predict(self, inputs: TranscriptionInput) -> Transcript:
        return Transcript()


class UninstalledOcr(OcrReader):
    backend: ClassVar[str] = "tesseract"

    def _check_available(self) -> None:
        raise ModelNotConfigured("tesseract backend needs pytesseract, not installed")

    def _predict(self, inputs: ImageInput) -> TextLines:
        return TextLines(lines=[])


def pool(**blocks: object) -> ModelPool:
    registry = Registry(
        {
            (ModelTask.TRANSCRIBER, "local"): lambda: LocalTranscriber,
            (ModelTask.OCR, "tesseract"): lambda: UninstalledOcr,
        }
    )
    return ModelPool(ModelsSettings.model_validate(blocks), registry)


def test_health_is_cheap_and_never_loads() -> None:
    models = pool(transcriber=TranscriberSettings(backend="local"))
    LocalTranscriber.loads = 0
    status = models.health(ModelTask.TRANSCRIBER)
    assert (status.state, status.up, LocalTranscriber.loads) == ("not_loaded", True, 0)
    models.get(Transcriber).predict(TranscriptionInput(path=Path("a.wav")))
    assert models.health("transcriber").state == "ready"
    assert LocalTranscriber.loads == 1


def test_statuses_report_unconfigured_tasks_as_not_configured() -> None:
    statuses = pool().statuses([ModelTask.VISION_DESCRIBER, ModelTask.NARRATOR])
    assert set(statuses) == {"model:vision_describer", "model:narrator"}
    for status in statuses.values():
        assert (status.state, status.up) == ("not_configured", False)
        assert status.error is not None
        assert "AIMA_MODELS__" in status.error


async def test_readiness_checks_only_for_configured_models_and_down_when_they_are() -> None:
    models = pool(transcriber=TranscriberSettings(backend="local"), ocr=OcrSettings(backend="tesseract"))
    checks = models.readiness_checks([ModelTask.TRANSCRIBER, ModelTask.OCR, ModelTask.NARRATOR])
    assert set(checks) == {"model:transcriber", "model:ocr"}  # the narrator is not configured: no check

    health = HealthRegistry(timeout=2.0, cache_seconds=0)
    for name, check in checks.items():
        health.add(name, check)
    LocalTranscriber.weights_present = True
    report = await health.report()
    assert report.components["model:transcriber"].status == "up"
    ocr = report.components["model:ocr"]
    assert ocr.status == "down"  # configured, but cannot run in this build
    assert ocr.error is not None
    assert "AIMA_MODELS__OCR__BACKEND=tesseract" in ocr.error

    LocalTranscriber.weights_present = False
    report = await health.report()
    transcriber = report.components["model:transcriber"]
    assert transcriber.status == "down"
    assert "weights missing" in (transcriber.error or "")
    LocalTranscriber.weights_present = True
    assert (await health.report()).components["model:transcriber"].status == "up"


async def test_an_unknown_backend_is_down_not_silently_unconfigured() -> None:
    models = ModelPool(ModelsSettings(transcriber=TranscriberSettings(backend="nope")), Registry({}))
    health = HealthRegistry(timeout=2.0, cache_seconds=0)
    for name, check in models.readiness_checks(["transcriber"]).items():
        health.add(name, check)
    component = (await health.report()).components["model:transcriber"]
    assert component.status == "down"
    assert "nope" in (component.error or "")
