"""Subtitle exports: WebVTT read back by webvtt-py and SRT by srt, plus a strict check of the WebVTT
syntax they are lenient about (header, cue blocks, timings, ordering, escaping)."""

from __future__ import annotations

import html
import io
import itertools
import json
import re

import srt
import webvtt
from hypothesis import given, settings
from hypothesis import strategies as st

from aima.domain import ModelRef
from aima.subtitles import (
    LINE_CHARS,
    MAX_LINES,
    MAX_SECONDS,
    TranscriptExport,
    cues,
    download_name,
    render,
    srt_time,
    to_srt,
    to_webvtt,
    vtt_time,
)
from aima.transcripts import SpeechSegment, SpokenWord, Transcript, segment_id

MEDIA = "m-1"
VTT_TIMING = re.compile(r"^(\d{2}):(\d{2}):(\d{2})\.(\d{3}) --> (\d{2}):(\d{2}):(\d{2})\.(\d{3})$")
TAGS = re.compile(r"</?(?:v(?: [^>]*)?|lang(?: [^>]*)?|i|b|u|c(?:\.[^>]*)?)>")
LONG_GERMAN = (
    "Ich war den ganzen Abend zu Hause bei meiner Schwester, und wir haben bis Mitternacht einen Film "
    "gesehen, danach bin ich schlafen gegangen."
)
LONG_ENGLISH = (
    "I was at home with my sister the whole evening, and we watched a film until midnight, "
    "then I went to sleep."
)


def segment(start: float, end: float, text: str = "", **fields: object) -> SpeechSegment:
    return SpeechSegment.model_validate(
        {"id": segment_id(MEDIA, start), "start": start, "end": end, "text": text} | fields
    )


def transcript(*segments: SpeechSegment, **fields: object) -> Transcript:
    base = {"tenant_id": "t", "case_id": "c", "media_id": MEDIA, "version": 3, "segments": list(segments)}
    return Transcript.model_validate(base | fields)


def timed_words(text: str, start: float, step: float = 0.6) -> list[SpokenWord]:
    return [
        SpokenWord(start=start + i * step, end=start + i * step + step - 0.1, text=word)
        for i, word in enumerate(text.split())
    ]


def seconds(h: str, m: str, s: str, ms: str) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def strict_webvtt(text: str) -> list[tuple[str, float, float, list[str]]]:
    """Blocks as the WebVTT syntax demands them: ``WEBVTT`` first, blocks split by one blank line,
    NOTE blocks without ``-->``, each cue an optional id, a timing line, payload lines with no
    ``-->`` and no unescaped ``<``/``&`` outside the tags; end after start; starts in order."""
    assert text.startswith("WEBVTT\n\n")
    assert "\r" not in text
    found = []
    previous = 0.0
    for block in text.split("\n\n")[1:]:
        lines = block.strip("\n").split("\n")
        if not lines or lines == [""]:
            continue
        assert "" not in lines, block
        if lines[0] == "NOTE":
            assert "-->" not in block
            continue
        cue_id = ""
        if "-->" not in lines[0]:
            cue_id, lines = lines[0], lines[1:]
            assert "-->" not in cue_id
        match = VTT_TIMING.match(lines[0])
        assert match, lines[0]
        start, end = seconds(*match.groups()[:4]), seconds(*match.groups()[4:])
        assert end > start, block
        assert start >= previous, "cues must be in order of start time"
        previous = start
        payload = lines[1:]
        assert payload, block
        for line in payload:
            bare = TAGS.sub("", line)
            assert "-->" not in line
            assert "<" not in bare, line
            assert ">" not in bare, line
            assert not re.search(r"&(?!amp;|lt;|gt;)", bare), line
        found.append((cue_id, start, end, payload))
    return found


def read_vtt(text: str) -> list[webvtt.Caption]:
    return list(webvtt.from_buffer(io.StringIO(text)).captions)


