"""Spoken test media (espeak-ng, English and German, several voices) and word accuracy."""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from aima.samples import Pause, Spoken, Utterance, write_script_wav

EN_A = "en-us+m3"
EN_B = "en-gb+f3"
DE_A = "de"

ENGLISH = (
    Utterance("The officer asked the witness where she had been on Tuesday evening.", EN_A, "en"),
    Utterance("I was at home with my sister and we watched a film until midnight.", EN_B, "en"),
    Utterance("Nobody came to the door after ten o'clock that night.", EN_A, "en"),
    Utterance("The car was parked outside the station for two hours.", EN_B, "en"),
)
GERMAN = (
    Utterance("Ich war den ganzen Abend zu Hause bei meiner Familie.", DE_A, "de"),
    Utterance("Der Wagen stand zwei Stunden vor dem Bahnhof.", DE_A, "de"),
    Utterance("Bitte hören Sie auf, lassen Sie mich gehen.", DE_A, "de"),
)
MIXED = (
    ENGLISH[0],
    Pause(5.0),
    GERMAN[0],
    Pause(0.6),
    Pause(3.0, noise=0.08),
    Pause(0.6),
    ENGLISH[1],
)
"""English, 5 s of silence, German, noise, English: the issue's mixed-language file."""


def write(path: Path, script: tuple[Utterance | Pause, ...]) -> list[Spoken]:
    return write_script_wav(path, script)


def spaced(utterances: tuple[Utterance, ...], gap: float = 0.8) -> tuple[Utterance | Pause, ...]:
    """Utterances with a pause between them."""
    script: list[Utterance | Pause] = []
    for utterance in utterances:
        script += [utterance, Pause(gap)]
    return tuple(script)


def words(text: str) -> list[str]:
    """Lower-case words without punctuation; numbers spelled as Whisper tends to write them."""
    text = text.lower().replace("10", "ten").replace("2", "two")
    return re.findall(r"[\wäöüß']+", text)


def accuracy(reference: str, hypothesis: str) -> float:
    """Share of the reference's words found, in order, in the hypothesis (1 - deletions and
    substitutions over the reference length), minus insertions beyond it."""
    ref, hyp = words(reference), words(hypothesis)
    if not ref:
        return 1.0 if not hyp else 0.0
    matcher = difflib.SequenceMatcher(a=ref, b=hyp, autojunk=False)
    matched = sum(block.size for block in matcher.get_matching_blocks())
    inserted = max(len(hyp) - len(ref), 0)
    return max(0.0, (matched - inserted) / len(ref))
