"""The sensitivity step on real stores: every frame scored and stored as a version with the threshold,
flagged frames counted against the tenant's threshold, a missing or damaged frame skipped with its
reason, not run without a model, nothing for a file deleted meanwhile; the spec as the host sees it."""

from __future__ import annotations

from aima.config.schema import RuntimeConfig
from aima.identity.users import UserDirectory
from aima.settings import Settings, load_settings
from aima.storage.sensitivity import Verdict
from events.catalogue import SensitivityScored
from functions.runtime.deps import Deps
from functions.runtime.spec import discover
from functions.sensitivity.spec import SPEC, build
from inference.cpu.nsfw import OpenNsfwScorer
from inference.errors import ModelNotConfigured
from inference.tasks.vision import SensitivityScorer
from tests.sensitivity.conftest import Env, run, scene


def no_model() -> SensitivityScorer:
    raise ModelNotConfigured("no sensitivity scorer in this test")


async def test_every_frame_is_scored_and_stored_with_the_threshold(env: Env, scorer: OpenNsfwScorer) -> None:
    data = env.frames([(2.5, scene(2)), (0.0, scene(0)), (1.0, scene(1))])
    [event] = await run(env.core(lambda: scorer), data)
    assert isinstance(event, SensitivityScored)
    assert (event.status, event.frames, event.skipped_frames, event.version) == ("completed", 3, 0, 1)
    assert (event.threshold, event.flagged_frames, event.result_count) == (0.8, 0, 0)
    assert event.model.backend == "open-nsfw"
    assert event.model.version.startswith("sha256:")

    stored = env.results.latest(env.tenant_id, env.case_id, data.media_id)
    assert stored is not None
    assert [f.timestamp_s for f in stored.frames] == [0.0, 1.0, 2.5]  # time order
    by_time = {ref.timestamp_s: ref for ref in data.frames}
    for frame in stored.frames:
        assert frame.frame_id == by_time[frame.timestamp_s].frame_id
        assert frame.object_key == by_time[frame.timestamp_s].object_key
        assert 0.0 <= frame.score < 0.2
    assert stored.threshold == 0.8
    assert stored.model is not None
    assert stored.model.name == "open-nsfw"


async def test_flagged_frames_count_against_the_tenant_threshold(env: Env, scorer: OpenNsfwScorer) -> None:
    data = env.frames([(0.0, scene(0)), (1.0, scene(1))])
    [first] = await run(env.core(lambda: scorer), data)
    stored = env.results.latest(env.tenant_id, env.case_id, data.media_id)
    assert stored is not None
    scores = sorted(frame.score for frame in stored.frames)
    assert scores[0] < scores[1]
    env.threshold = (scores[0] + scores[1]) / 2  # between the two: one frame at or above it
    [second] = await run(env.core(lambda: scorer), data)
    assert isinstance(first, SensitivityScored)
    assert isinstance(second, SensitivityScored)
    assert (first.flagged_frames, second.flagged_frames, second.result_count) == (0, 1, 1)
    assert second.version == 2
    assert second.threshold == env.threshold

    top = env.results.media_verdict(env.tenant_id, env.case_id, data.media_id, env.threshold)
    assert top.sensitive
    assert top.score == scores[1]
    assert Verdict(scores[0], env.threshold).sensitive is False
    assert Verdict(None, 0.0).sensitive is False  # not scored is never sensitive


async def test_a_missing_or_damaged_frame_is_skipped_with_its_reason(
    env: Env, scorer: OpenNsfwScorer
) -> None:
    data = env.frames([(0.0, scene(0)), (1.0, None), (2.0, b"\xff\xd8 damaged"), (3.0, scene(3))])
    [event] = await run(env.core(lambda: scorer), data)
    assert isinstance(event, SensitivityScored)
    assert (event.status, event.frames, event.skipped_frames) == ("completed", 2, 2)
    stored = env.results.latest(env.tenant_id, env.case_id, data.media_id)
    assert stored is not None
    assert [f.timestamp_s for f in stored.frames] == [0.0, 3.0]
    reasons = {s.timestamp_s: s.reason for s in stored.skipped}
    assert reasons[1.0] == "the frame is missing from the object store"
    assert reasons[2.0].startswith("the frame could not be scored: the image cannot be read")
    assert stored.score_of(data.frames[1].frame_id) is None


