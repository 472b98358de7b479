"""Text tasks: embeddings for search, and a narrative whose every statement cites evidence."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

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
    """One sentence of the narrative and the ids of the given facts it rests on (at least one)."""

    text: str = Field(min_length=1)
    citations: list[str] = Field(min_length=1)


DropReason = Literal["no_text", "no_citation", "unknown_citation"]
"""Why a statement of a model's answer was dropped: blank, citing nothing, or citing an id that is
not one of the facts it was given."""


class DroppedStatement(IO):
    """A statement of the model's answer that was not kept; its text is not kept either (it is
    unverified prose)."""

    index: int = Field(ge=0, description="its position in the model's answer")
    reason: DropReason
    unknown: list[str] = Field(default_factory=list, description="the unknown ids it cited (at most 8)")


class Narrative(IO):
    """The kept statements, each citing only facts it was given, and what was dropped.

    ``dropped`` counts the statements of the model's answer that were not kept; ``dropped_reasons``
    says why, one entry per dropped statement."""

    statements: list[Statement]
    dropped: int = Field(default=0, ge=0)
    dropped_reasons: list[DroppedStatement] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_reason_per_drop(self) -> Narrative:
        if self.dropped != len(self.dropped_reasons):
            raise ValueError(f"dropped is {self.dropped} but {len(self.dropped_reasons)} reasons are given")
        return self

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.statements)


# A narrator model's answer is read as a draft, without judging it; `sift_narrative` judges it.
# The docstrings of the two draft models are their schema's descriptions, sent to the model.
# The schema requires ``citations`` with at least one id, so constrained output always cites;
# reading tolerates an empty or missing list, which drops that statement instead of the answer.


class DraftStatement(BaseModel):
    """One sentence of the narrative and the ids of the given facts it rests on."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    text: str = ""
    citations: list[str] = Field(default_factory=list, json_schema_extra={"minItems": 1})


class NarrativeDraft(BaseModel):
    """A short, neutral account of the given facts, statement by statement."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    statements: list[DraftStatement]


def sift_narrative(facts: Iterable[Fact], draft: NarrativeDraft) -> Narrative:
    """Keep the draft's statements that have text and cite only ``facts`` (at least one); drop and
    count the others. Kept text is stripped and repeated citations are cited once."""
    known = {fact.id for fact in facts}
    kept: list[Statement] = []
    dropped: list[DroppedStatement] = []
    for index, statement in enumerate(draft.statements):
        text = statement.text.strip()
        citations = list(dict.fromkeys(c.strip() for c in statement.citations))
        unknown = [c for c in citations if c not in known]
        if not text:
            dropped.append(DroppedStatement(index=index, reason="no_text"))
        elif not citations:
            dropped.append(DroppedStatement(index=index, reason="no_citation"))
        elif unknown:
            ids = [c[:64] for c in unknown[:8]]
            dropped.append(DroppedStatement(index=index, reason="unknown_citation", unknown=ids))
        else:
            kept.append(Statement(text=text, citations=citations))
    return Narrative(statements=kept, dropped=len(dropped), dropped_reasons=dropped)


class Narrator(InferenceModel[NarrativeInput, Narrative]):
    """Writes a readable summary from facts, every statement citing the facts it rests on.

    A backend implements ``_draft`` (the model's raw answer); `predict` returns it sifted by
    `sift_narrative`: a statement that is blank, cites nothing or cites an id that is not a given
    fact is dropped and counted in ``Narrative.dropped``, never failing the whole answer."""

    task: ClassVar[ModelTask] = ModelTask.NARRATOR
    input_type = NarrativeInput
    output_type = Narrative

    def _predict(self, inputs: NarrativeInput) -> Narrative:
        return sift_narrative(inputs.facts, self._draft(inputs))

    def _draft(self, inputs: NarrativeInput) -> NarrativeDraft:
        """The model's answer to ``inputs``, read but not yet sifted."""
        raise NotImplementedError(f"{type(self).__name__} must implement _draft")

    def _check(self, inputs: NarrativeInput, output: Narrative) -> None:
        known = {fact.id for fact in inputs.facts}
        for i, statement in enumerate(output.statements):
            unknown = sorted(set(statement.citations) - known)
            if unknown:
                raise InvalidModelOutput(f"statement {i} cites unknown evidence {unknown}")
