"""Vision restraint indicators read with the pose of the same frame: corroborated with a combined
confidence and both as evidence, disagreement kept, idempotent and independent of the order in
which the vision and pose steps finish."""

from __future__ import annotations

import uuid

import pytest

from aima.domain import EvidenceRef, ModelRef, Step
from aima.samples_faces import FaceSamples
from aima.storage.corroboration import CAP, corroborate, expected_cues, stored_corroborations
from events.catalogue import FacesDetected
from functions.vision.core import VisionFinding
from inference.cpu.pose import MediaPipePoseEstimator
from inference.tasks.vision import RestraintType
from tests.pose.conftest import Env, detect_faces, photo, turn

VISION_MODEL = ModelRef(name="llava", version="1.6", backend="openai")


def restraint(
    env: Env,
    data: FacesDetected,
    frame: int,
    *,
    kind: RestraintType = "rope",
    position: str | None,
    confidence: float,
    run: str = "vision-run-1",
) -> VisionFinding:
    """A restraint indicator as the vision core stores it (`functions.vision.core.VisionCore`)."""
    ref = data.frames[frame]
    return VisionFinding(
        id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{run}/{data.media_id}/{ref.frame_id}/restraint/0")),
        tenant_id=env.tenant_id,
        case_id=env.case_id,
        step=Step.VISION,
        model=VISION_MODEL,
        evidence=[
            EvidenceRef(
                media_id=data.media_id, start_s=ref.timestamp_s, end_s=ref.timestamp_s, frame_id=ref.frame_id
            )
        ],
        media_id=data.media_id,
        frame_id=ref.frame_id,
        timestamp_s=ref.timestamp_s,
        vision_version=1,
        kind="restraint",
        restraint_type=kind,
        body_position=position,
        scene="a room",
        context_given=False,
        label=f"possible restraint indicator: {kind}",
        confidence=confidence,
        note="An indicator for human review, not a finding of fact.",
    )


def store_vision(
    env: Env, data: FacesDetected, findings: list[VisionFinding], run: str = "vision-run-1"
) -> None:
    env.findings.replace_media(env.tenant_id, env.case_id, data.media_id, Step.VISION, findings, run=run)


@pytest.fixture
def frames(env: Env, samples: FaceSamples) -> FacesDetected:
    """Frame 0: a person lying down (the astronaut turned); frame 1: a person standing with crossed
    arms (Biden); frame 2: a face whose crop is skipped for a neighbour in front of it."""
    upright = photo(samples, "astronaut.png")
    lying = upright.rotate(90, expand=True)
    biden = photo(samples, "biden.jpg")
    ((face, points),) = detect_faces(biden)
    in_front = face.model_copy(update={"y": face.y + 2.2 * face.height})
    return env.detected(
        [
            (lying, [turn(found, upright.size) for found in detect_faces(upright)]),
            (biden, [(face, points)]),
            (biden, [(face, points), (in_front, [])]),
        ]
    )


async def test_a_restraint_with_a_matching_posture_is_corroborated_with_both_as_evidence(
    env: Env, estimator: MediaPipePoseEstimator, frames: FacesDetected
) -> None:
    vision = restraint(env, frames, 0, position="lying on the floor, wrists tied", confidence=0.6)
    store_vision(env, frames, [vision])
    await env.run(env.core(lambda: estimator), frames)  # the pose step finishes second

    (found,) = stored_corroborations(env.documents, env.tenant_id, env.case_id, frames.media_id)
    (posture,) = env.postures(frames.media_id)
    assert found.kind == "corroborated"
    assert found.step == Step.POSE
    assert found.expected_cues == ["wrists_together", "lying_down"]
    assert (found.cue, found.posture_finding_id, found.crop_ids) == (
        "lying_down",
        posture.id,
        [posture.crop_id],
    )
    assert (found.vision_finding_id, found.vision_confidence) == (vision.id, 0.6)
    b = posture.confidence
    assert found.posture_confidence == b
    assert found.confidence == pytest.approx(1 - (1 - 0.6) * (1 - b), abs=1e-3)
    assert found.confidence > max(0.6, b)
    assert found.evidence == vision.evidence
    assert (found.frame_id, found.timestamp_s, found.pose_version) == (frames.frames[0].frame_id, 0.0, 1)
    assert "rope" in found.label
    assert "lying down" in found.label
    assert "not a finding of fact" in found.note
    # the vision and posture findings themselves stay as they were
    assert [
        f.id for f in env.findings.list(env.tenant_id, env.case_id, step=Step.VISION, model=VisionFinding)
    ] == [vision.id]

    # the vision step runs the same call afterwards: nothing changes
    again = corroborate(env.documents, env.tenant_id, env.case_id, frames.media_id)
    assert (again.corroborated, again.disagreements, again.rounds) == (1, 0, 1)
    assert stored_corroborations(env.documents, env.tenant_id, env.case_id, frames.media_id) == [found]


