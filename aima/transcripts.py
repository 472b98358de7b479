"""The transcript of one media file, as every reader sees it: segments, words, languages, speakers.

`transcribe` writes a new `Transcript` version per run (old versions stay readable);
`speakers` labels the segments of that version in place; search, spoken cues, the exports and
the report read the latest version. Times are seconds from the start of the file.

A segment is either ``speech`` (text in its own language, an English ``translation`` when that
language is not English, words with times and probabilities) or ``unintelligible``: a stretch
the voice activity detector marked as speech that yielded no usable text, or whose chunk
failed, kept with its reason so that nothing heard is silently dropped.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aima.domain import ModelRef, utcnow

SegmentKind = Literal["speech", "unintelligible"]
TranscriptStatus = Literal["completed", "not_run", "failed"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SpokenWord(_Model):
    start: float = Field(ge=0)
    end: float = Field(ge=0)
    text: str
    probability: float | None = Field(default=None, ge=0, le=1)


class SpeechSegment(_Model):
    """One stretch of speech (or of unintelligible sound) with its language and speaker."""

    id: str = Field(description="stable: media id and start millisecond (`segment_id`)")
    start: float = Field(ge=0)
    end: float = Field(ge=0)
    kind: SegmentKind = "speech"
    text: str = ""
    language: str | None = None
    language_probability: float | None = Field(default=None, ge=0, le=1)
    translation: str | None = Field(default=None, description="English, for a non-English segment")
    confidence: float | None = Field(default=None, ge=0, le=1)
    words: list[SpokenWord] = Field(default_factory=list)
    reason: str | None = Field(default=None, description="why a segment is unintelligible")
    speaker: str | None = Field(default=None, description="the file's speaker label, e.g. S1")
    case_speaker_id: str | None = Field(default=None, description="the case-level speaker")

    @model_validator(mode="after")
    def _ordered(self) -> SpeechSegment:
        if self.end < self.start:
            raise ValueError("end must not be before start")
        return self

    @property
    def english(self) -> str:
        """The English text: the translation of a non-English segment, else the text."""
        return self.translation if self.translation is not None else self.text


class Transcript(_Model):
    """One version of a media file's transcript."""

    tenant_id: str
    case_id: str
    media_id: str
    version: int = Field(ge=1)
    status: TranscriptStatus = "completed"
    reason: str | None = None
    model: ModelRef | None = None
    forced_language: str | None = None
    duration_s: float = Field(default=0.0, ge=0)
    speech_s: float = Field(default=0.0, ge=0, description="seconds the voice detector marked as speech")
    segments: list[SpeechSegment] = Field(default_factory=list)
    speakers_labelled: bool = False
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def speech(self) -> list[SpeechSegment]:
        return [segment for segment in self.segments if segment.kind == "speech"]

    @property
    def languages(self) -> dict[str, float]:
        """Seconds of speech per language, longest first."""
        seconds: dict[str, float] = {}
        for segment in self.speech:
            if segment.language:
                seconds[segment.language] = seconds.get(segment.language, 0.0) + segment.end - segment.start
        return dict(sorted(seconds.items(), key=lambda item: -item[1]))

    @property
    def language(self) -> str | None:
        """The language spoken longest, if any."""
        return next(iter(self.languages), None)


def segment_id(media_id: str, start_s: float) -> str:
    """The stable id of the segment of ``media_id`` that starts at ``start_s``."""
    return f"{media_id}-t{round(start_s * 1000):09d}"
