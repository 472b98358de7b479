"""The cue list's figures on the calibration sentences (``calibration.yaml``): how many paraphrases of
each cue it finds, semantically, lexically or either way, and how much everyday talk it flags.

``python -m tests.cues.calibration [CUES_FILE]`` prints them, with the semantic figures at other
thresholds, to choose a list's thresholds by (docs/search-and-cues.md).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from aima.transcripts import SpeechSegment
from functions.cues.cuelist import CueList, load_cue_list
from functions.cues.matching import CueMatcher
from inference.tasks.text import TextEmbedder, TextsInput

SENTENCES = Path(__file__).with_name("calibration.yaml")


@dataclass
class Figures:
    """Counts over the calibration sentences at the list's thresholds."""

    positives: int = 0
    semantic: int = 0  # positives matched semantically by their own cue
    lexical: int = 0  # ... by one of their own cue's patterns
    either: int = 0  # ... either way
    negatives: int = 0
    semantic_false: list[str] = field(default_factory=list)  # negatives matched semantically
    lexical_false: list[str] = field(default_factory=list)  # negatives matched by a pattern
    best_positive: list[tuple[str, float]] = field(default_factory=list)  # (cue, best own-cue similarity)
    best_negative: list[float] = field(default_factory=list)  # best similarity of any cue


def calibrate(model: TextEmbedder, cues: CueList | None = None, *, holdout: bool = False) -> Figures:
    """The figures on the sentences the thresholds were set with, or on the ``holdout`` set."""
    cues = cues or load_cue_list()
    sentences = yaml.safe_load(SENTENCES.read_text())
    if holdout:
        sentences = sentences["holdout"]
    positives: list[tuple[str, str]] = [
        (cue_id, text) for cue_id, texts in sentences["positives"].items() for text in texts
    ]
    negatives: list[str] = sentences["negatives"]
    examples = _embed(model, [example for _, example in cues.examples])
    matcher = CueMatcher(cues, examples)
    vectors = _embed(model, [text for _, text in positives] + negatives)
    columns = [cue.id for cue, _ in cues.examples]
    figures = Figures(positives=len(positives), negatives=len(negatives))
    for (cue_id, text), vector in zip(positives, vectors[: len(positives)], strict=True):
        matches = {m.cue.id: m for m in matcher.match(_segment(text), vector[None, :], [text])}
        own = matches.get(cue_id)
        figures.semantic += own is not None and own.semantic is not None
        figures.lexical += own is not None and own.lexical is not None
        figures.either += own is not None
        similarities = examples @ vector
        figures.best_positive.append(
            (cue_id, max(float(s) for s, c in zip(similarities, columns, strict=True) if c == cue_id))
        )
    for text, vector in zip(negatives, vectors[len(positives) :], strict=True):
        flagged = matcher.match(_segment(text), vector[None, :], [text])
        if any(m.semantic is not None for m in flagged):
            figures.semantic_false.append(text)
        if any(m.lexical is not None for m in flagged):
            figures.lexical_false.append(text)
        figures.best_negative.append(float(np.max(examples @ vector)))
    return figures


def _segment(text: str) -> SpeechSegment:
    return SpeechSegment(id="calibration", start=0.0, end=1.0, text=text, language="en")


def _embed(model: TextEmbedder, texts: list[str]) -> Any:
    return np.asarray(model.predict(TextsInput(texts=texts)).vectors, dtype=np.float32)


def main() -> None:
    from aima.model_settings import TextEmbedderSettings
    from inference.cpu.texts import MiniLMTextEmbedder

    cues = load_cue_list(Path(sys.argv[1]) if len(sys.argv) > 1 else None)
    model = MiniLMTextEmbedder(TextEmbedderSettings(idle_unload_seconds=0))
    for holdout in (False, True):
        figures = calibrate(model, cues, holdout=holdout)
        p, n = figures.positives, figures.negatives
        which = "held-out sentences" if holdout else "calibration sentences"
        print(f"{which}: cue list v{cues.version}, {p} paraphrases, {n} others")
        counts = (figures.semantic, figures.lexical, figures.either)
        print("  found semantically {0}/{3}, lexically {1}/{3}, either {2}/{3}".format(*counts, p))
        print(
            f"  everyday talk flagged semantically {len(figures.semantic_false)}/{n} {figures.semantic_false}"
        )
        print(f"  everyday talk flagged lexically {len(figures.lexical_false)}/{n} {figures.lexical_false}")
        print("  one threshold for every cue (own-cue similarity for paraphrases, any cue for the others):")
        for threshold in np.arange(0.45, 0.80, 0.05):
            found = sum(1 for _, s in figures.best_positive if s >= threshold)
            flagged = sum(1 for s in figures.best_negative if s >= threshold)
            print(f"    {threshold:.2f}: paraphrases {found}/{p}, everyday talk {flagged}/{n}")


if __name__ == "__main__":
    main()
