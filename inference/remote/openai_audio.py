"""The remote transcriber: OpenAI-compatible audio endpoints (vLLM, speaches/faster-whisper-server,
KServe's OpenAI routes, a hosted API).

``ENDPOINT`` is the API base including its version (``http://whisper.aima.svc/v1``). Each request is
``multipart/form-data``:

* ``POST audio/transcriptions``: ``file`` (a 16 kHz mono WAV), ``model``,
  ``response_format=verbose_json``, ``timestamp_granularities[]=word`` and ``=segment``,
  ``temperature``, and ``language`` when one is forced (``TranscriptionInput.language``, else
  ``AIMA_MODELS__TRANSCRIBER__LANGUAGE``);
* ``POST audio/translations``: the same audio without ``language``, for the English translation
  of a non-English stretch (``TranscriptionInput.translate``).

With ``regions`` (speech found by the voice activity detector) every region goes as its own small
WAV, so each region gets its own language (Whisper detects one language per request); the answer's
times are offset by the region's start and clamped to the region, and every segment names its
region. Without regions the whole file goes in one request. Words come from the segments'
``words`` or from the top-level ``words`` list (OpenAI's shape), assigned to the segment they fall
in; a language may come back as a code (``de``) or a Whisper name (``german``). A segment's
confidence is ``exp(avg_logprob)``. A region whose answer has text but no segments (a server that
only speaks ``json``) becomes one segment spanning the region; without regions that is refused.

Input that is not a 16 kHz mono 16-bit WAV is converted with ffmpeg first.

Failures are those of `inference.remote.http`; a request that failed for a transient reason
(`ModelUnavailable`) is retried ``options.retries`` times (2) before the whole call gives up, so a
brief outage does not throw away the regions already transcribed.

Options (``AIMA_MODELS__TRANSCRIBER__OPTIONS``): ``temperature`` (0), ``prompt``,
``word_timestamps`` (true; false sends only ``segment``, for servers without word timestamps),
``retries`` (2), ``retry_backoff_seconds`` (0.5, doubled per try, at most 10 s; a ``Retry-After``
takes precedence), ``health_path`` (``models``).
"""

from __future__ import annotations

import io
import math
import shutil
import subprocess
import time
import wave
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from inference.errors import InvalidModelOutput, ModelUnavailable
from inference.remote.http import raise_for_status
from inference.remote.openai import OpenAIBackend
from inference.tasks.common import TimeSpan
from inference.tasks.speech import Transcriber, Transcript, TranscriptionInput, TranscriptSegment, Word

RATE = 16000
"""Samples per second of the audio sent (16-bit mono PCM)."""

MIN_FRAMES = RATE // 10
"""Audio shorter than 0.1 s is refused by OpenAI's API: a shorter stretch is sent with silence after it."""
_MAX_BACKOFF = 10.0

_WHISPER_LANGUAGES = (
    "en:english zh:chinese de:german es:spanish ru:russian ko:korean fr:french ja:japanese "
    "pt:portuguese tr:turkish pl:polish ca:catalan nl:dutch ar:arabic sv:swedish it:italian "
    "id:indonesian hi:hindi fi:finnish vi:vietnamese he:hebrew uk:ukrainian el:greek ms:malay "
    "cs:czech ro:romanian da:danish hu:hungarian ta:tamil no:norwegian th:thai ur:urdu hr:croatian "
    "bg:bulgarian lt:lithuanian la:latin mi:maori ml:malayalam cy:welsh sk:slovak te:telugu "
    "fa:persian lv:latvian bn:bengali sr:serbian az:azerbaijani sl:slovenian kn:kannada "
    "et:estonian mk:macedonian br:breton eu:basque is:icelandic hy:armenian ne:nepali "
    "mn:mongolian bs:bosnian kk:kazakh sq:albanian sw:swahili gl:galician mr:marathi pa:punjabi "
    "si:sinhala km:khmer sn:shona yo:yoruba so:somali af:afrikaans oc:occitan ka:georgian "
    "be:belarusian tg:tajik sd:sindhi gu:gujarati am:amharic yi:yiddish lo:lao uz:uzbek "
    "fo:faroese ht:haitian_creole ps:pashto tk:turkmen nn:nynorsk mt:maltese sa:sanskrit "
    "lb:luxembourgish my:myanmar bo:tibetan tl:tagalog mg:malagasy as:assamese tt:tatar "
    "haw:hawaiian ln:lingala ha:hausa ba:bashkir jw:javanese su:sundanese yue:cantonese"
)
WHISPER_LANGUAGES: dict[str, str] = {
    code: name.replace("_", " ") for code, name in (pair.split(":") for pair in _WHISPER_LANGUAGES.split())
}
"""Whisper's languages: ISO 639 code to the name OpenAI's API answers with (``de``: ``german``)."""
_ALIASES = {
    "castilian": "es", "flemish": "nl", "haitian": "ht", "moldavian": "ro", "moldovan": "ro",
    "valencian": "ca", "letzeburgesch": "lb", "pushto": "ps", "panjabi": "pa", "sinhalese": "si",
    "burmese": "my", "mandarin": "zh",
}  # fmt: skip
LANGUAGE_CODES: dict[str, str] = {name: code for code, name in WHISPER_LANGUAGES.items()} | _ALIASES
"""Language names (Whisper's and their common aliases) to ISO 639 codes."""


