"""A case on real embedded stores (litemongo, a local object folder, Milvus Lite) and the speakers core
run as the runtime runs it: transcripts stored, audio put where the probe puts it, events dispatched."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aima.storage.documents import DocumentStore
from aima.storage.objects import ObjectStore
from aima.storage.speakers import CaseSpeakerRepository
from aima.storage.transcripts import TranscriptRepository
from aima.storage.vectors import VectorStore
from aima.transcripts import SpeechSegment, Transcript, segment_id
from events.catalogue import EventData, ModelInfo, TranscriptCompleted, make_event, parse_data
from events.envelope import CloudEvent
from functions.runtime.dispatch import Dispatcher
from functions.speakers.core import SpeakersCore, TenantRules
from functions.speakers.spec import SPEC
from inference.tasks.speech import VoiceEmbedder

from .conftest import Recording


@dataclass
class Analysed:
    """One run of the step: the events it emitted and the transcript it labelled."""

    events: list[EventData]
    transcript: Transcript | None

    @property
    def result(self) -> Any:
        [event] = self.events
        return event

    def labels(self) -> list[str | None]:
        assert self.transcript is not None
        return [segment.speaker for segment in self.transcript.speech]

    def case_speakers(self) -> list[str | None]:
        assert self.transcript is not None
        return [segment.case_speaker_id for segment in self.transcript.speech]


@dataclass
class Env:
    documents: DocumentStore
    objects: ObjectStore
    vectors: VectorStore
    embedder: Callable[[], VoiceEmbedder]
    tenant_id: str = "tenant-speakers"
    case_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    rules: TenantRules = field(default_factory=TenantRules)

    @property
    def transcripts(self) -> TranscriptRepository:
        return TranscriptRepository(self.documents)

    @property
    def speakers(self) -> CaseSpeakerRepository:
        return CaseSpeakerRepository(
            self.documents, transcripts=self.transcripts, vectors=self.vectors, cache=None
        )

    def core(self) -> SpeakersCore:
        return SpeakersCore(
            self.objects,
            self.transcripts,
            self.speakers,
            lambda: self.vectors,
            embedder=self.embedder,
            rules_for=lambda tenant_id: self.rules,
        )

    def store(
        self, recording: Recording, media_id: str | None = None, *, shift: float = 0.0
    ) -> TranscriptCompleted:
        """Put the recording's audio where the probe would and store a transcript version of it (one
        segment per utterance, its times moved by ``shift`` seconds: another transcription of the
        same audio); returns the event the transcribe step would have sent."""
        media_id = media_id or str(uuid.uuid4())
        key = f"cases/{self.case_id}/media/{media_id}/audio.wav"
        self.objects.put(key, io.BytesIO(recording.path.read_bytes()), content_type="audio/wav")
        segments = [
            SpeechSegment(
                id=segment_id(media_id, span.start + shift),
                start=max(0.0, span.start + shift),
                end=span.end - shift,
                text=span.utterance.text,
                language="en",
            )
            for span in recording.spans
        ]
        stored = self.transcripts.add(
            Transcript(
                tenant_id=self.tenant_id,
                case_id=self.case_id,
                media_id=media_id,
                version=1,
                segments=segments,
                duration_s=recording.spans[-1].end + 0.4,
            )
        )
        return TranscriptCompleted(
            tenant_id=self.tenant_id,
            case_id=self.case_id,
            media_id=media_id,
            job_id="job-1",
            model=ModelInfo(name="base", version="test", backend="faster-whisper"),
            result_count=len(segments),
            version=stored.version,
            audio_key=key,
            speech_segments=len(segments),
        )

    async def run(self, data: TranscriptCompleted, *, event_id: str | None = None) -> Analysed:
        """The core behind the runtime's dispatcher (ids derived, envelopes checked), no ledger."""
        event = make_event(data, source="/aima/functions/transcribe", event_id=event_id)
        emitted: list[CloudEvent] = await Dispatcher(SPEC, self.core(), outbox=None, relay=None).dispatch(
            event
        )
        transcript = (
            self.transcripts.get(self.tenant_id, self.case_id, data.media_id, data.version)
            if data.version is not None
            else None
        )
        return Analysed([parse_data(e) for e in emitted], transcript)

    async def analyse(
        self, recording: Recording, media_id: str | None = None, *, shift: float = 0.0
    ) -> Analysed:
        return await self.run(self.store(recording, media_id, shift=shift))
