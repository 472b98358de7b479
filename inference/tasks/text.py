"""Text tasks: embeddings for search, and a narrative whose every statement cites evidence."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from aima.domain import EvidenceRef
from aima.model_settings import ModelTask
from inference.base import InferenceModel
from inference.errors import InvalidModelOutput
from inference.tasks.common import IO, Embedder


class TextsInput(IO):
    texts: list[str] = Field(min_length=1)


class TextEmbeddings(IO):
    vectors: list[list[float]]


class TextEmbedder(Embedder[TextsInput, TextEmbeddings]):
    """One vector per text, in input order."""

    task: ClassVar[ModelTask] = ModelTask.TEXT_EMBEDDER
    collection: ClassVar[str] = "texts"
    input_type = TextsInput
    output_type = TextEmbeddings

    def _check(self, inputs: TextsInput, output: TextEmbeddings) -> None:
        if len(output.vectors) != len(inputs.texts):
            raise InvalidModelOutput(f"{len(output.vectors)} vectors for {len(inputs.texts)} texts")
        for i, vector in enumerate(output.vectors):
            self.check_vector(vector, f"vector {i}")


class Fact(IO):
    """One thing the pipeline found, with the evidence it rests on; the narrator may cite it by id."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    text: str = Field(min_length=1, max_length=4000)
    evidence: list[EvidenceRef] = Field(default_factory=list)


class NarrativeInput(IO):
    facts: list[Fact] = Field(min_length=1)
    instructions: str | None = Field(default=None, max_length=8000)
    language: str | None = Field(default=None, pattern=r"^[a-z]{2,3}$")


class Statement(IO):
    """One sentence of the narrative and the ids of the facts it rests on."""

    text: str = Field(min_length=1)
    citations: list[str] = Field(min_length=1)


class Narrative(IO):
    statements: list[Statement]

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.statements)


class Narrator(InferenceModel[NarrativeInput, Narrative]):
    """Writes a readable summary from facts; a statement citing no given fact is refused."""

    task: ClassVar[ModelTask] = ModelTask.NARRATOR
    input_type = NarrativeInput
    output_type = Narrative

    def _check(self, inputs: NarrativeInput, output: Narrative) -> None:
        known = {fact.id for fact in inputs.facts}
        for i, statement in enumerate(output.statements):
            unknown = sorted(set(statement.citations) - known)
            if unknown:
                raise InvalidModelOutput(f"statement {i} cites unknown evidence {unknown}")
