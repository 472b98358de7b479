"""Subtitles from a transcript: WebVTT and SRT, with speakers, languages and English translations.

A transcript segment becomes one or more **cues**, each at most ``max_seconds`` (7) long and at
most ``max_lines`` (2) lines of ``line_chars`` (42) characters: a longer segment is split between
words, at the times its word timestamps give (without words, at times proportional to the
characters). A segment's English translation follows its text on a line of its own (italic); when
the segment is split, its translation is divided over the cues in proportion to their share of
the text (approximate: word order differs between languages). An unintelligible stretch is one cue
``[unintelligible]``, so nothing heard is silently left out.

Speakers: the case-level name (``names``, by ``case_speaker_id``), else the file's label (``S1``).

* **WebVTT** (``text/vtt``): timestamps ``HH:MM:SS.mmm``; the cue identifier is the segment id
  (``-2``, ``-3`` for the following parts of a split segment); the speaker as a voice span
  ``<v Name>``; a segment in another language than the transcript's main one in ``<lang xx>``;
  ``&``, ``<`` and ``>`` escaped (so no text can open a tag or end the cue with ``-->``); a
  ``NOTE`` block first names the media, version, model and languages.
* **SRT** (``application/x-subrip``): timestamps ``HH:MM:SS,mmm``, cues numbered from 1, the
  speaker as ``Name: text``, another language as a ``[xx]`` prefix, the translation in ``<i>``.

Pure functions of the transcript, so the API, the CLI and the report render the same files.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePath
from typing import Literal

from pydantic import BaseModel

from aima.domain import utcnow
from aima.transcripts import SpeechSegment, Transcript

MAX_SECONDS = 7.0
LINE_CHARS = 42
MAX_LINES = 2
UNINTELLIGIBLE = "[unintelligible]"
ExportFormat = Literal["json", "vtt", "srt"]
MEDIA_TYPES: dict[str, str] = {
    "json": "application/json",
    "vtt": "text/vtt; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
}
"""The content type of each export format."""
_MIN_CUE = 0.001
_SPACE = re.compile(r"\s+")


class TranscriptExport(BaseModel):
    """The JSON export: one version of the transcript, the versions there are, the case's names of
    its speakers, and who exported it when."""

    transcript: Transcript
    versions: list[int]
    speaker_names: dict[str, str]
    exported_at: datetime
    exported_by: str


def render(
    transcript: Transcript,
    fmt: ExportFormat,
    names: Mapping[str, str] | None = None,
    *,
    versions: Sequence[int] = (),
    exported_by: str = "",
    exported_at: datetime | None = None,
) -> str:
    """The transcript in ``fmt``: a `TranscriptExport` as JSON, WebVTT or SRT."""
    if fmt == "vtt":
        return to_webvtt(transcript, names)
    if fmt == "srt":
        return to_srt(transcript, names)
    used = {s.case_speaker_id for s in transcript.segments if s.case_speaker_id}
    document = TranscriptExport(
        transcript=transcript,
        versions=list(versions) or [transcript.version],
        speaker_names={key: value for key, value in (names or {}).items() if key in used},
        exported_at=exported_at or utcnow(),
        exported_by=exported_by,
    )
    return document.model_dump_json(indent=2) + "\n"


def download_name(transcript: Transcript, fmt: ExportFormat, media_filename: str | None = None) -> str:
    """A file name for the export: the media file's name (made safe), the version and the format,
    e.g. ``interview.transcript-v2.vtt``."""
    stem = PurePath(media_filename.replace("\\", "/")).stem if media_filename else ""
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_")[:80] or transcript.media_id
    return f"{safe}.transcript-v{transcript.version}.{fmt}"


@dataclass(frozen=True)
class Cue:
    """One subtitle: times in seconds from the start of the file, the text's lines, who speaks it,
    its language and (part of) its English translation."""

    id: str
    start: float
    end: float
    lines: tuple[str, ...]
    speaker: str | None = None
    language: str | None = None
    translation: str | None = None
    unintelligible: bool = False


@dataclass(frozen=True)
class _Token:
    text: str
    start: float
    end: float


def speaker_name(segment: SpeechSegment, names: Mapping[str, str] | None = None) -> str | None:
    """Who speaks ``segment``: the case speaker's name, else the file's label, else None."""
    if segment.case_speaker_id and names and names.get(segment.case_speaker_id):
        return _clean(names[segment.case_speaker_id])
    return _clean(segment.speaker) if segment.speaker else None


def cues(
    transcript: Transcript,
    names: Mapping[str, str] | None = None,
    *,
    translations: bool = True,
    max_seconds: float = MAX_SECONDS,
    line_chars: int = LINE_CHARS,
    max_lines: int = MAX_LINES,
) -> list[Cue]:
    """The transcript's cues in order of start time (see the module docstring)."""
    found: list[Cue] = []
    for segment in transcript.segments:
        speaker = speaker_name(segment, names)
        if segment.kind == "unintelligible":
            end = max(segment.end, segment.start + _MIN_CUE)
            found.append(Cue(segment.id, segment.start, end, (UNINTELLIGIBLE,), speaker, unintelligible=True))
            continue
        text = _clean(segment.text)
        if not text:
            continue
        groups = _split(_tokens(segment, text), max_seconds, line_chars, max_lines)
        translation = _clean(segment.translation) if translations and segment.translation else ""
        parts = _share(translation, [sum(len(t.text) for t in group) for group in groups])
        for index, (group, part) in enumerate(zip(groups, parts, strict=True)):
            start = segment.start if index == 0 else group[0].start
            end = segment.end if index == len(groups) - 1 else group[-1].end
            lines = _lines(" ".join(t.text for t in group), line_chars)
            found.append(
                Cue(
                    id=segment.id if index == 0 else f"{segment.id}-{index + 1}",
                    start=start,
                    end=max(end, start + _MIN_CUE),
                    lines=lines,
                    speaker=speaker,
                    language=segment.language,
                    translation=part or None,
                )
            )
    found.sort(key=lambda cue: (cue.start, cue.end))
    return found