# -- formats -------------------------------------------------------------------------------------


def test_webvtt_with_speakers_languages_translations_and_gaps_reads_back() -> None:
    doc = transcript(
        segment(
            1.0, 3.2, "Where were you on Tuesday evening?", language="en", speaker="S1", case_speaker_id="cs1"
        ),
        segment(3.5, 5.0, kind="unintelligible", reason="no usable text"),
        segment(
            5.5,
            8.0,
            "Ich war zu Hause.",
            language="de",
            translation="I was at home.",
            speaker="S2",
            case_speaker_id="cs2",
        ),
        segment(8.5, 9.5, "Okay.", language="en", speaker="S1"),
        model=ModelRef(name="base", version="1.0", backend="faster-whisper"),
    )
    names = {"cs1": "Officer Smith", "cs2": "Witness Anna"}
    text = to_webvtt(doc, names)
    blocks = strict_webvtt(text)
    captions = read_vtt(text)
    assert len(captions) == len(blocks) == 4
    assert [c.identifier for c in captions] == [s.id for s in doc.segments]
    assert [(c.start, c.end) for c in captions] == [
        ("00:00:01.000", "00:00:03.200"),
        ("00:00:03.500", "00:00:05.000"),
        ("00:00:05.500", "00:00:08.000"),
        ("00:00:08.500", "00:00:09.500"),
    ]
    assert [c.voice for c in captions] == ["Officer Smith", None, "Witness Anna", "S1"]
    assert captions[0].text == "Where were you on Tuesday evening?"
    assert captions[1].text == "[unintelligible]"
    assert (
        captions[2].raw_text == "<v Witness Anna><lang de>Ich war zu Hause.</lang>\n<i>I was at home.</i></v>"
    )
    assert captions[2].text.splitlines() == ["Ich war zu Hause.", "I was at home."]
    # the NOTE names the media, version, model and languages
    note = text.split("\n\n")[1]
    assert note.startswith("NOTE\nmedia m-1, transcript version 3\nmodel base 1.0 (faster-whisper)\n")
    assert "languages: en 3.2 s, de 2.5 s" in note

    without = to_webvtt(doc, names, translations=False)
    assert "I was at home" not in without
    assert "translations" not in without


def test_srt_with_speakers_languages_and_translations_reads_back() -> None:
    doc = transcript(
        segment(1.0, 3.2, "Where were you?", language="en", speaker="S1", case_speaker_id="cs1"),
        segment(3.5, 5.0, kind="unintelligible"),
        segment(5.5, 8.0, "Ich war zu Hause.", language="de", translation="I was at home.", speaker="S2"),
        segment(3725.25, 3727.0, "Nobody came.", language="en"),
    )
    text = to_srt(doc, {"cs1": "Officer Smith"})
    subtitles = list(srt.parse(text))
    assert [s.index for s in subtitles] == [1, 2, 3, 4]
    assert [s.content for s in subtitles] == [
        "Officer Smith: Where were you?",
        "[unintelligible]",
        "S2: [de] Ich war zu Hause.\n<i>I was at home.</i>",
        "Nobody came.",
    ]
    assert [(s.start.total_seconds(), s.end.total_seconds()) for s in subtitles] == [
        (1.0, 3.2),
        (3.5, 5.0),
        (5.5, 8.0),
        (3725.25, 3727.0),
    ]
    assert "01:02:05,250 --> 01:02:07,000" in text
    assert srt.compose(subtitles, reindex=False) == text  # canonical SRT, as the library writes it


def test_timestamps() -> None:
    assert vtt_time(0) == "00:00:00.000"
    assert vtt_time(3661.2344) == "01:01:01.234"
    assert vtt_time(59.9996) == "00:01:00.000"
    assert srt_time(3661.2346) == "01:01:01,235"
    assert srt_time(100 * 3600 + 1.5) == "100:00:01,500"


