"""Speech tasks: speech detection, transcription (segments with word timestamps) and voice embeddings.

The transcribe step runs the `SpeechDetector` over the whole file first, then hands the
`Transcriber` the speech regions of one chunk at a time (`TranscriptionInput.regions`): each
output segment names the region it came from, so a region that yields nothing becomes an
explicit "unintelligible" gap instead of disappearing.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, model_validator

from aima.model_settings import ModelTask
from inference.base import InferenceModel
from inference.errors import InvalidModelOutput
from inference.tasks.common import IO, AudioInput, Embedder, Score, Seconds, TimeSpan


class Word(IO):
    start: Seconds
    end: Seconds
    text: str
    confidence: Score | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Word:
        if self.end < self.start:
            raise ValueError("end must not be before start")
        return self


class TranscriptSegment(IO):
    """A stretch of speech: times in seconds from the start of the file."""

    start: Seconds
    end: Seconds
    text: str
    language: str | None = None
    language_probability: Score | None = None
    confidence: Score | None = None
    words: list[Word] = Field(default_factory=list)
    translation: str | None = Field(default=None, description="English, when translated")
    region: int | None = Field(default=None, ge=0, description="index of the input region")

    @model_validator(mode="after")
    def _ordered(self) -> TranscriptSegment:
        if self.end < self.start:
            raise ValueError("end must not be before start")
        return self


class Transcript(IO):
    language: str | None = None
    duration_s: Seconds | None = None
    segments: list[TranscriptSegment] = Field(default_factory=list)


class TranscriptionInput(AudioInput):
    """What to transcribe: the whole file, or only ``regions`` of it (speech found by the
    `SpeechDetector`); ``translate`` asks for an English translation of non-English segments."""

    regions: list[TimeSpan] = Field(default_factory=list, description="empty: the whole file")
    translate: bool = False


class Transcriber(InferenceModel[TranscriptionInput, Transcript]):
    """Speech to text with segment and word timestamps, a language per segment."""

    task: ClassVar[ModelTask] = ModelTask.TRANSCRIBER
    input_type = TranscriptionInput
    output_type = Transcript

    def _check(self, inputs: TranscriptionInput, output: Transcript) -> None:
        if output.duration_s is not None:
            for segment in output.segments:
                if segment.end > output.duration_s + 1.0:
                    raise InvalidModelOutput(
                        f"segment ends at {segment.end:g}s, after the audio ({output.duration_s:g}s)"
                    )
        for segment in output.segments:
            if segment.region is not None and segment.region >= len(inputs.regions):
                raise InvalidModelOutput(f"segment names region {segment.region} of {len(inputs.regions)}")


class SpeechRegions(IO):
    """Where the detector heard speech, in order, and how long the audio is."""

    duration_s: Seconds
    regions: list[TimeSpan] = Field(default_factory=list)


class SpeechDetector(InferenceModel[AudioInput, SpeechRegions]):
    """Voice activity detection: the stretches of a file that contain speech."""

    task: ClassVar[ModelTask] = ModelTask.SPEECH_DETECTOR
    input_type = AudioInput
    output_type = SpeechRegions

    def _check(self, inputs: AudioInput, output: SpeechRegions) -> None:
        previous = 0.0
        for region in output.regions:
            if region.start < previous or region.end > output.duration_s + 0.5:
                raise InvalidModelOutput("speech regions overlap, are out of order or pass the end")
            previous = region.end


class VoiceInput(IO):
    """Stretches of one audio file to embed, one vector each."""

    path: Path
    segments: list[TimeSpan] = Field(min_length=1)


class VoiceEmbedding(IO):
    start: Seconds
    end: Seconds
    vector: list[float]


class VoiceEmbeddings(IO):
    embeddings: list[VoiceEmbedding]


class VoiceEmbedder(Embedder[VoiceInput, VoiceEmbeddings]):
    """One speaker embedding per segment, for grouping voices into persons within a case."""

    task: ClassVar[ModelTask] = ModelTask.VOICE_EMBEDDER
    collection: ClassVar[str] = "voices"
    input_type = VoiceInput
    output_type = VoiceEmbeddings

    def _check(self, inputs: VoiceInput, output: VoiceEmbeddings) -> None:
        if len(output.embeddings) != len(inputs.segments):
            raise InvalidModelOutput(
                f"{len(output.embeddings)} embeddings for {len(inputs.segments)} segments"
            )
        for i, embedding in enumerate(output.embeddings):
            self.check_vector(embedding.vector, f"embedding {i}")
