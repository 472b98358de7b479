"""MediaPipe Pose from the installed wheel on shipped photographs: 33 named landmarks in pixels of
the whole image, crops, a second body looked for, and nothing downloaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from aima.model_settings import ModelsSettings, ModelTask, PoseEstimatorSettings
from aima.samples_faces import FaceSamples
from inference.cpu.pose import MODEL, MediaPipePoseEstimator
from inference.errors import InvalidModelOutput, ModelNotConfigured
from inference.pool import ModelPool
from inference.registry import REGISTRY
from inference.tasks.common import Box, ImageInput
from inference.tasks.vision import PoseEstimator, PoseInput
from tests.pose.conftest import detect_faces, photo, side_by_side


def test_the_default_settings_make_the_mediapipe_backend() -> None:
    assert REGISTRY.resolve(ModelTask.POSE_ESTIMATOR, "mediapipe") is MediaPipePoseEstimator
    pool = ModelPool(ModelsSettings())
    model = pool.get(PoseEstimator)
    assert isinstance(model, MediaPipePoseEstimator)
    assert (model.name, model.backend) == (MODEL, "mediapipe")
    assert model.health().state == "not_loaded"
    pool.close()


def test_landmarks_of_a_portrait_in_pixels_of_the_image(
    estimator: MediaPipePoseEstimator, samples: FaceSamples
) -> None:
    path = samples.photo("astronaut.png")
    ((box, _),) = detect_faces(photo(samples, "astronaut.png"))
    (pose,) = estimator.predict(ImageInput(path=path)).poses
    names = [point.name for point in pose.keypoints]
    assert len(names) == 33
    assert names[:2] == ["nose", "left_eye_inner"]
    assert names[-1] == "right_foot_index"
    nose = pose.keypoints[0]
    assert box.x <= nose.x <= box.x + box.width
    assert box.y <= nose.y <= box.y + box.height
    assert nose.score is not None
    assert nose.score > 0.9
    assert nose.z is not None
    assert nose.z < 0
    left, right = pose.keypoints[11], pose.keypoints[12]
    assert left.x > right.x  # facing the camera: her left shoulder on the image's right
    assert pose.score is not None
    assert 0 < pose.score <= 1
    assert pose.box is not None
    assert pose.box.x >= 0
    assert estimator.version == f"mediapipe 0.10.21 {MODEL}"


def test_a_crop_sees_one_person_and_keeps_coordinates_of_the_whole_image(
    estimator: MediaPipePoseEstimator, samples: FaceSamples, tmp_path: Path
) -> None:
    biden = photo(samples, "biden.jpg")
    pair = side_by_side(biden, biden)
    path = tmp_path / "pair.png"
    pair.save(path)
    right = Box(x=biden.width, y=0, width=biden.width, height=biden.height)
    (pose,) = estimator.predict(PoseInput(path=path, crop=right)).poses
    faces = detect_faces(pair)
    assert len(faces) == 2
    box = faces[1][0]
    nose = pose.keypoints[0]
    assert box.x <= nose.x <= box.x + box.width  # the right-hand copy's face, in pair pixels
    assert box.y <= nose.y <= box.y + box.height

    both = estimator.predict(PoseInput(path=path, max_people=2)).poses
    assert len(both) == 2
    noses = sorted(pose.keypoints[0].x for pose in both)
    assert noses[0] < biden.width < noses[1]
    alone = estimator.predict(PoseInput(path=samples.photo("biden.jpg"), max_people=2)).poses
    assert len(alone) == 1
    empty = estimator.predict(PoseInput(path=path, crop=Box(x=0, y=0, width=1, height=1))).poses
    assert empty == []


def test_only_the_bundled_model_is_run_and_a_broken_image_is_an_invalid_output(tmp_path: Path) -> None:
    heavy = MediaPipePoseEstimator(PoseEstimatorSettings(model="pose_landmark_heavy", idle_unload_seconds=0))
    health = heavy.health()
    assert health.state == "not_configured"
    assert health.error is not None
    assert "would be downloaded" in health.error
    with pytest.raises(ModelNotConfigured):
        heavy.load()
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    model = MediaPipePoseEstimator(PoseEstimatorSettings(idle_unload_seconds=0))
    with pytest.raises(InvalidModelOutput, match="cannot be read"):
        model.predict(ImageInput(path=broken))
    model.close()
