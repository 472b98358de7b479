"""Speech made by espeak-ng for the speaker tests, and the real voice embedder, once per session.

Voices: ``en-us+f3`` and ``en-gb+m3`` are far apart for the model (centroid similarity 0.67), as are
both from ``en-us+david`` (at most 0.65); espeak's male variants (``en-us+m1``, ``en-gb+m3``,
``de+m3``) are near twins to it (0.91-0.96: one synthesiser), so no test treats those as different
people (docs/speakers.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from aima.model_settings import VoiceEmbedderSettings
from aima.samples import Pause, Spoken, Utterance, write_script_wav
from inference.cpu.voices import ResemblyzerVoiceEmbedder
from tests.api.conftest import app, ingest_bus, services, settings, world  # noqa: F401 - the gateway's, for test_api

WOMAN = "en-us+f3"
MAN = "en-gb+m3"
OTHER = "en-us+david"

LINES = (
    "Where were you on Tuesday evening when the lights went out?",
    "I was at home with my sister, we watched a film until midnight.",
    "Did anybody see you there after ten o'clock that night?",
    "Nobody came to the door, I am quite sure of that.",
    "Tell me again what you saw in the car park.",
    "The blue van was parked next to the entrance for an hour.",
)


@dataclass(frozen=True)
class Recording:
    path: Path
    spans: list[Spoken]

    def voices(self) -> list[str]:
        return [span.utterance.voice for span in self.spans]


def dialogue(path: Path, voices: Sequence[str], lines: Sequence[str] = LINES) -> Recording:
    """One line per voice in turn, with short pauses between them."""
    script: list[Utterance | Pause] = []
    for voice, line in zip(voices, lines, strict=False):
        script += [Utterance(line, voice, "en"), Pause(0.4)]
    return Recording(path, write_script_wav(path, script))


@pytest.fixture(scope="session")
def audio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("speakers-audio")


@pytest.fixture(scope="session")
def alternating(audio: Path) -> Recording:
    """Two voices taking turns: woman, man, woman, man, woman, man."""
    return dialogue(audio / "alternating.wav", [WOMAN, MAN] * 3)


@pytest.fixture(scope="session")
def embedder() -> Iterator[ResemblyzerVoiceEmbedder]:
    """The real model, loaded once for the session (1 thread, as deployed by default)."""
    model = ResemblyzerVoiceEmbedder(VoiceEmbedderSettings(idle_unload_seconds=0))
    model.load()
    yield model
    model.close()


@pytest.fixture(scope="session")
def then_and_other(audio: Path) -> Recording:
    """The man again, then a third voice: man, other, man, other."""
    return dialogue(audio / "man-and-other.wav", [MAN, OTHER] * 2, LINES[2:])
