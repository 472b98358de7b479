"""Speech: AIMA's transcribe against plain faster-whisper, on the same files, in the same run.

Media: spoken English and German (espeak-ng, several voices) — the issue's mixed-language file
(English, 5 s silence, German, noise, English) and a longer conversation that alternates the two
languages with pauses and a stretch of noise. Every engine uses Whisper base (CTranslate2, int8)
with 2 threads:

* **ours**: the transcribe step's models as the function runs them: Silero VAD over the file, then
  `WhisperTranscriber` on the speech regions with a language per region, word timestamps and the
  English translation of non-English segments;
* **plain**: ``WhisperModel.transcribe(vad_filter=True, word_timestamps=True)``, its defaults
  otherwise (one language per file, beam 5);
* **batched**: faster-whisper's ``BatchedInferencePipeline.transcribe(word_timestamps=True,
  batch_size=8)``.

Runs alternate (ours, plain, batched, ...) and each figure is the median of ``ROUNDS``. Quality is
scored per spoken sentence from the words written inside its time span (`sentences`): word
accuracy, *lost* (under a quarter of its words there), *repeated* (one of its four-word runs
written more often than spoken), and the language of the segment that holds them. Also: voice
embeddings (resemblyzer) per speech turn, in multiples of real time.
The last line is one JSON object with the checks; the exit code is 0 either way.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aima.model_settings import ModelsSettings
from aima.samples import Pause, Spoken, Utterance, write_script_wav
from inference.cpu.assets import whisper_model_dir
from inference.registry import REGISTRY
from inference.tasks.common import AudioInput
from inference.tasks.speech import SpeechDetector, Transcriber, TranscriptionInput, VoiceEmbedder, VoiceInput
from tests.speech_audio import EN_A, EN_B, ENGLISH, GERMAN, MIXED, accuracy

ROUNDS = 3
THREADS = 2
LOST = 0.25

MORE_ENGLISH = (
    Utterance("Please stop, you are hurting me, let me go.", EN_B, "en"),
    Utterance("We drove to the harbour and waited for the ferry.", EN_A, "en"),
    Utterance("She told me that the door had been locked from the outside.", EN_B, "en"),
)
MORE_GERMAN = (
    Utterance("Wir sind danach mit dem Auto zum Hafen gefahren.", "de", "de"),
    Utterance("Die Tür war von außen abgeschlossen.", "de", "de"),
)


def conversation() -> tuple[Utterance | Pause, ...]:
    """About 75 s: the languages alternate, pauses of 0.5 to 3 s, one stretch of noise."""
    english = [*ENGLISH, *MORE_ENGLISH]
    german = [*GERMAN, *MORE_GERMAN]
    script: list[Utterance | Pause] = []
    pauses = (0.5, 1.2, 3.0, 0.8)
    for i in range(max(len(english), len(german))):
        if i < len(english):
            script += [english[i], Pause(pauses[i % len(pauses)])]
        if i < len(german):
            script += [german[i], Pause(pauses[(i + 1) % len(pauses)])]
        if i == 2:
            script += [Pause(2.0, noise=0.06), Pause(0.5)]
    return tuple(script)


@dataclass
class Segment:
    start: float
    end: float
    text: str
    language: str | None
    words: list[tuple[float, float, str]]


@dataclass
class Outcome:
    seconds: float
    segments: list[Segment]


def ours(detector: SpeechDetector, transcriber: Transcriber, translate: bool) -> Callable[[Path], Outcome]:
    def run(path: Path) -> Outcome:
        started = time.perf_counter()
        regions = detector.predict(AudioInput(path=path)).regions
        result = transcriber.predict(TranscriptionInput(path=path, regions=regions, translate=translate))
        seconds = time.perf_counter() - started
        return Outcome(
            seconds,
            [
                Segment(s.start, s.end, s.text, s.language, [(w.start, w.end, w.text) for w in s.words])
                for s in result.segments
            ],
        )

    return run


def plain(model: Any) -> Callable[[Path], Outcome]:
    def run(path: Path) -> Outcome:
        started = time.perf_counter()
        segments, info = model.transcribe(str(path), vad_filter=True, word_timestamps=True)
        found = [_segment(s, info.language) for s in segments]
        return Outcome(time.perf_counter() - started, found)

    return run


def _segment(segment: Any, language: str | None) -> Segment:
    words = [(w.start, w.end, w.word) for w in segment.words or []]
    return Segment(segment.start, segment.end, segment.text, language, words)


def batched(pipeline: Any) -> Callable[[Path], Outcome]:
    def run(path: Path) -> Outcome:
        started = time.perf_counter()
        segments, info = pipeline.transcribe(str(path), word_timestamps=True, batch_size=8)
        found = [_segment(s, info.language) for s in segments]
        return Outcome(time.perf_counter() - started, found)

    return run


def sentences(outcome: Outcome, spans: Sequence[Spoken]) -> dict[str, float]:
    """Per spoken sentence, the words written inside its time span (a word counts where its middle
    falls): the word accuracy, whether it was *lost* (under a quarter of its words) and whether the
    segment holding them is in the sentence's language; a sentence is *repeated* when the whole
    output holds one of its four-word runs more often than the script does."""
    lost = repeated = right_language = 0
    scores = []
    everything = " ".join(" ".join(w for _, _, w in s.words) for s in outcome.segments).lower()
    script = " ".join(span.utterance.text for span in spans).lower()
    for span in spans:
        inside = [
            (segment, word)
            for segment in outcome.segments
            for start, end, word in segment.words
            if span.start - 0.3 <= (start + end) / 2 <= span.end + 0.3
        ]
        score = accuracy(span.utterance.text, " ".join(word for _, word in inside))
        scores.append(score)
        lost += score < LOST
        languages = [segment.language for segment, _ in inside]
        if languages and max(set(languages), key=languages.count) == span.utterance.language:
            right_language += 1
        grams = _grams(span.utterance.text.lower())
        if any(everything.count(gram) > max(script.count(gram), 1) for gram in grams):
            repeated += 1
    return {
        "lost": lost,
        "repeated": repeated,
        "right_language": right_language / len(spans),
        "accuracy": statistics.mean(scores),
    }


def _grams(text: str, size: int = 4) -> list[str]:
    words = text.replace(",", "").replace(".", "").split()
    return [" ".join(words[i : i + size]) for i in range(len(words) - size + 1)]


def check(name: str, value: float, op: str, target: float) -> dict[str, object]:
    ok = value >= target if op == ">=" else value <= target if op == "<=" else value == target
    return {"name": name, "value": round(value, 3), "op": op, "target": target, "ok": ok}


def main() -> None:
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    work = Path(tempfile.mkdtemp(prefix="aima-bench-speech-"))
    files = {
        "mixed": (work / "mixed.wav", write_script_wav(work / "mixed.wav", MIXED)),
        "conversation": (
            work / "conversation.wav",
            write_script_wav(work / "conversation.wav", conversation()),
        ),
    }
    durations = {name: _duration(path) for name, (path, _) in files.items()}
    print(f"media: {', '.join(f'{n} {d:.1f} s' for n, d in durations.items())}")

    settings = ModelsSettings()
    detector = REGISTRY.create("speech_detector", settings.speech_detector)
    transcriber = REGISTRY.create("transcriber", settings.transcriber.model_copy(update={"threads": THREADS}))
    assert isinstance(detector, SpeechDetector)
    assert isinstance(transcriber, Transcriber)
    model = WhisperModel(
        str(whisper_model_dir("base")), device="cpu", compute_type="int8", cpu_threads=THREADS
    )
    engines: dict[str, Callable[[Path], Outcome]] = {
        "ours": ours(detector, transcriber, translate=True),
        "ours_no_translation": ours(detector, transcriber, translate=False),
        "plain": plain(model),
        "batched": batched(BatchedInferencePipeline(model)),
    }
    for path, _ in files.values():  # warm every engine once
        for run in engines.values():
            run(path)

    times: dict[tuple[str, str], list[float]] = {}
    last: dict[tuple[str, str], Outcome] = {}
    for round_ in range(ROUNDS):
        order = list(engines) if round_ % 2 == 0 else list(reversed(engines))
        for name, (path, _) in files.items():
            for engine in order:
                outcome = engines[engine](path)
                times.setdefault((engine, name), []).append(outcome.seconds)
                last[(engine, name)] = outcome

    figures: dict[tuple[str, str], dict[str, float]] = {}
    for (engine, name), seconds in sorted(times.items()):
        median = statistics.median(seconds)
        quality = sentences(last[(engine, name)], files[name][1])
        figures[(engine, name)] = {"seconds": median, "rtf": durations[name] / median, **quality}
        print(
            f"{engine:20s} {name:13s} {median:6.2f} s  {durations[name] / median:5.1f}x real time  "
            f"lost {quality['lost']:.0f}  repeated {quality['repeated']:.0f}  "
            f"right language {quality['right_language']:.0%}  word accuracy {quality['accuracy']:.0%}"
        )

    total = {e: sum(figures[(e, n)]["seconds"] for n in files) for e in engines}
    audio_s = sum(durations.values())
    speedup = total["plain"] / total["ours"]
    rtf = audio_s / total["ours"]
    print(
        f"ours vs plain: {speedup:.2f}x faster; ours {rtf:.1f}x real time (with translation), "
        f"{audio_s / total['ours_no_translation']:.1f}x without"
    )

    voice_rtf = voices(files["conversation"][0], detector)
    print(f"voice embeddings: {voice_rtf:.0f}x real time of speech")

    lost_ours = sum(figures[("ours", n)]["lost"] + figures[("ours", n)]["repeated"] for n in files)
    lost_batched = sum(figures[("batched", n)]["lost"] + figures[("batched", n)]["repeated"] for n in files)
    checks = [
        check("ours_vs_plain_speedup", speedup, ">=", 1.3),
        check("ours_real_time_factor_base_2_cores", rtf, ">=", 40.0),
        check("ours_sentences_lost_or_repeated", lost_ours, "==", 0),
        check("batched_sentences_lost_or_repeated", lost_batched, ">=", 1),
        check(
            "mixed_word_accuracy_ours_minus_plain",
            figures[("ours", "mixed")]["accuracy"] - figures[("plain", "mixed")]["accuracy"],
            ">=",
            0.01,
        ),
        check(
            "ours_right_language_share", min(figures[("ours", n)]["right_language"] for n in files), ">=", 0.9
        ),
        check("voice_embedding_real_time_factor", voice_rtf, ">=", 100.0),
    ]
    print(json.dumps({"benchmark": "speech", "checks": checks}))


def voices(path: Path, detector: SpeechDetector) -> float:
    """Seconds of speech embedded per second, median of rounds, one vector per speech region."""
    embedder = REGISTRY.create(
        "voice_embedder", ModelsSettings().voice_embedder.model_copy(update={"threads": THREADS})
    )
    assert isinstance(embedder, VoiceEmbedder)
    regions = detector.predict(AudioInput(path=path)).regions
    speech = sum(r.end - r.start for r in regions)
    embedder.predict(VoiceInput(path=path, segments=regions))  # load and warm
    rounds = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        embedder.predict(VoiceInput(path=path, segments=regions))
        rounds.append(time.perf_counter() - started)
    return speech / statistics.median(rounds)


def _duration(path: Path) -> float:
    from inference.cpu import audio

    return audio.duration(path)


if __name__ == "__main__":
    main()
