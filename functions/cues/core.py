"""The cues function's core: a transcript version made searchable, and matched against the cue list.

``handle`` takes ``io.aima.transcript.completed.v1`` and, for the transcript version it names:

1. skips a version that is gone or superseded (a newer version's event does the work);
2. embeds every speech segment's text and its English translation (`TextEmbedder`) and makes them
   the media's records in the ``texts`` collection (`aima.storage.speech_index.SpeechIndex`; stale
   records of an older version are removed, other collections untouched);
3. matches every speech segment against the cue list (`functions.cues.cuelist`):

   * **semantically**, on its English text (the translation of a non-English segment; nothing for
     a non-English segment without one): the text and, when it has several, each sentence of
     at least two words, against the cue's English examples. The best cosine similarity at or above
     the cue's threshold matches. A single word is left to the patterns: alone, its vector is close
     to too much;
   * **lexically**, on its original text, with the patterns of its language;
   * and, lexically only, with the tenant's own phrases of its language (runtime configuration,
     section ``phrases``, read at each event through ``phrases_for``): one extra cue per phrase
     (`functions.cues.cuelist.PhraseCue`), added to the list's cues, never replacing one;

4. stores one `CueFinding` per segment and matching cue (`aima.storage.findings`), replacing the
   media's earlier cue findings, and returns ``PhrasesMatched`` with the counts.

Confidence of a finding: the similarity for a semantic match; the list's ``lexical_confidence`` for
a pattern or tenant phrase match; both combined as independent evidence, ``1 - (1 - s)(1 - l)``,
when both matched. It ranks indicators for review; it is not the probability that anything
happened. Findings below the tenant's ``thresholds.indicator_min_confidence`` (runtime
configuration) are not stored.

No text embedder → ``not_run`` with the reason (nothing indexed, earlier findings kept); a model
that is down → the event is retried; an invalid model answer → ``MediaFailed`` for this step.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from aima.domain import EvidenceRef, Finding, ModelRef, Step
from aima.storage.findings import FindingRepository
from aima.storage.speech_index import IndexedText, SpeechIndex, texts_to_index
from aima.storage.transcripts import TranscriptRepository
from aima.storage.vectors import VectorDimensionMismatch, VectorStore
from aima.transcripts import SpeechSegment, Transcript
from events.catalogue import EventData, MediaFailed, ModelInfo, PhrasesMatched, TranscriptCompleted
from functions.cues.cuelist import Category, CueList, PhraseCue, TenantPhrases
from functions.cues.matching import CueMatch, CueMatcher
from functions.runtime.context import Context
from inference.errors import InvalidModelOutput, ModelNotConfigured
from inference.tasks.text import TextEmbedder, TextsInput
from inference.vectors import ensure_collection_for

log = logging.getLogger(__name__)

STEP = Step.PHRASES
EMBED_CHUNK = 256
"""Texts per model call: a long transcript is embedded in several calls, so that search queries of
the same process get the model in between."""
MAX_SENTENCES = 8
MIN_WORDS = 2
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+")
_NAMESPACE = uuid.UUID("5f0b8e7c-4b8e-4a39-9c1e-2f7d0c6a1e55")


class CueFinding(Finding):
    """Speech that resembles a distress or coercion cue: an indicator for human review, never a verdict."""

    media_id: str
    segment_id: str
    transcript_version: int
    cue_id: str
    category: Category
    cue_list_version: int
    matched_by: Literal["semantic", "lexical", "both"]
    similarity: float | None = None
    example: str | None = None
    pattern: str | None = None
    words: str | None = None
    text: str
    translation: str | None = None
    language: str | None = None
    phrase: str | None = None
    phrases_level: Literal["tenant", "global"] | None = None
    phrases_version: int | None = None
    note: str


@dataclass(frozen=True)
class _Segment:
    """A speech segment with the rows of its English units in the embedded matrix."""

    segment: SpeechSegment
    units: list[tuple[int, str]]


class CueCore:
    """``async handle(data, ctx) -> list[EventData]`` for ``io.aima.transcript.completed.v1``."""

    def __init__(
        self,
        transcripts: TranscriptRepository,
        vectors: VectorStore,
        findings: FindingRepository,
        *,
        embedder: Callable[[], TextEmbedder],
        cues: CueList,
        min_confidence_for: Callable[[str], float] = lambda tenant_id: 0.0,
        phrases_for: Callable[[str], TenantPhrases] = lambda tenant_id: TenantPhrases(),
    ) -> None:
        """``embedder`` returns the process's text embedder (raising `ModelNotConfigured` when
        there is none); ``min_confidence_for(tenant_id)`` is the tenant's lowest reported confidence;
        ``phrases_for(tenant_id)`` the tenant's own phrases, read again for every event."""
        self._transcripts = transcripts
        self._vectors = vectors
        self._index = SpeechIndex(vectors, transcripts)
        self._findings = findings
        self._embedder = embedder
        self.cues = cues
        self._min_confidence_for = min_confidence_for
        self._phrases_for = phrases_for
        self._examples: dict[tuple[str, ...], Any] = {}
        self._collection_ready: set[tuple[str, str]] = set()

    async def handle(self, data: TranscriptCompleted, ctx: Context) -> list[EventData]:
        """Index and match the transcript version; blocking work runs in a worker thread."""
        return await asyncio.to_thread(self._handle, ctx.event_id, data)

    def _handle(self, run: str, data: TranscriptCompleted) -> list[EventData]:
        if data.status != "completed" or data.version is None:
            why = data.reason or "no transcript version was named"
            return [self._not_run(data, f"the transcript is {data.status}: {why}")]
        transcript = self._transcripts.get(data.tenant_id, data.case_id, data.media_id, data.version)
        if transcript is None:
            log.info("transcript is gone; nothing to match", extra={"media_id": data.media_id})
            return []
        newest = self._transcripts.versions(data.tenant_id, data.case_id, data.media_id)
        if newest and newest[-1] > transcript.version:
            log.info(
                "transcript version superseded; the newer one is matched",
                extra={"media_id": data.media_id, "version": transcript.version, "newest": newest[-1]},
            )
            return []
        try:
            model = self._embedder()
            return self._analyse(run, data, transcript, model)
        except ModelNotConfigured as exc:
            return [self._not_run(data, exc.reason)]
        except VectorDimensionMismatch as exc:
            return [self._not_run(data, str(exc))]
        except InvalidModelOutput as exc:
            log.warning("text embedder answered invalidly: %s", exc.reason, extra={"media_id": data.media_id})
            return [MediaFailed(**data.media_ids(), step=STEP.value, reason=f"text embedder: {exc.reason}")]

    # --- the work ----------------------------------------------------------------------------------

    def _analyse(
        self, run: str, data: TranscriptCompleted, transcript: Transcript, model: TextEmbedder
    ) -> list[EventData]:
        phrases = self._phrases_for(data.tenant_id)
        texts = texts_to_index(transcript)
        segments, extra = _units(transcript, texts)
        examples = self._example_vectors(model)
        vectors = _embed(model, [text.text for text in texts] + extra)
        self._ensure_collection(model)
        written, removed = self._index.replace(transcript, texts, vectors[: len(texts)])
        matrix = np.asarray(vectors, dtype=np.float32) if vectors else np.zeros((0, 0), np.float32)
        reference = ModelRef(name=model.name, version=model.version or "unknown", backend=model.backend)
        floor = self._min_confidence_for(data.tenant_id)
        matcher = CueMatcher(self.cues, examples, phrases.cues())
        findings = [
            finding
            for item in segments
            for finding in self._segment_findings(transcript, item, matrix, matcher, reference, phrases)
            if finding.confidence >= floor
        ]
        dropped = self._findings.replace_media(
            data.tenant_id, data.case_id, data.media_id, STEP, findings, run=run
        )
        categories: dict[str, int] = {}
        for finding in findings:
            categories[finding.category] = categories.get(finding.category, 0) + 1
        log.info(
            "transcript indexed and matched",
            extra={
                "media_id": data.media_id,
                "version": transcript.version,
                "texts": written,
                "stale_texts": removed,
                "findings": len(findings),
                "stale_findings": dropped,
            },
        )
        return [
            PhrasesMatched(
                **data.media_ids(),
                model=ModelInfo.of(reference),
                result_count=len(findings),
                transcript_version=transcript.version,
                cue_list_version=self.cues.version,
                indexed_segments=len({text.segment_id for text in texts}),
                categories=categories,
            )
        ]

    def _example_vectors(self, model: TextEmbedder) -> Any:
        """The cue list's example vectors (examples x dimension), computed once per model and list."""
        key = (model.backend, model.name, model.version, str(self.cues.version))
        found = self._examples.get(key)
        if found is None:
            texts = [example for _, example in self.cues.examples]
            found = np.asarray(_embed(model, texts), dtype=np.float32) if texts else None
            self._examples = {key: found}
        return found

    def _ensure_collection(self, model: TextEmbedder) -> None:
        key = (model.backend, model.name)
        if key not in self._collection_ready:
            ensure_collection_for(self._vectors, model)
            self._collection_ready.add(key)

    def _segment_findings(
        self,
        transcript: Transcript,
        item: _Segment,
        matrix: Any,
        matcher: CueMatcher,
        model: ModelRef,
        phrases: TenantPhrases,
    ) -> list[CueFinding]:
        units = matrix[[row for row, _ in item.units]] if item.units else None
        texts = [text for _, text in item.units]
        return [
            self._finding(transcript, item.segment, match, model, phrases)
            for match in matcher.match(item.segment, units, texts)
        ]

    def _finding(
        self,
        transcript: Transcript,
        segment: SpeechSegment,
        match: CueMatch,
        model: ModelRef,
        phrases: TenantPhrases,
    ) -> CueFinding:
        cue, semantic, lexical = match.cue, match.semantic, match.lexical
        key = f"{transcript.media_id}/{transcript.version}/{segment.id}/{cue.id}/{self.cues.version}"
        phrase = cue.phrase if isinstance(cue, PhraseCue) else None
        if phrase is not None:  # another phrase in the same place of the list is another finding
            key += f"/{phrase}"
        return CueFinding(
            id=str(uuid.uuid5(_NAMESPACE, key)),
            tenant_id=transcript.tenant_id,
            case_id=transcript.case_id,
            step=STEP,
            label=f"possibly {cue.label}",
            confidence=match.confidence,
            model=model,
            evidence=[
                EvidenceRef(
                    media_id=transcript.media_id,
                    start_s=segment.start,
                    end_s=segment.end,
                    segment_id=segment.id,
                )
            ],
            media_id=transcript.media_id,
            segment_id=segment.id,
            transcript_version=transcript.version,
            cue_id=cue.id,
            category=cue.category,
            cue_list_version=self.cues.version,
            matched_by=match.matched_by,
            similarity=round(semantic.similarity, 4) if semantic is not None else None,
            example=semantic.example if semantic is not None else None,
            pattern=lexical.pattern if lexical is not None else None,
            words=lexical.words if lexical is not None else None,
            text=segment.text,
            translation=segment.translation,
            language=segment.language,
            phrase=phrase,
            phrases_level=phrases.level if phrase is not None else None,
            phrases_version=phrases.version if phrase is not None else None,
            note=(
                f"Speech at {segment.start:.1f}-{segment.end:.1f} s may contain {cue.label}: "
                f"{match.explanation}. An indicator for human review, not a finding of fact."
            ),
        )

    def _not_run(self, data: TranscriptCompleted, reason: str) -> PhrasesMatched:
        log.info("cues not run: %s", reason, extra={"media_id": data.media_id})
        return PhrasesMatched(
            **data.media_ids(),
            model=ModelInfo.none(),
            result_count=0,
            status="not_run",
            reason=reason,
            transcript_version=data.version,
            cue_list_version=self.cues.version,
        )