async def test_without_a_model_the_step_is_not_run(env: Env) -> None:
    data = env.frames([(0.0, scene(0))])
    [event] = await run(env.core(no_model), data)
    assert isinstance(event, SensitivityScored)
    assert (event.status, event.reason, event.result_count) == (
        "not_run",
        "no sensitivity scorer in this test",
        0,
    )
    assert event.model.backend == "none"
    stored = env.results.latest(env.tenant_id, env.case_id, data.media_id)
    assert stored is not None
    assert (stored.status, stored.frames) == ("not_run", [])
    assert env.results.latest_completed(env.tenant_id, env.case_id, data.media_id) is None


async def test_a_later_not_run_keeps_the_scores_that_count(env: Env, scorer: OpenNsfwScorer) -> None:
    data = env.frames([(0.0, scene(0))])
    await run(env.core(lambda: scorer), data)
    await run(env.core(no_model), data)
    assert env.results.versions(env.tenant_id, env.case_id, data.media_id) == [1, 2]
    scored = env.results.latest_completed(env.tenant_id, env.case_id, data.media_id)
    assert scored is not None
    assert scored.version == 1
    assert env.results.frame_verdict(
        env.tenant_id, env.case_id, data.media_id, data.frames[0].frame_id, 0.0
    ).sensitive


async def test_a_file_deleted_meanwhile_gets_nothing(env: Env, scorer: OpenNsfwScorer) -> None:
    data = env.frames([(0.0, scene(0))])
    assert env.media.delete(env.scope, data.media_id)
    assert await run(env.core(lambda: scorer), data) == []
    assert env.results.versions(env.tenant_id, env.case_id, data.media_id) == []


async def test_deleting_a_file_or_the_case_removes_its_scores(env: Env, scorer: OpenNsfwScorer) -> None:
    kept, dropped = env.frames([(0.0, scene(0))]), env.frames([(0.0, scene(1))])
    for data in (kept, dropped, dropped):
        await run(env.core(lambda: scorer), data)
    assert env.results.delete_media(env.tenant_id, env.case_id, dropped.media_id) == 2
    assert env.results.latest(env.tenant_id, env.case_id, dropped.media_id) is None
    assert env.results.latest(env.tenant_id, env.case_id, kept.media_id) is not None
    env.documents.delete_case(env.case_id)  # what deleting the case does to every collection
    assert env.results.latest(env.tenant_id, env.case_id, kept.media_id) is None


def test_the_threshold_comes_from_the_tenant_configuration(embedded_settings: Settings) -> None:
    deps = Deps(embedded_settings)
    try:
        owner = UserDirectory(deps.stores.db).ensure_local_owner(embedded_settings.bootstrap_tenant)
        core = build(deps)
        assert core._threshold_for(owner.tenant_id) == 0.8
        deps.config.set(
            "thresholds",
            {"sensitive_blur": 0.35},
            actor="test",
            tenant_id=owner.tenant_id,
            audit_tenant_id=owner.tenant_id,
        )
        assert core._threshold_for(owner.tenant_id) == 0.35
    finally:
        deps.close()


def test_the_spec_is_an_analysis_step_on_frames() -> None:
    assert discover()["sensitivity"] is SPEC
    assert SPEC.port == 8092
    assert SPEC.analysis
    assert SPEC.emits == (SensitivityScored,)
    assert "model:sensitivity_scorer" in SPEC.needs
    assert RuntimeConfig().thresholds.sensitive_blur == 0.8
    assert load_settings(profile="embedded").models.sensitivity_scorer.backend == "open-nsfw"
