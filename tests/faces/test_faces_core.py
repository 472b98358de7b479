"""The faces step on real stores: tracks across frames, crops, vectors, versions, gaps and not run."""

from __future__ import annotations

import io
from collections.abc import Sequence

import pytest
from PIL import Image, ImageFilter

from aima.samples_faces import FaceSamples, Head, scene, walk
from aima.storage.faces import FACES
from events.catalogue import FacesDetected
from inference.cpu.faces import DlibFaceAnalyzer
from inference.errors import ModelNotConfigured
from inference.tasks.vision import FaceAnalyzer, FaceInput, Faces
from tests.faces.conftest import Env, jpeg


def no_model() -> FaceAnalyzer:
    raise ModelNotConfigured("no face model in this test")


def only(events: Sequence[object]) -> FacesDetected:
    (event,) = events
    assert isinstance(event, FacesDetected)
    return event


def head(pool: list[Head], person: str) -> Head:
    return next(h for h in pool if h.person == person)


@pytest.mark.asyncio
async def test_one_person_across_many_frames_is_one_track_with_one_crop_and_one_vector(
    env: Env, analyzer: DlibFaceAnalyzer, pool: list[Head]
) -> None:
    frames = [jpeg(frame) for frame in walk(head(pool, "biden"), 12)]
    data = env.frames(frames)
    event = only(await env.find(lambda: analyzer, data))
    assert (event.status, event.tracks, event.faces, len(event.frames)) == ("completed", 1, 12, 12)
    assert event.detectors == {"mediapipe": 12}
    result = env.faces.latest(env.tenant_id, env.case_id, data.media_id)
    assert result is not None
    (track,) = result.tracks
    assert (track.label, track.first_s, track.last_s) == ("F1", 0.0, 22.0)
    assert track.crop_key is not None
    crop = Image.open(io.BytesIO(b"".join(env.objects.get(track.crop_key))))
    assert crop.format == "JPEG"
    assert 150 < crop.width < 260  # 1.6 times the face
    assert track.crop_key.startswith(f"cases/{env.case_id}/media/{data.media_id}/crops/")
    assert env.vectors.count(FACES, case_id=env.case_id) == 1
    hits = env.vectors.search(FACES, [1.0] + [0.0] * 127, tenant_id=env.tenant_id, case_id=env.case_id)
    assert [hit.id for hit in hits] == [track.id]


@pytest.mark.asyncio
async def test_two_people_side_by_side_are_two_tracks(
    env: Env, analyzer: DlibFaceAnalyzer, pool: list[Head]
) -> None:
    left, right = walk(head(pool, "obama"), 6), walk(head(pool, "hopper"), 6)
    frames = []
    for a, b in zip(left, right, strict=True):
        canvas = Image.new("RGB", (1280, 720), (118, 124, 130))
        canvas.paste(a.crop((0, 0, 1280, 360)).resize((1280, 360)), (0, 0))
        canvas.paste(b.crop((0, 180, 1280, 540)), (0, 360))
        frames.append(jpeg(canvas))
    event = only(await env.find(lambda: analyzer, env.frames(frames)))
    assert event.tracks == 2
    result = env.faces.latest(env.tenant_id, env.case_id, event.media_id)
    assert result is not None
    assert sorted(len(track.detections) for track in result.tracks) == [6, 6]


@pytest.mark.asyncio
async def test_a_still_image_is_searched_with_the_slow_detector_too(
    env: Env, analyzer: DlibFaceAnalyzer, samples: FaceSamples
) -> None:
    still = samples.photo("obama2.jpg").read_bytes()
    event = only(await env.find(lambda: analyzer, env.frames([still], still=True)))
    assert event.tracks == 1
    assert set(event.detectors) <= {"mediapipe", "cnn"}
    result = env.faces.latest(env.tenant_id, env.case_id, event.media_id)
    assert result is not None
    assert result.frame_sizes[result.tracks[0].detections[0].frame_id] == (626, 1200)


