"""Search by meaning over a case's transcripts: paraphrases find their segment, best first, and a search
never leaves its case or tenant."""

from __future__ import annotations

import pytest

from aima.access.scope import Scope
from aima.storage.speech_index import InvalidQuery, SpeechIndex, check_query, vector_id
from inference.tasks.text import TextsInput
from tests.cues.conftest import Env

STATEMENTS = [
    ("en", "The officer asked the witness where she had been on Tuesday evening."),
    ("en", "I was at home with my sister and we watched a film"),
    ("en", "Nobody came to the door after ten o'clock that night."),
    (
        "de",
        "Der Wagen stand zwei Stunden vor dem Bahnhof.",
        "The car was parked in front of the station for two hours.",
    ),
]


async def test_a_paraphrase_finds_its_segment_first(env: Env) -> None:
    case = env.new_case()
    transcript = env.store(case, STATEMENTS)
    await env.run(transcript)
    hits = env.search(case, "she spent the evening at her place watching a movie with a sibling")
    assert hits[0].segment_id == transcript.segments[1].id
    assert hits[0].score > hits[1].score
    first = hits[0]
    assert (first.media_id, first.start, first.end) == (transcript.media_id, 4.0, 7.0)
    assert (first.text, first.language, first.speaker, first.matched) == (
        STATEMENTS[1][1],
        "en",
        "S1",
        "text",
    )
    assert first.transcript_version == 1
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)


async def test_a_german_segment_is_found_through_its_translation(env: Env) -> None:
    case = env.new_case()
    transcript = env.store(case, STATEMENTS)
    await env.run(transcript)
    [hit] = env.search(case, "a vehicle waited outside the train station", limit=1)
    assert hit.segment_id == transcript.segments[3].id
    assert (hit.matched, hit.language) == ("translation", "de")
    assert hit.text == STATEMENTS[3][1]
    assert hit.translation == STATEMENTS[3][2]


async def test_search_never_returns_another_cases_or_tenants_segments(env: Env) -> None:
    mine, theirs = env.new_case(), env.new_case()
    own = env.store(mine, [("en", "We drove to the lake and went swimming.")])
    other = env.store(theirs, STATEMENTS)
    foreign = env.store(mine, STATEMENTS, tenant_id="tenant-b")  # same case id, another tenant
    for transcript in (own, other, foreign):
        await env.run(transcript)
    hits = env.search(mine, "watching a movie at home with my sister", limit=10)
    assert {hit.media_id for hit in hits} == {own.media_id}
    assert {hit.media_id for hit in env.search(mine, "a film at home", tenant_id="tenant-b")} == {
        foreign.media_id
    }
    vector = env.embedder.predict(TextsInput(texts=["film"])).vectors[0]
    index = SpeechIndex(env.vectors, env.transcripts)
    outside = Scope.for_case(env.tenant_id, theirs, "test")  # a scope of another case
    assert index.search(outside, mine, vector) == []


async def test_each_segment_counts_once_and_the_limit_holds(env: Env) -> None:
    case = env.new_case()
    lines = [
        ("de", f"Satz Nummer {i} über den Hafen.", f"Sentence number {i} about the harbour.")
        for i in range(8)
    ]
    transcript = env.store(case, lines)
    await env.run(transcript)
    hits = env.search(case, "a sentence about the harbour", limit=5)
    assert len(hits) == 5
    assert len({hit.segment_id for hit in hits}) == 5
    assert env.vectors.count("texts", case_id=case) == 16
    with pytest.raises(ValueError, match="limit"):
        env.search(case, "harbour", limit=0)


def test_queries_are_checked() -> None:
    assert check_query("  a film  ") == "a film"
    for bad in ("", "   ", "x" * 501, "a\x00b"):
        with pytest.raises(InvalidQuery):
            check_query(bad)
    assert vector_id("m-t000001000", "e") == "m-t000001000-e"
    assert len(vector_id("a/b" * 50, "o")) == 66  # not an id the store takes: hashed
