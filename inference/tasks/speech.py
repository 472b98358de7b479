"""Speech tasks: transcription (segments with word timestamps) and voice embeddings."""

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
    confidence: Score | None = None
    words: list[Word] = Field(default_factory=list)

    @model_validator(mode="after")
    def _ordered(self) -> TranscriptSegment:
        if self.end < self.start:
            raise ValueError("end must not be before start")
        return self


class Transcript(IO):
    language: str | None = None
    duration_s: Seconds | None = None
    segments: list[TranscriptSegment] = Field(default_factory=list)


class Transcriber(InferenceModel[AudioInput, Transcript]):
    """Speech to text with segment and word timestamps."""

    task: ClassVar[ModelTask] = ModelTask.TRANSCRIBER
    input_type = AudioInput
    output_type = Transcript

    def _check(self, inputs: AudioInput, output: Transcript) -> None:
        if output.duration_s is not None:
            for segment in output.segments:
                if segment.end > output.duration_s + 1.0:
                    raise InvalidModelOutput(
                        f"segment ends at {segment.end:g}s, after the audio ({output.duration_s:g}s)"
                    )


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