def test_text_is_escaped_for_webvtt_and_cannot_break_the_cue() -> None:
    hostile = "a <b>bold</b> & --> claim\n\nWEBVTT 00:00:01.000 --> 00:00:02.000 <v Eve>"
    doc = transcript(segment(0.5, 3.0, hostile, speaker="S1", case_speaker_id="x"))
    text = to_webvtt(doc, {"x": "Eve <admin> & co"})
    [(_, _, _, payload)] = strict_webvtt(text)
    [caption] = read_vtt(text)
    assert caption.voice == "Eve &lt;admin&gt; &amp; co"
    assert html.unescape(" ".join(TAGS.sub("", line) for line in payload)) == " ".join(hostile.split())
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; --&gt; claim" in text
    # SRT has no escaping, but nothing can end the cue early: no blank line, no timing line of its own
    [subtitle] = list(srt.parse(to_srt(doc, {"x": "Eve"})))
    assert subtitle.content.replace("\n", " ") == "Eve: " + " ".join(hostile.split())


def test_speaker_names_prefer_the_case_name_then_the_file_label() -> None:
    doc = transcript(
        segment(0, 1, "one", speaker="S1", case_speaker_id="cs1"),
        segment(1, 2, "two", speaker="S2", case_speaker_id="cs-unnamed"),
        segment(2, 3, "three"),
    )
    assert [c.speaker for c in cues(doc, {"cs1": "  Anna\nMeier "})] == ["Anna Meier", "S2", None]
    assert [c.speaker for c in cues(doc)] == ["S1", "S2", None]


# -- splitting -----------------------------------------------------------------------------------


def check_cue_limits(found: list, text: str) -> None:
    for cue in found:
        assert cue.end - cue.start <= MAX_SECONDS + 1e-6, cue
        assert len(cue.lines) <= MAX_LINES, cue
        assert all(len(line) <= LINE_CHARS for line in cue.lines), cue
    assert " ".join(" ".join(cue.lines) for cue in found) == " ".join(text.split())


def test_a_long_segment_is_split_at_its_word_timestamps() -> None:
    words = timed_words(LONG_GERMAN, 12.0)
    long = segment(12.0, words[-1].end, LONG_GERMAN, language="de", translation=LONG_ENGLISH, words=words)
    found = cues(transcript(long))
    assert len(found) == 3
    check_cue_limits(found, LONG_GERMAN)
    assert (found[0].start, found[-1].end) == (long.start, long.end)
    starts = {w.start for w in words}
    ends = {w.end for w in words}
    for before, after in itertools.pairwise(found):
        assert before.end in ends  # cut where a word ends ...
        assert after.start in starts  # ... and the next begins
        assert after.start >= before.end
    # the ids stay stable: the segment's, then -2, -3
    assert [c.id for c in found] == [long.id, f"{long.id}-2", f"{long.id}-3"]
    # the translation is shared out over the cues, in order, nothing lost
    assert " ".join(c.translation or "" for c in found).split() == LONG_ENGLISH.split()
    assert all(c.translation for c in found)
    assert all(c.language == "de" for c in found)

    captions = read_vtt(to_webvtt(transcript(long)))
    assert len(captions) == 3
    strict_webvtt(to_webvtt(transcript(long)))
    assert len(list(srt.parse(to_srt(transcript(long))))) == 3


def test_words_that_do_not_match_the_text_still_give_the_times() -> None:
    text = "Nobody came to the door after 10 o'clock, and then nobody called again until the morning came."
    tokens = "Nobody came to the door after 10 o 'clock , and then nobody called again until the morning"
    tokens += " came ."
    words = [SpokenWord(start=0.5 * i, end=0.5 * i + 0.4, text=t) for i, t in enumerate(tokens.split())]
    found = cues(transcript(segment(0.0, words[-1].end, text, words=words)))
    assert len(found) >= 2
    check_cue_limits(found, text)
    assert all(cue.start in {w.start for w in words} for cue in found[1:])