def _units(transcript: Transcript, texts: Sequence[IndexedText]) -> tuple[list[_Segment], list[str]]:
    """Each speech segment with the rows of its English units, and the texts to embed beyond the
    indexed ones (the sentences of segments that have several)."""
    rows = {(text.segment_id, text.text): row for row, text in enumerate(texts)}
    extra: list[str] = []
    segments: list[_Segment] = []
    for segment in transcript.speech:
        english = _english(segment)
        units: list[tuple[int, str]] = []
        if english is not None:
            whole = rows.get((segment.id, english))
            if whole is not None and _words(english) >= MIN_WORDS:
                units.append((whole, english))
            sentences = [s for s in _SENTENCE_END.split(english) if _words(s) >= MIN_WORDS]
            if len(sentences) > 1:
                for sentence in sentences[:MAX_SENTENCES]:
                    units.append((len(texts) + len(extra), sentence))
                    extra.append(sentence)
        segments.append(_Segment(segment, units))
    return segments, extra


def _english(segment: SpeechSegment) -> str | None:
    """The segment's English text: its translation, or its text if it is English (or of no known
    language); None for a non-English segment without a translation."""
    translation = (segment.translation or "").strip()
    if translation:
        return translation
    if segment.language in (None, "en") and segment.text.strip():
        return segment.text.strip()
    return None


def _words(text: str) -> int:
    return len(re.findall(r"\w+", text))


def _embed(model: TextEmbedder, texts: Sequence[str]) -> list[list[float]]:
    vectors: list[list[float]] = []
    for start in range(0, len(texts), EMBED_CHUNK):
        chunk = list(texts[start : start + EMBED_CHUNK])
        vectors.extend(model.predict(TextsInput(texts=chunk)).vectors)
    return vectors
