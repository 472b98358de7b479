"""The pose step end to end on shipped photographs and images made from them: a posture finding,
neighbours, a face the skeleton does not belong to, frames without faces, missing frames, not run."""

from __future__ import annotations

from pathlib import Path

from aima.domain import Step
from aima.samples_faces import FaceSamples
from aima.settings import load_settings
from aima.storage.faces import FaceBox
from events.catalogue import FacesDetected, ModelInfo, PoseEstimated
from functions.pose.spec import SPEC
from inference.cpu.pose import MediaPipePoseEstimator
from inference.pool import ModelPool
from inference.tasks.vision import PoseEstimator
from tests.pose.conftest import Env, detect_faces, photo, side_by_side, turn


async def test_a_person_lying_down_is_a_posture_finding(
    env: Env, estimator: MediaPipePoseEstimator, samples: FaceSamples
) -> None:
    upright = photo(samples, "astronaut.png")
    faces = detect_faces(upright)
    assert len(faces) == 1
    lying = upright.rotate(90, expand=True)  # the portrait turned on its side: a body lying down
    data = env.detected([(upright, faces), (lying, [turn(face, upright.size) for face in faces])])
    (event,) = await env.run(env.core(lambda: estimator), data)
    assert isinstance(event, PoseEstimated)
    assert (event.status, event.version, event.faces_version) == ("completed", 1, 1)
    assert (event.crops, event.posed, event.skipped_crops) == (2, 2, 0)
    assert (event.result_count, event.postures) == (1, {"lying_down": 1})
    assert event.model.backend == "mediapipe"

    result = env.poses.latest(env.tenant_id, env.case_id, data.media_id)
    assert result is not None
    first, second = result.crops
    assert first.check("lying_down") is not None
    assert first.check("lying_down").holds is not True  # type: ignore[union-attr]
    assert second.track_id is not None
    assert second.face_box is not None
    assert (second.status, second.confidence, second.overlap) == ("posed", 1.0, 0.0)
    assert len(second.landmarks) == 33
    nose = second.landmark("nose")
    box = second.face_box
    assert nose is not None
    assert box.x <= nose.x <= box.x + box.width

    (finding,) = env.postures(data.media_id)
    assert finding.step == Step.POSE
    assert (finding.cue, finding.label) == ("lying_down", "posture: body lying down (torso near horizontal)")
    assert (finding.frame_id, finding.timestamp_s, finding.crop_id) == (
        data.frames[1].frame_id,
        1.0,
        second.id,
    )
    assert finding.track_id == second.track_id
    assert 0.6 <= finding.confidence <= 0.9
    assert finding.confidence == round(finding.cue_confidence * finding.crop_confidence, 4)
    assert finding.measure is not None
    assert finding.measure > 70
    assert {point.name for point in finding.landmarks} == {
        "left_shoulder",
        "right_shoulder",
        "left_hip",
        "right_hip",
    }
    (evidence,) = finding.evidence
    assert (evidence.media_id, evidence.frame_id, evidence.start_s) == (
        data.media_id,
        data.frames[1].frame_id,
        1.0,
    )
    assert "not a finding of fact" in finding.note
    assert finding.model.backend == "mediapipe"


async def test_people_side_by_side_each_get_their_own_skeleton(
    env: Env, estimator: MediaPipePoseEstimator, samples: FaceSamples
) -> None:
    biden = photo(samples, "biden.jpg")
    pair = side_by_side(biden, biden, gap=-229)  # two copies, the right one covering the left's side
    faces = detect_faces(pair)
    assert len(faces) == 2
    data = env.detected([(pair, faces)])
    (event,) = await env.run(env.core(lambda: estimator), data)
    assert isinstance(event, PoseEstimated)
    assert (event.crops, event.posed) == (2, 2)
    result = env.poses.latest(env.tenant_id, env.case_id, data.media_id)
    assert result is not None
    for crop, (box, _) in zip(result.crops, faces, strict=True):
        assert crop.trimmed
        assert crop.neighbours == 1
        assert 0 < crop.overlap <= 0.5  # part of the neighbour's torso is inside
        assert crop.confidence == round(1 - crop.overlap, 4)
        nose = crop.landmark("nose")
        assert nose is not None
        assert box.x <= nose.x <= box.x + box.width  # each skeleton is its own face's
        assert crop.check("wrists_together").holds is not True  # type: ignore[union-attr]  # crossed arms
    left, right = result.crops
    assert left.box.x + left.box.width <= right.box.x + right.box.width