# -- WebVTT --------------------------------------------------------------------------------------


def to_webvtt(
    transcript: Transcript, names: Mapping[str, str] | None = None, *, translations: bool = True
) -> str:
    """The transcript as a WebVTT file."""
    main = transcript.language
    out = ["WEBVTT", "", "NOTE", *(_escape(line) for line in _about(transcript, translations)), ""]
    for cue in cues(transcript, names, translations=translations):
        out += [_clean(cue.id).replace("-->", "->"), f"{vtt_time(cue.start)} --> {vtt_time(cue.end)}"]
        if cue.unintelligible:
            out += [UNINTELLIGIBLE, ""]
            continue
        lines = [_escape(line) for line in cue.lines]
        if cue.language and cue.language != main:
            lines[0] = f"<lang {_escape(cue.language)}>{lines[0]}"
            lines[-1] += "</lang>"
        if cue.translation:
            english = _escape(cue.translation)
            lines.append(f"<i><lang en>{english}</lang></i>" if main != "en" else f"<i>{english}</i>")
        if cue.speaker:
            lines[0] = f"<v {_escape(cue.speaker)}>{lines[0]}"
            lines[-1] += "</v>"
        out += [*lines, ""]
    return "\n".join(out)


def vtt_time(seconds: float) -> str:
    """``HH:MM:SS.mmm``."""
    return _clock(seconds, ".")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _about(transcript: Transcript, translations: bool) -> list[str]:
    lines = [f"media {transcript.media_id}, transcript version {transcript.version}"]
    if transcript.model is not None:
        model = transcript.model
        lines.append(_clean(f"model {model.name} {model.version} ({model.backend})"))
    languages = ", ".join(f"{code} {seconds:.1f} s" for code, seconds in transcript.languages.items())
    if languages:
        lines.append(f"languages: {languages}")
    if transcript.forced_language:
        lines.append(f"language forced: {transcript.forced_language}")
    if translations and any(segment.translation for segment in transcript.segments):
        lines.append("translations into English (machine-made) in italics")
    return lines


# -- SRT -----------------------------------------------------------------------------------------


def to_srt(
    transcript: Transcript, names: Mapping[str, str] | None = None, *, translations: bool = True
) -> str:
    """The transcript as a SubRip (SRT) file."""
    main = transcript.language
    out: list[str] = []
    for number, cue in enumerate(cues(transcript, names, translations=translations), start=1):
        out += [str(number), f"{srt_time(cue.start)} --> {srt_time(cue.end)}"]
        lines = list(cue.lines)
        if not cue.unintelligible and cue.language and cue.language != main:
            lines[0] = f"[{cue.language}] {lines[0]}"
        if cue.speaker and not cue.unintelligible:
            lines[0] = f"{cue.speaker}: {lines[0]}"
        if cue.translation:
            lines.append(f"<i>{cue.translation}</i>")
        out += [*lines, ""]
    return "\n".join(out) + "\n" if out else ""