async def test_a_restraint_whose_posture_pose_clearly_does_not_show_is_kept_as_a_disagreement(
    env: Env, estimator: MediaPipePoseEstimator, frames: FacesDetected
) -> None:
    await env.run(env.core(lambda: estimator), frames)  # the pose step finishes first
    behind = restraint(
        env, frames, 1, kind="handcuffs", position="hands cuffed behind the back", confidence=0.7
    )
    unclear = restraint(env, frames, 2, kind="handcuffs", position="hands behind the back", confidence=0.8)
    store_vision(env, frames, [behind, unclear])
    assert stored_corroborations(env.documents, env.tenant_id, env.case_id, frames.media_id) == []

    done = corroborate(
        env.documents, env.tenant_id, env.case_id, frames.media_id
    )  # as the vision step calls it
    assert (done.corroborated, done.disagreements) == (0, 1)
    (found,) = stored_corroborations(env.documents, env.tenant_id, env.case_id, frames.media_id)
    assert found.kind == "disagreement"
    assert found.vision_finding_id == behind.id
    assert found.confidence == 0.7  # the indicator stands for review, neither raised nor lowered
    assert found.expected_cues == ["hands_behind_back"]
    result = env.poses.latest(env.tenant_id, env.case_id, frames.media_id)
    assert result is not None
    assert found.crop_ids == [crop.id for crop in result.crops_on(frames.frames[1].frame_id)]
    assert found.cue is None
    assert found.posture_finding_id is None
    assert "disagree" in found.label
    assert "Both are kept for human review" in found.note
    # frame 2's crops were skipped for the neighbour: pose cannot tell, so no disagreement there
    assert all(f.frame_id != frames.frames[2].frame_id for f in [found])

    # a pose re-run replaces its findings and writes the same corroboration again
    await env.run(env.core(lambda: estimator), frames)
    (rerun,) = stored_corroborations(env.documents, env.tenant_id, env.case_id, frames.media_id)
    assert (rerun.id, rerun.kind, rerun.pose_version) == (found.id, "disagreement", 2)

    # the vision step runs again and no longer reports the restraint: the disagreement goes with it
    store_vision(env, frames, [], run="vision-run-2")
    assert corroborate(env.documents, env.tenant_id, env.case_id, frames.media_id).disagreements == 0
    assert stored_corroborations(env.documents, env.tenant_id, env.case_id, frames.media_id) == []


async def test_a_posture_below_the_floor_still_corroborates(
    env: Env, estimator: MediaPipePoseEstimator, frames: FacesDetected
) -> None:
    store_vision(env, frames, [restraint(env, frames, 0, position=None, confidence=0.5, kind="tape")])
    await env.run(env.core(lambda: estimator, floor=0.99), frames)
    assert env.postures(frames.media_id) == []
    # "tape" without a body position expects the restraint postures, and lying down is none of them
    assert stored_corroborations(env.documents, env.tenant_id, env.case_id, frames.media_id) == []

    store_vision(
        env, frames, [restraint(env, frames, 0, position="lying on the ground", confidence=0.5)], run="v2"
    )
    corroborate(env.documents, env.tenant_id, env.case_id, frames.media_id)
    (found,) = stored_corroborations(env.documents, env.tenant_id, env.case_id, frames.media_id)
    assert (found.kind, found.cue, found.posture_finding_id) == ("corroborated", "lying_down", None)
    assert 0.5 < found.confidence <= CAP


def test_the_postures_a_body_position_names() -> None:
    assert expected_cues("handcuffs", "hands cuffed behind the back") == ["hands_behind_back"]
    assert expected_cues("cable_ties", "wrists bound in front") == ["wrists_together"]
    assert expected_cues("rope", "arms tied above the head") == ["arms_raised"]
    assert expected_cues("rope", "lying face down on the floor") == ["lying_down"]
    assert expected_cues("tape", "sitting on a chair") == [
        "wrists_together",
        "hands_behind_back",
        "arms_raised",
    ]
    assert expected_cues("handcuffs", None) == ["wrists_together", "hands_behind_back", "arms_raised"]
    assert expected_cues("gag", "sitting") == []
    assert expected_cues("gag", "lying on the floor") == ["lying_down"]
    assert expected_cues("rope", "tied up, sitting") == [
        "wrists_together",
        "hands_behind_back",
        "arms_raised",
    ]
    assert expected_cues("rope", "hands up against the wall") == ["arms_raised"]