def test_without_words_a_long_segment_is_split_in_proportion_to_its_text() -> None:
    long = segment(100.0, 118.0, LONG_GERMAN)  # 18 s: at least three cues
    found = cues(transcript(long))
    assert len(found) == 3
    check_cue_limits(found, LONG_GERMAN)
    assert (found[0].start, found[-1].end) == (100.0, 118.0)
    assert all(a.end <= b.start for a, b in itertools.pairwise(found))


def test_a_short_segment_stays_one_cue_and_an_unintelligible_gap_is_never_split() -> None:
    found = cues(transcript(segment(0, 2, "Yes."), segment(2, 30, kind="unintelligible")))
    assert [(c.start, c.end, c.lines, c.unintelligible) for c in found] == [
        (0, 2, ("Yes.",), False),
        (2, 30, ("[unintelligible]",), True),
    ]


def test_empty_segments_are_left_out_and_zero_length_cues_get_a_millisecond() -> None:
    found = cues(transcript(segment(1, 2, "   "), segment(3, 3, "Hm.")))
    assert [(c.start, c.end, c.lines) for c in found] == [(3, 3.001, ("Hm.",))]
    strict_webvtt(to_webvtt(transcript(segment(3, 3, "Hm."))))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=5000, allow_nan=False),
            st.floats(min_value=0, max_value=40, allow_nan=False),
            st.text(st.characters(blacklist_categories=("Cs",)), max_size=200),
            st.sampled_from([None, "S1", "a<b>&c"]),
            st.sampled_from([None, "en", "de"]),
            st.booleans(),
        ),
        max_size=8,
    )
)
def test_any_transcript_gives_valid_subtitles(
    parts: list[tuple[float, float, str, str | None, str | None, bool]],
) -> None:
    segments = [
        segment(
            start,
            start + length,
            text,
            speaker=speaker,
            language=language,
            translation=text[::-1] if flip else None,
        )
        for start, length, text, speaker, language, flip in parts
    ]
    doc = transcript(*segments)
    vtt = to_webvtt(doc)
    blocks = strict_webvtt(vtt)
    assert len(read_vtt(vtt)) == len(blocks) == len(cues(doc))
    subtitles = list(srt.parse(to_srt(doc)))
    assert len(subtitles) == len(blocks)
    spoken = [" ".join(text.split()) for _, _, text, *_ in sorted(parts, key=lambda p: p[0]) if text.split()]
    assert len(blocks) >= len(spoken)


# -- the JSON export and file names --------------------------------------------------------------


def test_the_json_export_carries_versions_and_only_the_names_it_uses() -> None:
    doc = transcript(segment(0, 1, "one", case_speaker_id="cs1"), status="completed")
    body = render(doc, "json", {"cs1": "Anna", "cs9": "Someone else"}, versions=[1, 2, 3], exported_by="u1")
    export = TranscriptExport.model_validate_json(body)
    assert export.transcript == doc
    assert (export.versions, export.speaker_names, export.exported_by) == ([1, 2, 3], {"cs1": "Anna"}, "u1")
    assert json.loads(body)["transcript"]["segments"][0]["text"] == "one"
    assert render(doc, "vtt").startswith("WEBVTT\n")
    assert render(doc, "srt").startswith("1\n00:00:00,000 --> 00:00:01,000\n")


def test_download_names() -> None:
    doc = transcript()
    assert download_name(doc, "vtt", "Interview 3 (Anna).mp4") == "Interview_3_Anna.transcript-v3.vtt"
    assert download_name(doc, "srt", "C:\\evidence\\call.wav") == "call.transcript-v3.srt"
    assert download_name(doc, "json", '"; rm -rf /x.wav') == "x.transcript-v3.json"
    assert download_name(doc, "json", None) == "m-1.transcript-v3.json"
    assert download_name(doc, "vtt", "ünïcode.ogg") == "n_code.transcript-v3.vtt"
