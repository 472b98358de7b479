"""The transcribe function's core: speech regions first, then text per region, chunk by chunk.

``handle`` takes ``io.aima.media.audio.extracted.v1``:

1. copies the 16 kHz WAV the probe extracted to a private temporary file;
2. finds the speech regions (`SpeechDetector`); no speech → a transcript with zero segments and
   the reason;
3. groups the regions into chunks of about ``chunk_speech_s`` of speech and transcribes one chunk
   per model call (`Transcriber`, with the English translation of non-English segments). Every
   finished chunk is checkpointed under the handled event's id, so a redelivery after a crash
   resumes at the first unfinished chunk. Every region comes out as text or as an explicit
   ``unintelligible`` segment with its time range and reason; a chunk that fails becomes such
   segments and never fails the file;
4. stores the transcript as the media's next version and returns ``TranscriptCompleted`` with counts.

The language: the one forced for the case (its ``language``), else for the tenant
(``analysis.force_language`` in the runtime configuration), else by the transcriber setting
(``AIMA_MODELS__TRANSCRIBER__LANGUAGE``), else one detected per segment. No model →
a ``not_run`` transcript and event with the reason; a damaged audio file → a ``failed``
transcript and ``MediaFailed``; a model that is down → the event is retried (checkpoints kept).
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from aima.access.scope import Scope
from aima.domain import ModelRef
from aima.storage.media import MediaRepository
from aima.storage.objects import InvalidKey, ObjectNotFound, ObjectStore
from aima.storage.transcripts import TranscriptRepository
from aima.transcripts import SpeechSegment, SpokenWord, Transcript, segment_id
from events.catalogue import AudioExtracted, EventData, MediaFailed, ModelInfo, TranscriptCompleted
from functions.runtime.context import Context
from inference.errors import InvalidModelOutput, ModelNotConfigured
from inference.tasks.common import AudioInput, TimeSpan
from inference.tasks.speech import SpeechDetector, Transcriber, TranscriptionInput
from inference.tasks.speech import Transcript as ModelTranscript

log = logging.getLogger(__name__)

ACTOR = "function:transcribe"
STEP = "transcribe"
NO_SPEECH = "no speech detected"
UNINTELLIGIBLE = "speech detected, but no words could be recognised"


@dataclass(frozen=True)
class TranscribeOptions:
    """How the work is cut: seconds of speech per model call (and per checkpoint)."""

    chunk_speech_s: float = 120.0
    translate: bool = True


class TranscribeCore:
    """``async handle(data, ctx) -> list[EventData]`` for ``io.aima.media.audio.extracted.v1``."""

    def __init__(
        self,
        objects: ObjectStore,
        transcripts: TranscriptRepository,
        media: MediaRepository,
        *,
        detector: Callable[[], SpeechDetector],
        transcriber: Callable[[], Transcriber],
        language_for: Callable[[str, str], str | None] = lambda tenant_id, case_id: None,
        options: TranscribeOptions = TranscribeOptions(),
        workdir: Path | None = None,
    ) -> None:
        """``detector``/``transcriber`` return the process's models (raising `ModelNotConfigured`
        when there is none); ``language_for(tenant_id, case_id)`` is a language forced for the
        case or its tenant, if any."""
        self._objects = objects
        self._transcripts = transcripts
        self._media = media
        self._detector = detector
        self._transcriber = transcriber
        self._language_for = language_for
        self._options = options
        self._workdir = workdir

    async def handle(self, data: AudioExtracted, ctx: Context) -> list[EventData]:
        """Transcribe the file; blocking work runs in a worker thread."""
        return await asyncio.to_thread(self._handle, ctx.event_id, data)

    def _handle(self, run: str, data: AudioExtracted) -> list[EventData]:
        scope = Scope.for_case(data.tenant_id, data.case_id, ACTOR)
        if self._media.get(scope, data.media_id) is None:
            log.info("media is gone; nothing to transcribe", extra={"media_id": data.media_id})
            return []
        try:
            detector, transcriber = self._detector(), self._transcriber()
        except ModelNotConfigured as exc:
            return self._not_run(data, exc.reason)
        forced = self._language_for(data.tenant_id, data.case_id) or getattr(
            transcriber.settings, "language", None
        )
        base = Transcript(
            tenant_id=data.tenant_id,
            case_id=data.case_id,
            media_id=data.media_id,
            version=1,
            model=ModelRef(name=transcriber.name, version=_version(transcriber), backend=transcriber.backend),
            forced_language=forced,
            duration_s=data.duration_s,
        )
        with tempfile.TemporaryDirectory(prefix="aima-transcribe-", dir=self._workdir) as tmp:
            wav = Path(tmp) / "audio.wav"
            try:
                self._objects.download(data.object_key, wav)
                found = detector.predict(AudioInput(path=wav))
            except (ObjectNotFound, InvalidKey):
                return self._failed(data, base, "the extracted audio is missing from the object store")
            except InvalidModelOutput as exc:
                return self._failed(data, base, f"the extracted audio could not be read: {exc.reason}")
            except ModelNotConfigured as exc:
                return self._not_run(data, exc.reason)
            base = base.model_copy(
                update={
                    "duration_s": found.duration_s,
                    "speech_s": round(sum(r.end - r.start for r in found.regions), 3),
                }
            )
            if not found.regions:
                return self._store(data, base.model_copy(update={"reason": NO_SPEECH}))
            try:
                segments = self._transcribe(run, data, wav, found.regions, transcriber, forced)
            except ModelNotConfigured as exc:
                return self._not_run(data, exc.reason)
        transcript = base.model_copy(update={"segments": _with_ids(data.media_id, segments)})
        events = self._store(data, transcript)
        self._transcripts.forget_chunks(data.tenant_id, data.case_id, run)
        return events

    # --- the work ----------------------------------------------------------------------------

    def _transcribe(
        self,
        run: str,
        data: AudioExtracted,
        wav: Path,
        regions: Sequence[TimeSpan],
        transcriber: Transcriber,
        forced: str | None,
    ) -> list[SpeechSegment]:
        done = self._transcripts.chunks(data.tenant_id, data.case_id, run)
        if done:
            log.info("resuming a transcription", extra={"media_id": data.media_id, "chunks_done": len(done)})
        segments: list[SpeechSegment] = []
        for index, chunk in enumerate(_chunks(regions, self._options.chunk_speech_s)):
            if index in done:
                segments.extend(done[index])
                continue
            request = TranscriptionInput(
                path=wav, language=forced, regions=list(chunk), translate=self._options.translate
            )
            try:
                result = transcriber.predict(request)
            except InvalidModelOutput as exc:  # this chunk only: the rest of the file goes on
                log.warning("a chunk failed to transcribe: %s", exc.reason, extra={"media_id": data.media_id})
                found = _gaps(chunk, f"transcription failed: {exc.reason}")
            else:
                found = _segments(chunk, result)
            self._transcripts.save_chunk(data.tenant_id, data.case_id, run, index, found)
            segments.extend(found)
        return segments

    # --- outcomes ----------------------------------------------------------------------------

    def _store(self, data: AudioExtracted, transcript: Transcript) -> list[EventData]:
        stored = self._transcripts.add(transcript)
        speech = stored.speech
        model = stored.model
        return [
            TranscriptCompleted(
                **data.media_ids(),
                model=ModelInfo.of(model),
                result_count=len(stored.segments),
                status="completed",
                reason=stored.reason,
                language=stored.language,
                version=stored.version,
                audio_key=data.object_key,
                speech_segments=len(speech),
                unintelligible=len(stored.segments) - len(speech),
                words=sum(len(segment.words) for segment in speech),
                languages={code: round(seconds, 3) for code, seconds in stored.languages.items()},
                speech_s=stored.speech_s,
            )
        ]

    def _not_run(self, data: AudioExtracted, reason: str) -> list[EventData]:
        log.info("transcription not run: %s", reason, extra={"media_id": data.media_id})
        stored = self._transcripts.add(
            Transcript(
                tenant_id=data.tenant_id,
                case_id=data.case_id,
                media_id=data.media_id,
                version=1,
                status="not_run",
                reason=reason,
                duration_s=data.duration_s,
            )
        )
        return [
            TranscriptCompleted(
                **data.media_ids(),
                model=ModelInfo.none(),
                result_count=0,
                status="not_run",
                reason=reason,
                version=stored.version,
                audio_key=data.object_key,
            )
        ]

    def _failed(self, data: AudioExtracted, base: Transcript, reason: str) -> list[EventData]:
        log.warning("transcription failed: %s", reason, extra={"media_id": data.media_id})
        self._transcripts.add(base.model_copy(update={"status": "failed", "reason": reason}))
        return [MediaFailed(**data.media_ids(), step=STEP, reason=reason)]


def _chunks(regions: Sequence[TimeSpan], speech_s: float) -> list[list[TimeSpan]]:
    """Consecutive regions grouped into chunks of about ``speech_s`` seconds of speech."""
    chunks: list[list[TimeSpan]] = []
    current: list[TimeSpan] = []
    seconds = 0.0
    for region in regions:
        if current and seconds + (region.end - region.start) > speech_s:
            chunks.append(current)
            current, seconds = [], 0.0
        current.append(region)
        seconds += region.end - region.start
    if current:
        chunks.append(current)
    return chunks


def _segments(regions: Sequence[TimeSpan], result: ModelTranscript) -> list[SpeechSegment]:
    """The model's segments, plus an unintelligible segment for every region that yielded none."""
    out: list[SpeechSegment] = []
    heard = set()
    for segment in result.segments:
        region = segment.region
        if region is None:  # a backend that does not name regions: place it by its time
            region = next((i for i, r in enumerate(regions) if r.start - 0.5 <= segment.start < r.end), None)
        if not segment.text.strip():
            continue
        heard.add(region)
        out.append(
            SpeechSegment(
                id="",
                start=segment.start,
                end=segment.end,
                text=segment.text.strip(),
                language=segment.language,
                language_probability=segment.language_probability,
                translation=segment.translation,
                confidence=segment.confidence,
                words=[
                    SpokenWord(start=w.start, end=w.end, text=w.text, probability=w.confidence)
                    for w in segment.words
                ],
            )
        )
    out.extend(_gaps([r for i, r in enumerate(regions) if i not in heard], UNINTELLIGIBLE))
    return out


def _gaps(regions: Sequence[TimeSpan], reason: str) -> list[SpeechSegment]:
    return [
        SpeechSegment(id="", start=r.start, end=r.end, kind="unintelligible", reason=reason) for r in regions
    ]


def _with_ids(media_id: str, segments: list[SpeechSegment]) -> list[SpeechSegment]:
    """Segments in time order, each with its stable id (unique even if two start together)."""
    out = []
    taken: set[str] = set()
    for segment in sorted(segments, key=lambda s: (s.start, s.end)):
        base = segment_id(media_id, segment.start)
        candidate, n = base, 1
        while candidate in taken:
            n += 1
            candidate = f"{base}-{n}"
        taken.add(candidate)
        out.append(segment.model_copy(update={"id": candidate}))
    return out


def _version(model: Transcriber) -> str:
    return model.version or "unknown"
