"""What was said, searchable by meaning: the speech segments of a case in the ``texts`` collection.

**Indexing** (the ``cues`` function, for each new transcript version): every speech segment's text
is one record, and its English translation, when it has one, a second; the records' ids are derived
from the segment id (``{segment_id}-o`` original, ``{segment_id}-e`` English), their ``ref`` is the
segment id. `SpeechIndex.replace` writes a version's records and then removes the media's other
records in ``texts`` (an older version's segments), and no other collection's.

**Search** (the gateway and ``aima search``): the query's vector is compared with the case's
records, within its tenant and case only (the vector store filters by both); a segment found through
its text and its translation counts once, with the better score. Each hit is completed from the
newest transcript of its file, so a segment an older version had is never returned, and from the
media row (its file name), read in the caller's scope.

**Text in frames** (the ``ocr`` function): each line of a media file's newest OCR result is one
record too, id ``ocr-{line_id}``, ``ref`` the line id (`SpeechIndex.replace_ocr`). A hit says where
it came from (``source``: ``speech`` or ``ocr``); an OCR hit names its first frame and timestamp and
spans the time the line stayed visible. Replacing a file's speech records keeps its OCR records and
the other way round (each side keeps the ids of the other's newest stored document, which is stored
before it is indexed).

Embedding is the caller's part (the text embedder lives above the kernel): the same model must embed
the texts and the query.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

from aima.access.scope import Scope
from aima.storage.media import MediaRepository
from aima.storage.ocr import OcrLine, OcrRepository, OcrResult
from aima.storage.transcripts import TranscriptRepository
from aima.storage.vectors import MAX_ID_LENGTH, MAX_LIMIT, VectorRecord, VectorStore
from aima.transcripts import SpeechSegment, Transcript

TEXTS = "texts"
ORIGINAL = "o"
ENGLISH = "e"
MAX_QUERY = 500
"""Longest query, in characters (a sentence or two; the embedder reads 256 word pieces at most)."""
MAX_RESULTS = 100
OVERFETCH = 3
"""Records fetched per wanted result: a segment may be found twice (text, translation), and a
record of a version being replaced is skipped."""
_ID = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_ID_LENGTH - 2}}}")

Matched = Literal["text", "translation"]
Source = Literal["speech", "ocr"]
OCR_PREFIX = "ocr-"


class InvalidQuery(ValueError):
    """A search query that is empty, blank or too long."""


def check_query(query: str) -> str:
    """The query without surrounding white space; `InvalidQuery` if nothing is left or it is too long."""
    cleaned = query.strip()
    if not cleaned or "\x00" in cleaned:
        raise InvalidQuery("the query is empty")
    if len(cleaned) > MAX_QUERY:
        raise InvalidQuery(f"the query is longer than {MAX_QUERY} characters")
    return cleaned


@dataclass(frozen=True)
class IndexedText:
    """One text of a segment as it goes into the index."""

    vector_id: str
    segment_id: str
    text: str
    matched: Matched


def vector_id(segment_id: str, kind: str) -> str:
    """The record id of a segment's text (``o``) or English translation (``e``)."""
    base = segment_id if _ID.fullmatch(segment_id) else hashlib.sha256(segment_id.encode()).hexdigest()[:64]
    return f"{base}-{kind}"


def ocr_vector_id(line_id: str) -> str:
    """The record id of an OCR line."""
    fits = _ID.fullmatch(line_id) and len(line_id) + len(OCR_PREFIX) <= MAX_ID_LENGTH
    return OCR_PREFIX + (line_id if fits else hashlib.sha256(line_id.encode()).hexdigest()[:64])


def texts_to_index(transcript: Transcript) -> list[IndexedText]:
    """The texts of the transcript's speech segments: each text, and each translation that differs."""
    found: list[IndexedText] = []
    for segment in transcript.speech:
        text = segment.text.strip()
        if text:
            found.append(IndexedText(vector_id(segment.id, ORIGINAL), segment.id, text, "text"))
        translation = (segment.translation or "").strip()
        if translation and translation != text:
            found.append(IndexedText(vector_id(segment.id, ENGLISH), segment.id, translation, "translation"))
    return found