@pytest.mark.asyncio
async def test_a_missing_frame_is_skipped_with_its_reason_and_the_rest_go_on(
    env: Env, analyzer: DlibFaceAnalyzer, pool: list[Head]
) -> None:
    frames: list[bytes | None] = [jpeg(frame) for frame in walk(head(pool, "obama"), 4)]
    frames[1] = None
    frames.append(b"not a picture")
    event = only(await env.find(lambda: analyzer, env.frames(frames)))
    assert (len(event.frames), event.skipped_frames, event.tracks) == (3, 2, 1)
    result = env.faces.latest(env.tenant_id, env.case_id, event.media_id)
    assert result is not None
    reasons = sorted(skip.reason for skip in result.skipped)
    assert reasons[0].startswith("the frame could not be read")
    assert reasons[1] == "the frame is missing from the object store"


@pytest.mark.asyncio
async def test_without_a_model_the_step_records_not_run(env: Env) -> None:
    event = only(await env.find(no_model, env.frames([b"x"])))
    assert (event.status, event.reason, event.tracks) == ("not_run", "no face model in this test", 0)
    result = env.faces.latest(env.tenant_id, env.case_id, event.media_id)
    assert result is not None
    assert result.status == "not_run"


@pytest.mark.asyncio
async def test_a_second_run_is_a_new_version_and_only_its_vectors_stay(
    env: Env, analyzer: DlibFaceAnalyzer, pool: list[Head]
) -> None:
    image, placed = scene(pool, 7, faces=3)
    data = env.frames([jpeg(image)], still=True)
    first = only(await env.find(lambda: analyzer, data))
    second = only(await env.find(lambda: analyzer, data))
    assert (first.version, second.version) == (1, 2)
    assert first.tracks == second.tracks == len(placed)
    assert env.faces.versions(env.tenant_id, env.case_id, data.media_id) == [1, 2]
    result = env.faces.latest(env.tenant_id, env.case_id, data.media_id)
    assert result is not None
    assert all(track.id.startswith(f"{data.media_id}-v2-") for track in result.tracks)
    assert env.vectors.count(FACES, case_id=env.case_id) == len(placed)


@pytest.mark.asyncio
async def test_a_face_blurred_and_compressed_on_one_frame_stays_in_its_track(
    env: Env, analyzer: DlibFaceAnalyzer, pool: list[Head]
) -> None:
    walking = walk(head(pool, "obama"), 5)
    frames = [jpeg(frame) for frame in walking]
    frames[2] = jpeg(walking[2].filter(ImageFilter.GaussianBlur(4)), quality=30)
    event = only(await env.find(lambda: analyzer, env.frames(frames)))
    assert (event.tracks, event.faces) == (1, 5)
    result = env.faces.latest(env.tenant_id, env.case_id, event.media_id)
    assert result is not None
    assert result.tracks[0].best != 2  # the blurred face is not the track's crop


class MissesOneFrame(DlibFaceAnalyzer):
    """The real model, except that its fast pass misses every face on the frame ``missed``."""

    def __init__(self, real: DlibFaceAnalyzer, missed: str) -> None:
        super().__init__(real.settings)
        self.missed = missed
        self.closer_looks: list[str] = []

    def _predict(self, inputs: FaceInput) -> Faces:
        found = super()._predict(inputs)
        if inputs.frame_id == self.missed and inputs.fast:
            return found.model_copy(update={"faces": []})
        if not inputs.fast:
            self.closer_looks.append(inputs.frame_id or "")
        return found


@pytest.mark.asyncio
async def test_a_face_lost_on_one_frame_is_found_by_a_closer_look_and_joins_its_track(
    env: Env, analyzer: DlibFaceAnalyzer, pool: list[Head]
) -> None:
    frames = [jpeg(frame) for frame in walk(head(pool, "biden"), 10)]
    data = env.frames(frames)
    missed = data.frames[4].frame_id
    model = MissesOneFrame(analyzer, missed)
    event = only(await env.find(lambda: model, data))
    assert model.closer_looks == [missed]
    assert (event.tracks, event.faces) == (1, 10)
    result = env.faces.latest(env.tenant_id, env.case_id, data.media_id)
    assert result is not None
    assert [d.frame_id for d in result.tracks[0].detections] == [ref.frame_id for ref in data.frames]
    model.close()