def srt_time(seconds: float) -> str:
    """``HH:MM:SS,mmm``."""
    return _clock(seconds, ",")


# -- splitting -----------------------------------------------------------------------------------


def _clock(seconds: float, separator: str) -> str:
    millis = max(round(seconds * 1000), 0)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _clean(text: str | None) -> str:
    """One line of text: every run of whitespace (line breaks included) as one space."""
    return _SPACE.sub(" ", text or "").strip()


def _tokens(segment: SpeechSegment, text: str) -> list[_Token]:
    """The words of ``text`` with times: from the segment's word timestamps when it has them
    (matched by character position, so punctuation or spacing that differs does not matter), else
    in proportion to the characters."""
    pieces = text.split(" ")
    total = sum(len(piece) for piece in pieces)
    words = [word for word in segment.words if word.text.strip()]
    word_chars = sum(len(word.text.strip()) for word in words)
    duration = segment.end - segment.start

    def at(position: float, *, ending: bool) -> float:
        """The time of character ``position`` (0..total)."""
        if not words or not word_chars:
            return segment.start + duration * position / max(total, 1)
        target = position * word_chars / max(total, 1)
        seen = 0
        for word in words:
            seen += len(word.text.strip())
            if (seen >= target if ending else seen > target) or word is words[-1]:
                return min(max(word.end if ending else word.start, segment.start), segment.end)
        return segment.end  # pragma: no cover - the loop returns at the last word

    tokens = []
    offset = 0
    for piece in pieces:
        tokens.append(_Token(piece, at(offset, ending=False), at(offset + len(piece), ending=True)))
        offset += len(piece)
    return tokens


def _lines(text: str, width: int) -> tuple[str, ...]:
    """``text`` wrapped at ``width`` into as few lines as that takes, of about equal length."""
    count = len(textwrap.wrap(text, width))
    for narrower in range(max(math.ceil(len(text) / max(count, 1)), 1), width):
        lines = textwrap.wrap(text, narrower)
        if len(lines) <= count:
            return tuple(lines)
    return tuple(textwrap.wrap(text, width)) or ("",)


def _split(
    tokens: Sequence[_Token], max_seconds: float, line_chars: int, max_lines: int
) -> list[list[_Token]]:
    """Consecutive groups of tokens, each within the time and line limits (a token that alone
    breaks them is a group of its own): as few groups as filling each in turn needs, of about
    equal length where that keeps to the limits (no lone word left at the end)."""

    def fits(group: Sequence[_Token]) -> bool:
        text = " ".join(t.text for t in group)
        short = group[-1].end - group[0].start <= max_seconds
        return short and len(textwrap.wrap(text, line_chars)) <= max_lines

    greedy: list[list[_Token]] = []
    for token in tokens:
        if greedy and fits([*greedy[-1], token]):
            greedy[-1].append(token)
        else:
            greedy.append([token])
    count = len(greedy)
    if count <= 1:
        return greedy
    total = sum(len(t.text) + 1 for t in tokens)
    even: list[list[_Token]] = [[] for _ in range(count)]
    seen = 0
    for token in tokens:
        middle = seen + (len(token.text) + 1) / 2
        even[min(int(middle * count / total), count - 1)].append(token)
        seen += len(token.text) + 1
    if all(group and fits(group) for group in even):
        return even
    return greedy


def _share(text: str, weights: Sequence[int]) -> list[str]:
    """``text`` divided at spaces into ``len(weights)`` parts in proportion to ``weights``."""
    if len(weights) <= 1:
        return [text] * len(weights)
    words = text.split(" ") if text else []
    total = sum(weights) or 1
    parts: list[list[str]] = [[] for _ in weights]
    bounds = []
    running = 0
    for weight in weights:
        running += weight
        bounds.append(running / total)
    for position, word in enumerate(words):
        middle = (position + 0.5) / len(words)
        index = next(i for i, bound in enumerate(bounds) if middle <= bound or math.isclose(bound, 1.0))
        parts[index].append(word)
    return [" ".join(part) for part in parts]