class SegmentHit(BaseModel):
    """A segment that matched a query, with where it is and what was said, best first."""

    media_id: str
    filename: str | None = None
    segment_id: str
    start: float = Field(ge=0, description="seconds from the start of the file")
    end: float = Field(ge=0)
    text: str = Field(description="as spoken, in its own language")
    translation: str | None = Field(default=None, description="English, for a non-English segment")
    language: str | None = None
    speaker: str | None = Field(default=None, description="the file's speaker label, e.g. S1")
    case_speaker_id: str | None = None
    score: float = Field(description="cosine similarity of the query and the segment (1: same meaning)")
    matched: Matched = Field(description="whether the text or its English translation matched best")
    transcript_version: int | None = Field(default=None, ge=1, description="speech: the transcript read")
    source: Source = Field(default="speech", description="speech (a transcript) or ocr (text in frames)")
    frame_id: str | None = Field(default=None, description="ocr: the first frame the line is on")
    timestamp_s: float | None = Field(default=None, ge=0, description="ocr: that frame's time")
    ocr_version: int | None = Field(default=None, ge=1, description="ocr: the OCR result read")


class SpeechIndex:
    """The case's speech segments in the ``texts`` collection (see module docstring)."""

    def __init__(
        self,
        vectors: VectorStore,
        transcripts: TranscriptRepository,
        media: MediaRepository | None = None,
        ocr: OcrRepository | None = None,
    ) -> None:
        self._vectors = vectors
        self._transcripts = transcripts
        self._media = media
        self._ocr = ocr or OcrRepository(transcripts.documents)

    def replace(
        self, transcript: Transcript, texts: Sequence[IndexedText], vectors: Sequence[Sequence[float]]
    ) -> tuple[int, int]:
        """Index ``texts`` (embedded as ``vectors``, in order) as the media's only texts; returns how
        many records were written and how many stale ones were removed."""
        if len(texts) != len(vectors):
            raise ValueError(f"{len(vectors)} vectors for {len(texts)} texts")
        records = [
            VectorRecord(
                id=text.vector_id,
                tenant_id=transcript.tenant_id,
                case_id=transcript.case_id,
                media_id=transcript.media_id,
                vector=vector,
                ref=text.segment_id,
            )
            for text, vector in zip(texts, vectors, strict=True)
        ]
        written = self._vectors.upsert(TEXTS, records) if records else 0
        keep = {record.id for record in records} | self._ocr_ids(
            transcript.tenant_id, transcript.case_id, transcript.media_id
        )
        removed = self._vectors.delete_media_in(
            TEXTS, transcript.media_id, case_id=transcript.case_id, keep=keep
        )
        return written, removed

    def replace_ocr(self, result: OcrResult, vectors: Sequence[Sequence[float]]) -> tuple[int, int]:
        """Index the lines of ``result`` (embedded as ``vectors``, in order) as the media's only OCR
        records (its speech records stay); returns how many were written and how many removed."""
        if len(result.lines) != len(vectors):
            raise ValueError(f"{len(vectors)} vectors for {len(result.lines)} lines")
        records = [
            VectorRecord(
                id=ocr_vector_id(line.id),
                tenant_id=result.tenant_id,
                case_id=result.case_id,
                media_id=result.media_id,
                vector=vector,
                ref=line.id,
            )
            for line, vector in zip(result.lines, vectors, strict=True)
        ]
        written = self._vectors.upsert(TEXTS, records) if records else 0
        transcript = self._transcripts.latest(result.tenant_id, result.case_id, result.media_id)
        speech = {text.vector_id for text in texts_to_index(transcript)} if transcript is not None else set()
        keep = {record.id for record in records} | speech
        removed = self._vectors.delete_media_in(TEXTS, result.media_id, case_id=result.case_id, keep=keep)
        return written, removed

    def _ocr_ids(self, tenant_id: str, case_id: str, media_id: str) -> set[str]:
        result = self._ocr.latest(tenant_id, case_id, media_id)
        return {ocr_vector_id(line.id) for line in result.lines} if result is not None else set()

    def has_texts(self, case_id: str) -> bool:
        """Whether anything of the case is indexed (a search of an empty case needs no model)."""
        return self._vectors.count(TEXTS, case_id=case_id) > 0

    def search(
        self, scope: Scope, case_id: str, vector: Sequence[float], limit: int = 10
    ) -> list[SegmentHit]:
        """The case's segments nearest to the query ``vector``, best first, at most ``limit``."""
        if not 1 <= limit <= MAX_RESULTS:
            raise ValueError(f"limit must be 1..{MAX_RESULTS}")
        if not scope.allows_case(case_id):
            return []
        records = self._vectors.search(
            TEXTS,
            vector,
            tenant_id=scope.tenant_id,
            case_id=case_id,
            limit=min(limit * OVERFETCH, MAX_LIMIT),
        )
        best: dict[tuple[Source, str], tuple[float, str, Matched]] = {}
        for record in records:
            matched: Matched = "translation" if record.id.endswith(f"-{ENGLISH}") else "text"
            key: tuple[Source, str] = ("ocr" if record.id.startswith(OCR_PREFIX) else "speech", record.ref)
            if record.ref and (key not in best or record.score > best[key][0]):
                best[key] = (record.score, record.media_id, matched)
        files: dict[str, _File | None] = {}
        frames: dict[str, _Frames | None] = {}
        hits: list[SegmentHit] = []
        for (source, ref), (score, media_id, matched) in sorted(best.items(), key=lambda item: -item[1][0]):
            hit: SegmentHit | None = None
            if source == "ocr":
                if media_id not in frames:
                    frames[media_id] = self._frames(scope, case_id, media_id)
                seen = frames[media_id]
                line = seen.lines.get(ref) if seen is not None else None
                if seen is not None and line is not None:
                    hit = _ocr_hit(seen, line, score)
            else:
                if media_id not in files:
                    files[media_id] = self._file(scope, case_id, media_id)
                file = files[media_id]
                segment = file.segments.get(ref) if file is not None else None
                if file is not None and segment is not None:
                    hit = _hit(file, segment, score, matched)
            if hit is None:
                continue  # a file since deleted, or a segment or line of a version since replaced
            hits.append(hit)
            if len(hits) == limit:
                break
        return hits

    def _filename(self, scope: Scope, media_id: str) -> tuple[bool, str | None]:
        """Whether the file is there (in scope), and its name."""
        if self._media is None:
            return True, None
        row = self._media.get(scope, media_id)
        return (row is not None), (row.filename if row is not None else None)

    def _frames(self, scope: Scope, case_id: str, media_id: str) -> _Frames | None:
        """The newest OCR result of a file and its name; None if either is gone (or out of scope)."""
        present, filename = self._filename(scope, media_id)
        result = self._ocr.latest(scope.tenant_id, case_id, media_id) if present else None
        if result is None:
            return None
        return _Frames(result, filename, {line.id: line for line in result.lines})

    def _file(self, scope: Scope, case_id: str, media_id: str) -> _File | None:
        """The newest transcript of a file and its name; None if either is gone (or out of scope)."""
        filename = None
        if self._media is not None:
            row = self._media.get(scope, media_id)
            if row is None:
                return None
            filename = row.filename
        transcript = self._transcripts.latest(scope.tenant_id, case_id, media_id)
        if transcript is None:
            return None
        return _File(transcript, filename, {segment.id: segment for segment in transcript.speech})


