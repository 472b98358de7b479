"""Matching one speech segment against the cue list: semantically on its English units, lexically
on its original words; and against the tenant's phrases (`PhraseCue`), lexically only. Pure: the
vectors and the phrases come from the caller (`functions.cues.core`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from aima.transcripts import SpeechSegment
from functions.cues.cuelist import Cue, CueList, LexicalMatch, PhraseCue

MatchedBy = Literal["semantic", "lexical", "both"]


@dataclass(frozen=True)
class SemanticMatch:
    """The best (unit, example) pair of a cue: its cosine similarity, the example and the unit."""

    similarity: float
    example: str
    unit: str


@dataclass(frozen=True)
class CueMatch:
    """A cue that matched a segment, how, and with what confidence."""

    cue: Cue
    semantic: SemanticMatch | None
    lexical: LexicalMatch | None
    confidence: float

    @property
    def matched_by(self) -> MatchedBy:
        if self.semantic is not None and self.lexical is not None:
            return "both"
        return "semantic" if self.semantic is not None else "lexical"

    @property
    def explanation(self) -> str:
        how: list[str] = []
        if self.semantic is not None:
            how.append(
                f'close in meaning to "{self.semantic.example}" (similarity {self.semantic.similarity:.2f})'
            )
        if self.lexical is not None and isinstance(self.cue, PhraseCue):
            how.append(
                f'the words "{self.lexical.words}" match the tenant\'s phrase "{self.cue.phrase}" '
                f"({self.lexical.language})"
            )
        elif self.lexical is not None:
            how.append(f'the words "{self.lexical.words}" match a pattern ({self.lexical.language})')
        return " and ".join(how)


class CueMatcher:
    """The cues of a list with their example vectors (examples x dimension, normalised, list order),
    and the tenant's phrases (lexical cues without examples, added after the list's)."""

    def __init__(self, cues: CueList, examples: Any, phrases: Sequence[PhraseCue] = ()) -> None:
        self.cues = cues
        self.phrases = tuple(phrases)
        self._examples = examples
        self._columns: list[tuple[int, int]] = []
        column = 0
        for cue in cues.cues:
            self._columns.append((column, column + len(cue.examples)))
            column += len(cue.examples)
        if examples is not None and len(examples) != column:
            raise ValueError(f"{len(examples)} example vectors for {column} examples")

    def match(self, segment: SpeechSegment, units: Any, texts: Sequence[str]) -> list[CueMatch]:
        """The cues ``segment`` matches. ``units`` holds the vectors of its English units (texts
        ``texts``, one row each; None when it has none), matched with the examples; the segment's
        own text is matched with the patterns of its language, and with the tenant's phrases of it."""
        scores = None
        if units is not None and len(texts) and self._examples is not None and len(self._examples):
            scores = np.asarray(units) @ np.asarray(self._examples).T  # cosine: vectors are normalised
        found: list[CueMatch] = []
        for cue, (first, last) in zip(self.cues.cues, self._columns, strict=True):
            semantic = None
            if scores is not None and last > first:
                block = scores[:, first:last]
                unit, example = np.unravel_index(int(np.argmax(block)), block.shape)
                similarity = float(block[unit, example])
                if similarity >= self.cues.threshold(cue):
                    semantic = SemanticMatch(similarity, cue.examples[int(example)], texts[int(unit)])
            lexical = cue.match_text(segment.text, segment.language)
            if semantic is not None or lexical is not None:
                found.append(CueMatch(cue, semantic, lexical, self.confidence(semantic, lexical)))
        for phrase in self.phrases:
            lexical = phrase.match_text(segment.text, segment.language)
            if lexical is not None:
                found.append(CueMatch(phrase, None, lexical, self.confidence(None, lexical)))
        return found

    def confidence(self, semantic: SemanticMatch | None, lexical: LexicalMatch | None) -> float:
        """The similarity, the list's lexical confidence, or both as independent evidence."""
        lexical_confidence = self.cues.lexical_confidence
        if semantic is not None and lexical is not None:
            value = 1 - (1 - semantic.similarity) * (1 - lexical_confidence)
        elif semantic is not None:
            value = semantic.similarity
        else:
            value = lexical_confidence
        return round(min(max(value, 0.0), 1.0), 4)
