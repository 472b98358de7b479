"""Real stores, real models (Silero VAD, Whisper base) and spoken media made with espeak-ng."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from aima.access.scope import Scope
from aima.model_settings import ModelsSettings
from aima.samples import Pause, Spoken, Utterance
from aima.storage.documents import DocumentStore
from aima.storage.media import MediaRepository
from aima.storage.objects_local import LocalObjectStore
from aima.storage.relational import Database
from aima.storage.transcripts import TranscriptRepository
from events.catalogue import AudioExtracted, make_event
from events.envelope import CloudEvent
from functions.transcribe.core import TranscribeCore, TranscribeOptions
from inference.cpu import audio
from inference.registry import REGISTRY
from inference.tasks.speech import SpeechDetector, Transcriber
from tests.speech_audio import ENGLISH, GERMAN, MIXED, spaced, write
from tests.support import add_media, case_stores


@dataclass(frozen=True)
class Recording:
    path: Path
    spans: list[Spoken]


@pytest.fixture(scope="session")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Recording]:
    """The spoken test files, made once per session."""
    folder = tmp_path_factory.mktemp("speech")
    scripts: dict[str, Sequence[Utterance | Pause]] = {
        "english": spaced(ENGLISH),
        "german": spaced(GERMAN),
        "mixed": MIXED,
    }
    made = {}
    for name, script in scripts.items():
        path = folder / f"{name}.wav"
        made[name] = Recording(path, write(path, tuple(script)))
    return made


@pytest.fixture(scope="session")
def detector() -> SpeechDetector:
    model = REGISTRY.create("speech_detector", ModelsSettings().speech_detector)
    assert isinstance(model, SpeechDetector)
    return model


@pytest.fixture(scope="session")
def transcriber() -> Iterator[Transcriber]:
    settings = ModelsSettings().transcriber.model_copy(update={"threads": 2, "idle_unload_seconds": 0})
    model = REGISTRY.create("transcriber", settings)
    assert isinstance(model, Transcriber)
    yield model
    model.close()


@dataclass
class Env:
    db: Database
    objects: LocalObjectStore
    documents: DocumentStore
    media: MediaRepository
    transcripts: TranscriptRepository
    tenant_id: str
    case_id: str

    @property
    def scope(self) -> Scope:
        return Scope.for_case(self.tenant_id, self.case_id, "test")

    def extracted(self, wav: Path) -> CloudEvent:
        """Store ``wav`` as a media file's extracted audio, the way the probe does."""
        media_id, base = add_media(
            self.objects,
            self.media,
            self.scope,
            self.case_id,
            wav.read_bytes(),
            content_type="audio/wav",
            filename=wav.name,
        )
        self.objects.put(f"{base}/audio.wav", io.BytesIO(wav.read_bytes()), content_type="audio/wav")
        data = AudioExtracted(
            tenant_id=self.tenant_id,
            case_id=self.case_id,
            media_id=media_id,
            job_id="job-1",
            object_key=f"{base}/audio.wav",
            duration_s=audio.duration(wav) if wav.stat().st_size > 44 else 0.0,
        )
        return make_event(data, source="/aima/test/probe")

    def core(
        self,
        detector: SpeechDetector,
        transcriber: Transcriber,
        *,
        language: str | None = None,
        options: TranscribeOptions | None = None,
    ) -> TranscribeCore:
        return TranscribeCore(
            self.objects,
            self.transcripts,
            self.media,
            detector=lambda: detector,
            transcriber=lambda: transcriber,
            language_for=lambda tenant_id, case_id: language,
            options=options or TranscribeOptions(),
        )


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    with case_stores(tmp_path, "speech") as made:
        yield Env(
            made.db,
            made.objects,
            made.documents,
            MediaRepository(made.db),
            TranscriptRepository(made.documents),
            made.tenant_id,
            made.case_id,
        )