def language_code(value: str | None) -> str | None:
    """An ISO 639 code for a language a server named (``de``, ``German``, ``german``), else None."""
    if not value:
        return None
    key = value.strip().lower()
    if key in WHISPER_LANGUAGES:
        return key
    return LANGUAGE_CODES.get(key)


# -- what the server answers ---------------------------------------------------------------------


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _WordAnswer(_Answer):
    word: str
    start: float
    end: float
    probability: float | None = None


class _SegmentAnswer(_Answer):
    start: float
    end: float
    text: str
    avg_logprob: float | None = None
    no_speech_prob: float | None = None
    words: list[_WordAnswer] | None = None


class _VerboseAnswer(_Answer):
    text: str = ""
    language: str | None = None
    language_probability: float | None = None
    duration: float | None = None
    segments: list[_SegmentAnswer] | None = None
    words: list[_WordAnswer] | None = None


# -- audio ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Audio:
    """The input as 16 kHz mono 16-bit samples: ``frames`` of them, read from ``path`` (a WAV of
    that kind) stretch by stretch, or held in ``samples`` (converted)."""

    frames: int
    path: Path | None = None
    samples: bytes | None = None

    @property
    def duration(self) -> float:
        return self.frames / RATE

    def wav(self, start: float = 0.0, end: float | None = None) -> bytes:
        """The stretch ``[start, end)`` as a WAV file."""
        first = min(max(round(start * RATE), 0), self.frames)
        last = self.frames if end is None else min(max(round(end * RATE), first), self.frames)
        if self.samples is not None:
            pcm = self.samples[first * 2 : last * 2]
        else:
            assert self.path is not None
            with wave.open(str(self.path), "rb") as reader:
                reader.setpos(first)
                pcm = reader.readframes(last - first)
        pcm += bytes(max(MIN_FRAMES * 2 - len(pcm), 0))  # silence after a very short stretch
        out = io.BytesIO()
        with wave.open(out, "wb") as writer:
            writer.setnchannels(1)
            writer.setsampwidth(2)
            writer.setframerate(RATE)
            writer.writeframes(pcm)
        return out.getvalue()


def read_audio(path: Path) -> _Audio:
    """The file at 16 kHz mono: such a WAV is read where a request needs it, anything else is
    converted by ffmpeg first."""
    try:
        with wave.open(str(path), "rb") as reader:
            if (reader.getnchannels(), reader.getsampwidth(), reader.getframerate()) == (1, 2, RATE):
                return _Audio(reader.getnframes(), path=path)
    except (wave.Error, EOFError):
        pass
    except OSError as exc:
        raise InvalidModelOutput(f"cannot read the audio file: {exc}") from exc
    samples = _converted(path)
    return _Audio(len(samples) // 2, samples=samples)


def _converted(path: Path) -> bytes:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise InvalidModelOutput(
            "the audio is not a 16 kHz mono WAV and ffmpeg is not installed to convert it"
        )
    argv = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(path)]
    argv += ["-vn", "-ac", "1", "-ar", str(RATE), "-f", "s16le", "-acodec", "pcm_s16le", "-"]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=600, check=False)
    except subprocess.TimeoutExpired as exc:
        raise InvalidModelOutput("converting the audio took longer than 600 s") from exc
    if done.returncode != 0:
        detail = done.stderr.decode(errors="replace").strip().splitlines()
        raise InvalidModelOutput(f"cannot decode the audio: {detail[-1] if detail else 'ffmpeg failed'}")
    return done.stdout


# -- the backend ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Stretch:
    """What one request covered: seconds of the file, and the region index (None: whole file)."""

    start: float
    end: float
    region: int | None