async def test_a_neighbour_overlapping_the_crop_or_a_face_without_its_body_is_skipped(
    env: Env, estimator: MediaPipePoseEstimator, samples: FaceSamples
) -> None:
    biden = photo(samples, "biden.jpg")
    ((face, points),) = detect_faces(biden)
    in_front = FaceBox(
        x=face.x + 40, y=face.y + 2.2 * face.height, width=200, height=200
    )  # a face at the chest
    on_the_belt = FaceBox(x=face.x, y=face.y + 4 * face.height, width=face.width, height=face.height)
    data = env.detected([(biden, [(face, points), (in_front, [])]), (biden, [(on_the_belt, [])])])
    (event,) = await env.run(env.core(lambda: estimator), data)
    assert isinstance(event, PoseEstimated)
    assert (event.crops, event.posed, event.skipped_crops, event.result_count) == (3, 0, 3, 0)
    result = env.poses.latest(env.tenant_id, env.case_id, data.media_id)
    assert result is not None
    crowded, front, belt = result.crops
    assert (crowded.status, front.status) == ("skipped_overlap", "skipped_overlap")
    assert crowded.overlap > 0.5
    assert crowded.reason is not None
    assert "overlap" in crowded.reason
    assert crowded.landmarks == []  # never posed: the skeleton could be the neighbour's
    assert belt.status == "skipped_mismatch"
    assert belt.reason is not None
    assert "someone else's body" in belt.reason
    assert env.postures(data.media_id) == []


async def test_frames_without_faces_missing_frames_and_the_floor(
    env: Env, estimator: MediaPipePoseEstimator, samples: FaceSamples
) -> None:
    biden = photo(samples, "biden.jpg")
    lying = photo(samples, "astronaut.png").rotate(90, expand=True)
    data = env.detected([(biden, []), (side_by_side(biden, biden), []), (None, []), (lying, [])])
    (event,) = await env.run(env.core(lambda: estimator, floor=0.55), data)
    assert isinstance(event, PoseEstimated)
    assert (event.crops, event.posed, event.skipped_crops) == (3, 2, 1)
    assert event.result_count == 0  # lying down, but below the floor without a face to confirm the body
    result = env.poses.latest(env.tenant_id, env.case_id, data.media_id)
    assert result is not None
    alone, two, turned = result.crops
    assert (alone.status, alone.track_id, alone.confidence) == ("posed", None, 0.75)
    assert alone.reason is not None
    assert "no face" in alone.reason
    assert (two.status, two.reason) == (
        "skipped_overlap",
        "two or more bodies and no face to tell them apart",
    )
    assert turned.check("lying_down").holds is True  # type: ignore[union-attr]
    assert result.frames == 3
    (skipped,) = result.skipped
    assert (skipped.frame_id, skipped.reason) == (
        data.frames[2].frame_id,
        "the frame is missing from the object store",
    )

    (again,) = await env.run(env.core(lambda: estimator), data)  # no floor: the finding is stored
    assert isinstance(again, PoseEstimated)
    assert (again.version, again.postures) == (2, {"lying_down": 1})
    (finding,) = env.postures(data.media_id)
    assert finding.track_id is None
    assert finding.crop_confidence == 0.75
    assert "the only body found in the frame" in finding.note


async def test_not_run_without_a_model_or_without_faces(
    env: Env, tmp_path: Path, samples: FaceSamples
) -> None:
    biden = photo(samples, "biden.jpg")
    data = env.detected([(biden, detect_faces(biden))])
    pool = ModelPool.from_settings(
        load_settings(data_dir=tmp_path, models={"pose_estimator": {"backend": "none"}})
    )
    (event,) = await env.run(env.core(lambda: pool.get(PoseEstimator)), data)
    pool.close()
    assert isinstance(event, PoseEstimated)
    assert (event.status, event.result_count, event.model.backend, event.faces_version) == (
        "not_run",
        0,
        "none",
        1,
    )
    assert event.reason is not None
    assert "AIMA_MODELS__POSE_ESTIMATOR__BACKEND=mediapipe" in event.reason
    stored = env.poses.latest(env.tenant_id, env.case_id, data.media_id)
    assert stored is not None
    assert (stored.status, stored.reason) == ("not_run", event.reason)

    no_faces = FacesDetected(
        **data.media_ids(),
        model=ModelInfo.none(),
        result_count=0,
        status="not_run",
        reason="no face model configured",
    )
    (event,) = await env.run(env.core(lambda: pool.get(PoseEstimator)), no_faces)
    assert isinstance(event, PoseEstimated)
    assert event.status == "not_run"
    assert event.reason == "the faces step did not run: no face model configured"
    gone = data.model_copy(update={"version": 7})
    (event,) = await env.run(env.core(lambda: pool.get(PoseEstimator)), gone)
    assert isinstance(event, PoseEstimated)
    assert (event.status, event.reason) == ("not_run", "face result version 7 is missing")


def test_spec() -> None:
    assert (SPEC.name, SPEC.port, SPEC.analysis) == ("pose", 8091, True)
    assert SPEC.consumes == (FacesDetected,)
    assert SPEC.emits == (PoseEstimated,)
    assert "model:pose_estimator" in SPEC.needs
