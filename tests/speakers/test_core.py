"""The speakers core on real audio, the real model and real embedded stores."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from aima.model_settings import ModelsSettings
from aima.storage.documents import DocumentStore
from aima.storage.objects_local import LocalObjectStore
from aima.storage.vectors_milvus import MilvusVectorStore
from events.catalogue import MediaFailed, SpeakersCompleted
from functions.speakers.core import TenantRules, link_similarity
from inference.cpu.voices import ResemblyzerVoiceEmbedder
from inference.pool import ModelPool
from inference.tasks.speech import VoiceEmbedder

from .conftest import MAN, OTHER, WOMAN, Recording
from .env import Env


@pytest.fixture(scope="module")
def stores(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[DocumentStore, LocalObjectStore, MilvusVectorStore]]:
    root = tmp_path_factory.mktemp("speakers-stores")
    documents = DocumentStore.from_uri(f"litemongo://{root / 'documents'}", "aima")
    objects = LocalObjectStore(root / "objects", presign_secret=b"s" * 32, public_base_url="http://aima.test")
    vectors = MilvusVectorStore(str(root / "vectors.db"))
    vectors.ensure_collections()
    yield documents, objects, vectors
    vectors.close()
    documents.close()


@pytest.fixture
def env(
    stores: tuple[DocumentStore, LocalObjectStore, MilvusVectorStore], embedder: ResemblyzerVoiceEmbedder
) -> Env:
    """A fresh case (cases never see each other's speakers, so the stores are shared)."""
    documents, objects, vectors = stores
    return Env(documents, objects, vectors, lambda: embedder)


def by_voice(recording: Recording, values: list[str | None]) -> dict[str, set[str | None]]:
    found: dict[str, set[str | None]] = {}
    for voice, value in zip(recording.voices(), values, strict=True):
        found.setdefault(voice, set()).add(value)
    return found


async def test_two_alternating_voices_become_two_speakers(env: Env, alternating: Recording) -> None:
    run = await env.analyse(alternating)
    result = run.result
    assert isinstance(result, SpeakersCompleted)
    assert (result.status, result.speakers, result.case_speakers, result.new_case_speakers) == (
        "completed",
        2,
        2,
        2,
    )
    assert (result.result_count, result.turns, result.version) == (2, 6, 1)
    assert result.model.backend == "resemblyzer"
    assert result.model.version.startswith("resemblyzer")
    assert run.labels() == ["S1", "S2", "S1", "S2", "S1", "S2"]  # by first appearance
    speakers = by_voice(alternating, run.case_speakers())
    assert len(speakers[WOMAN]) == len(speakers[MAN]) == 1
    assert speakers[WOMAN] != speakers[MAN]
    assert run.transcript is not None
    assert run.transcript.speakers_labelled
    names = env.speakers.display_names(env.tenant_id, env.case_id)
    assert sorted(names.values()) == ["Speaker 1", "Speaker 2"]


async def test_one_voice_in_two_files_is_one_case_speaker_and_another_voice_is_not(
    env: Env, alternating: Recording, then_and_other: Recording
) -> None:
    first = await env.analyse(alternating)
    second = await env.analyse(then_and_other)
    assert second.result.speakers == 2
    assert second.result.new_case_speakers == 1
    man_first = by_voice(alternating, first.case_speakers())[MAN]
    in_second = by_voice(then_and_other, second.case_speakers())
    assert in_second[MAN] == man_first
    assert in_second[OTHER].isdisjoint(set(first.case_speakers()))
    assert len(env.speakers.speakers(env.tenant_id, env.case_id)) == 3
    appearances = env.speakers.appearances(env.tenant_id, env.case_id)
    [man] = man_first
    assert man is not None
    assert len(appearances[man]) == 2


async def test_a_voice_is_never_linked_to_another_case(env: Env, alternating: Recording) -> None:
    first = await env.analyse(alternating)
    other_case = Env(env.documents, env.objects, env.vectors, env.embedder, case_id=str(uuid.uuid4()))
    second = await other_case.analyse(alternating)
    assert second.result.new_case_speakers == 2
    assert set(second.case_speakers()).isdisjoint(set(first.case_speakers()))
    other_tenant = Env(
        env.documents, env.objects, env.vectors, env.embedder, tenant_id="tenant-other", case_id=env.case_id
    )
    third = await other_tenant.analyse(alternating)
    assert third.result.new_case_speakers == 2
    assert set(third.case_speakers()).isdisjoint(set(first.case_speakers()))


async def test_a_redelivered_event_creates_nothing_twice(env: Env, alternating: Recording) -> None:
    data = env.store(alternating)
    event_id = str(uuid.uuid4())
    first = await env.run(data, event_id=event_id)
    again = await env.run(data, event_id=event_id)
    assert again.result.new_case_speakers == 0
    assert again.labels() == first.labels()
    assert again.case_speakers() == first.case_speakers()
    assert len(env.speakers.speakers(env.tenant_id, env.case_id)) == 2
    assert env.vectors.count("voices", case_id=env.case_id) == 2
    assert len(env.speakers.file_speakers(env.tenant_id, env.case_id)) == 2


async def test_corrections_survive_reanalysis(
    env: Env, alternating: Recording, then_and_other: Recording
) -> None:
    speakers = env.speakers
    tenant, case = env.tenant_id, env.case_id
    media_a, media_b = str(uuid.uuid4()), str(uuid.uuid4())
    a = await env.analyse(alternating, media_a)
    b = await env.analyse(then_and_other, media_b)
    [woman] = by_voice(alternating, a.case_speakers())[WOMAN]
    [man] = by_voice(alternating, a.case_speakers())[MAN]
    [other] = by_voice(then_and_other, b.case_speakers())[OTHER]
    assert woman
    assert man
    assert other
    # the user: names the woman, says the third voice is the man, and that the man's second line
    # in the first file was someone else (a caller)
    speakers.rename(tenant, case, woman, "Witness")
    speakers.merge(tenant, case, other, man)
    assert a.transcript is not None
    caller_line = a.transcript.speech[3]
    caller = speakers.split(tenant, case, man, media_a, segment_ids=[caller_line.id], name="Caller")
    relabelled = env.transcripts.get(tenant, case, media_b, 1)
    assert relabelled is not None
    assert {s.case_speaker_id for s in relabelled.speech} == {man}

    # both files are transcribed again (other segment times, so other segment ids) and re-analysed
    a2 = await env.analyse(alternating, media_a, shift=0.05)
    b2 = await env.analyse(then_and_other, media_b, shift=0.05)
    assert a2.transcript is not None
    assert a2.transcript.version == 2
    assert a2.result.new_case_speakers == b2.result.new_case_speakers == 0
    assert a2.case_speakers() == [woman, man, woman, caller.id, woman, man]
    assert set(b2.case_speakers()) == {man}
    names = speakers.display_names(tenant, case)
    assert names[woman] == "Witness"
    assert names[caller.id] == "Caller"
    assert names[other] == names[man] == "Speaker 2"
    assert [s.display_name for s in speakers.speakers(tenant, case)] == ["Witness", "Speaker 2", "Caller"]
    assert a2.labels() == ["S1", "S2", "S1", "S3", "S1", "S2"]
    # only the newest version's file speakers count
    current = speakers.file_speakers(tenant, case, media_a)
    assert {fs.version for fs in current} == {2}
    assert sum(len(fs.turns) for fs in current) == 6


async def test_without_a_voice_model_the_step_records_not_run(env: Env, alternating: Recording) -> None:
    pool = ModelPool(ModelsSettings.model_validate({"voice_embedder": {"backend": "none"}}))
    env.embedder = lambda: pool.get(VoiceEmbedder)
    run = await env.analyse(alternating)
    assert (run.result.status, run.result.result_count) == ("not_run", 0)
    assert "AIMA_MODELS__VOICE_EMBEDDER__BACKEND" in (run.result.reason or "")
    assert run.labels() == [None] * 6


async def test_a_transcript_that_was_not_made_is_not_labelled(env: Env, alternating: Recording) -> None:
    data = env.store(alternating).model_copy(update={"status": "not_run", "reason": "no model configured"})
    run = await env.run(data)
    assert run.result.status == "not_run"
    assert "transcription not_run: no model configured" in (run.result.reason or "")


async def test_a_tenant_that_switched_the_step_off_gets_not_run(env: Env, alternating: Recording) -> None:
    env.rules = TenantRules(enabled=False)
    run = await env.analyse(alternating)
    assert run.result.status == "not_run"
    assert "analysis.steps" in (run.result.reason or "")


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda wav: wav[:44] + b"\x00" * 10, "ends before its header says"),
        (lambda wav: b"not a wav file at all", "damaged"),
    ],
)
async def test_damaged_audio_fails_the_step_with_the_reason(
    env: Env, alternating: Recording, tmp_path: Path, damage: object, reason: str
) -> None:
    data = env.store(alternating)
    assert data.audio_key is not None
    damaged = tmp_path / "damaged.wav"
    damaged.write_bytes(damage(alternating.path.read_bytes()))  # type: ignore[operator]
    env.objects.put(data.audio_key, damaged.open("rb"), content_type="audio/wav")
    run = await env.run(data)
    assert isinstance(run.result, MediaFailed)
    assert run.result.step == "speakers"
    assert reason in run.result.reason


async def test_missing_audio_fails_the_step(env: Env, alternating: Recording) -> None:
    data = env.store(alternating)
    assert data.audio_key is not None
    env.objects.delete(data.audio_key)
    run = await env.run(data)
    assert isinstance(run.result, MediaFailed)
    assert "missing" in run.result.reason


def test_the_default_match_score_asks_for_a_close_voice() -> None:
    assert link_similarity(0.7) == pytest.approx(0.85)
    assert link_similarity(0.0) == 0.5