@dataclass(frozen=True)
class _Frames:
    result: OcrResult
    filename: str | None
    lines: dict[str, OcrLine]


def _ocr_hit(frames: _Frames, line: OcrLine, score: float) -> SegmentHit:
    return SegmentHit(
        media_id=frames.result.media_id,
        filename=frames.filename,
        segment_id=line.id,
        start=line.first_s,
        end=line.last_s,
        text=line.text,
        language=line.language,
        score=round(score, 4),
        matched="text",
        source="ocr",
        frame_id=line.first_frame_id,
        timestamp_s=line.first_s,
        ocr_version=frames.result.version,
    )


@dataclass(frozen=True)
class _File:
    transcript: Transcript
    filename: str | None
    segments: dict[str, SpeechSegment]


def _hit(file: _File, segment: SpeechSegment, score: float, matched: Matched) -> SegmentHit:
    return SegmentHit(
        media_id=file.transcript.media_id,
        filename=file.filename,
        segment_id=segment.id,
        start=segment.start,
        end=segment.end,
        text=segment.text,
        translation=segment.translation,
        language=segment.language,
        speaker=segment.speaker,
        case_speaker_id=segment.case_speaker_id,
        score=round(score, 4),
        matched=matched,
        transcript_version=file.transcript.version,
    )
