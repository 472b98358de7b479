"""The packaged cue list on its calibration sentences and on sentences it was not tuned on: most
paraphrases are found, everyday talk (much of it sharing words with a cue) is not flagged."""

from __future__ import annotations

from functions.cues.cuelist import CueList
from inference.cpu.texts import MiniLMTextEmbedder
from tests.cues.calibration import calibrate


def test_the_calibration_sentences(embedder: MiniLMTextEmbedder, cue_list: CueList) -> None:
    figures = calibrate(embedder, cue_list)
    assert (figures.positives, figures.negatives) == (48, 80)
    assert figures.either >= 0.8 * figures.positives
    assert figures.semantic >= 0.65 * figures.positives
    assert figures.semantic_false == []
    assert figures.lexical_false == []


def test_the_held_out_sentences(embedder: MiniLMTextEmbedder, cue_list: CueList) -> None:
    figures = calibrate(embedder, cue_list, holdout=True)
    assert (figures.positives, figures.negatives) == (18, 20)
    assert figures.either >= 0.7 * figures.positives
    assert len(figures.semantic_false) <= 1
    assert len(figures.lexical_false) <= 1