class OpenAITranscriber(OpenAIBackend, Transcriber):
    """Speech to text over ``audio/transcriptions`` (and ``audio/translations``), region by region."""

    def _predict(self, inputs: TranscriptionInput) -> Transcript:
        audio = read_audio(inputs.path)
        forced = inputs.language or getattr(self.settings, "language", None)
        if inputs.regions:
            stretches = list(_clamped(inputs.regions, audio.duration))
        else:
            stretches = [_Stretch(0.0, audio.duration, None)]
        segments: list[TranscriptSegment] = []
        for stretch in stretches:
            found = self._transcribe(audio, stretch, forced)
            if inputs.translate and found and found[0].language not in (None, "en"):
                found = self._translate(audio, stretch, found)
            segments.extend(found)
        return Transcript(
            language=forced or _longest_language(segments),
            duration_s=round(audio.duration, 3),
            segments=segments,
        )

    # -- requests ---------------------------------------------------------------------------------

    def _fields(self, *, language: str | None = None, translation: bool = False) -> dict[str, Any]:
        options = self.settings.options
        fields: dict[str, Any] = {
            "model": self.settings.model,
            "response_format": "verbose_json",
            "temperature": str(float(options.get("temperature", 0.0))),
        }
        if "prompt" in options:
            fields["prompt"] = str(options["prompt"])
        if not translation:
            word = bool(options.get("word_timestamps", True))
            fields["timestamp_granularities[]"] = ["word", "segment"] if word else ["segment"]
            if language:
                fields["language"] = language
        return fields

    def post_audio(self, route: str, wav: bytes, fields: dict[str, Any]) -> Any:
        """One multipart request with ``wav`` as ``file``; the JSON answer, with transient failures
        retried (``options.retries``)."""
        options = self.settings.options
        retries = max(int(options.get("retries", 2)), 0)
        backoff = float(options.get("retry_backoff_seconds", 0.5))
        for attempt in range(retries + 1):
            try:
                return self._post_once(route, wav, fields)
            except ModelUnavailable as exc:
                if attempt == retries:
                    raise
                wait = exc.retry_after if exc.retry_after is not None else backoff * 2**attempt
                time.sleep(min(wait, _MAX_BACKOFF))
        raise AssertionError("unreachable")  # pragma: no cover

    def _post_once(self, route: str, wav: bytes, fields: dict[str, Any]) -> Any:
        try:
            response = self.http.post(route, data=fields, files={"file": ("audio.wav", wav, "audio/wav")})
        except httpx.TimeoutException as exc:
            raise ModelUnavailable(f"POST {route}: timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise ModelUnavailable(f"POST {route}: cannot reach the endpoint ({exc})") from exc
        raise_for_status(response, self.task)
        try:
            return response.json()
        except ValueError as exc:
            raise InvalidModelOutput(f"POST {route}: the answer is not JSON") from exc

    def _ask(self, route: str, wav: bytes, fields: dict[str, Any]) -> _VerboseAnswer:
        data = self.post_audio(route, wav, fields)
        try:
            return _VerboseAnswer.model_validate(data)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(p) for p in error.get("loc", ()))
            raise InvalidModelOutput(f"unexpected answer from {route}: {where}: {error.get('msg')}") from exc

    # -- transcription ------------------------------------------------------------------------------

    def _transcribe(self, audio: _Audio, stretch: _Stretch, forced: str | None) -> list[TranscriptSegment]:
        answer = self._ask(
            "audio/transcriptions", audio.wav(stretch.start, stretch.end), self._fields(language=forced)
        )
        language = forced or language_code(answer.language)
        probability = answer.language_probability
        if forced or probability is None or not 0 <= probability <= 1:
            probability = None
        pieces = answer.segments
        if pieces is None:
            if stretch.region is None and answer.text.strip():
                raise InvalidModelOutput(
                    "the answer has no segments: the server ignored response_format=verbose_json"
                )
            length = stretch.end - stretch.start
            pieces = [_SegmentAnswer(start=0.0, end=length, text=answer.text)] if answer.text.strip() else []
        pieces = sorted(pieces, key=lambda p: p.start)
        loose = sorted(answer.words or [], key=lambda w: w.start)
        out: list[TranscriptSegment] = []
        for index, piece in enumerate(pieces):
            text = piece.text.strip()
            if not text:
                continue
            start, end = _place(piece.start, piece.end, stretch)
            words = piece.words if piece.words is not None else _words_of(piece, index, pieces, loose)
            out.append(
                TranscriptSegment(
                    start=start,
                    end=end,
                    text=text,
                    language=language,
                    language_probability=probability,
                    confidence=_confidence(piece.avg_logprob),
                    words=[word for w in words if (word := _word(w, stretch)) is not None],
                    region=stretch.region,
                )
            )
        return out

    # -- translation --------------------------------------------------------------------------------

    def _translate(
        self, audio: _Audio, stretch: _Stretch, segments: list[TranscriptSegment]
    ) -> list[TranscriptSegment]:
        """The segments of one stretch with an English ``translation`` each."""
        answer = self._ask(
            "audio/translations", audio.wav(stretch.start, stretch.end), self._fields(translation=True)
        )
        if len(segments) == 1:
            texts = [answer.text.strip() or " ".join(p.text.strip() for p in answer.segments or [])]
        else:
            texts = _align(segments, answer.segments or [], stretch.start)
        out = []
        for segment, text in zip(segments, texts, strict=True):
            if not text:  # nothing of the stretch's translation fell in this segment: ask for it alone
                again = self._ask(
                    "audio/translations",
                    audio.wav(segment.start, segment.end),
                    self._fields(translation=True),
                )
                text = again.text.strip() or " ".join(p.text.strip() for p in again.segments or [])
            if not text:
                raise InvalidModelOutput(f"the translation of {segment.start:g}-{segment.end:g}s is empty")
            out.append(segment.model_copy(update={"translation": text}))
        return out


# -- helpers -------------------------------------------------------------------------------------


def _clamped(regions: Sequence[TimeSpan], duration: float) -> Iterator[_Stretch]:
    for index, region in enumerate(regions):
        end = min(region.end, duration)
        if end > region.start:
            yield _Stretch(region.start, end, index)


def _place(start: float, end: float, stretch: _Stretch) -> tuple[float, float]:
    """Times of an answer (seconds into the request's audio) as seconds of the file, inside the stretch."""

    def clamp(t: float) -> float:
        return round(min(max(stretch.start + max(t, 0.0), stretch.start), stretch.end), 3)

    first, last = clamp(start), clamp(end)
    return first, max(first, last)


def _word(answer: _WordAnswer, stretch: _Stretch) -> Word | None:
    text = answer.word.strip()
    if not text:
        return None
    start, end = _place(answer.start, answer.end, stretch)
    probability = answer.probability
    if probability is not None and not 0 <= probability <= 1:
        probability = None
    return Word(start=start, end=end, text=text, confidence=probability)


def _words_of(
    piece: _SegmentAnswer, index: int, pieces: Sequence[_SegmentAnswer], words: Sequence[_WordAnswer]
) -> list[_WordAnswer]:
    """The top-level words that belong to ``piece`` (of ``pieces``, in order): those whose middle
    falls between its start and the next segment's (the first also takes words before it)."""
    after = pieces[index + 1].start if index + 1 < len(pieces) else math.inf
    return [
        word
        for word in words
        if (index == 0 or (word.start + word.end) / 2 >= piece.start) and (word.start + word.end) / 2 < after
    ]


def _confidence(avg_logprob: float | None) -> float | None:
    if avg_logprob is None or not math.isfinite(avg_logprob):
        return None
    return round(min(max(math.exp(avg_logprob), 0.0), 1.0), 4)


def _align(
    segments: Sequence[TranscriptSegment], pieces: Sequence[_SegmentAnswer], offset: float
) -> list[str]:
    """Each translated piece goes to the segment it overlaps most (or lies nearest to)."""
    texts: list[list[str]] = [[] for _ in segments]
    for piece in pieces:
        text = piece.text.strip()
        if not text:
            continue
        start, end = offset + piece.start, offset + piece.end

        def score(segment: TranscriptSegment, start: float = start, end: float = end) -> tuple[float, float]:
            overlap = min(end, segment.end) - max(start, segment.start)
            distance = abs((start + end) / 2 - (segment.start + segment.end) / 2)
            return overlap, -distance

        best = max(range(len(segments)), key=lambda i: score(segments[i]))
        texts[best].append(text)
    return [" ".join(parts) for parts in texts]


def _longest_language(segments: Sequence[TranscriptSegment]) -> str | None:
    seconds: dict[str, float] = {}
    for segment in segments:
        if segment.language:
            seconds[segment.language] = seconds.get(segment.language, 0.0) + segment.end - segment.start
    return max(seconds, key=lambda language: seconds[language]) if seconds else None
