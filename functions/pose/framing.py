"""One frame's person crops posed: the crops planned from its faces, the model run on each, the
skeleton matched to its face and read for cues (`functions.pose.core`, step 2 to 4)."""

from __future__ import annotations

from pathlib import Path

from aima.storage.faces import FaceResult
from aima.storage.poses import CropBox, Landmark, PersonCrop
from events.catalogue import FrameRef
from functions.pose.crops import WHOLE_FRAME_CONFIDENCE, Person, Plan, Rect, body_direction, matches, plan
from functions.pose.cues import read_cues
from inference.tasks.common import Box
from inference.tasks.vision import Pose, PoseEstimator, PoseInput

_HEAD = ("nose", "left_eye", "right_eye")
_UNKNOWN = 1e6


class FramePoser:
    """Poses the people of the frames of one face result."""

    def __init__(self, model: PoseEstimator, faces: FaceResult) -> None:
        self._model = model
        self._faces = faces

    def frame(self, path: Path, ref: FrameRef) -> list[PersonCrop]:
        """The frame's crops: one per face on it, or one whole-frame crop without faces."""
        bounds = self._bounds(ref)
        people = [
            (track.id, track.label, Person(track.id, found.box, body_direction(found.landmarks)))
            for track, found in self._faces.faces_on(ref.frame_id)
        ]
        if not people:
            return [self._whole_frame(path, ref)]
        crops: list[PersonCrop] = []
        for track_id, label, person in people:
            others = [other for _, _, other in people if other is not person]
            crops.append(self._person(path, ref, track_id, label, person, plan(person, others, bounds)))
        return crops

    def _bounds(self, ref: FrameRef) -> Rect:
        """The frame; without its size on record, unbounded (the model clips crops to the image)."""
        size = self._faces.frame_sizes.get(ref.frame_id)
        return Rect(0.0, 0.0, float(size[0]), float(size[1])) if size else Rect(0.0, 0.0, _UNKNOWN, _UNKNOWN)

    def _person(
        self, path: Path, ref: FrameRef, track_id: str, label: str, person: Person, made: Plan
    ) -> PersonCrop:
        base = _base(ref, f"{ref.frame_id}-{label}", made)
        base.update(track_id=track_id, face_box=person.face)
        if made.skip:
            reason = f"{made.neighbours} neighbour(s) overlap the crop ({made.overlap:.0%} of a torso inside)"
            return PersonCrop(**base, status="skipped_overlap", reason=reason)
        poses = self._model.predict(PoseInput(path=path, frame_id=ref.frame_id, crop=_box(made.rect))).poses
        if not poses:
            return PersonCrop(**base, status="no_body", reason="the model found no body in the crop")
        pose = poses[0]
        landmarks = _landmarks(pose)
        if not matches(person, _head(landmarks)):
            reason = "the skeleton's head is not at the face the crop was built around: someone else's body"
            return PersonCrop(**base, status="skipped_mismatch", reason=reason, landmarks=landmarks)
        return PersonCrop(
            **base,
            status="posed",
            confidence=made.confidence,
            pose_score=pose.score,
            landmarks=landmarks,
            cues=read_cues({point.name: point for point in landmarks}, facing=True),
        )

    def _whole_frame(self, path: Path, ref: FrameRef) -> PersonCrop:
        base = _base(ref, f"{ref.frame_id}-frame", Plan(self._bounds(ref), False, 0.0, 0))
        poses = self._model.predict(PoseInput(path=path, frame_id=ref.frame_id, max_people=2)).poses
        if not poses:
            return PersonCrop(**base, status="no_body", reason="no face and no body in the frame")
        if len(poses) > 1:
            reason = "two or more bodies and no face to tell them apart"
            return PersonCrop(
                **{**base, "neighbours": 1, "overlap": 1.0}, status="skipped_overlap", reason=reason
            )
        landmarks = _landmarks(poses[0])
        return PersonCrop(
            **base,
            status="posed",
            reason="no face on the frame: nothing confirms the skeleton is one person",
            confidence=WHOLE_FRAME_CONFIDENCE,
            pose_score=poses[0].score,
            landmarks=landmarks,
            cues=read_cues({point.name: point for point in landmarks}),
        )


def _base(ref: FrameRef, crop_id: str, made: Plan) -> dict[str, object]:
    return {
        "id": crop_id,
        "frame_id": ref.frame_id,
        "timestamp_s": ref.timestamp_s,
        "box": _crop_box(made.rect),
        "trimmed": made.trimmed,
        "neighbours": made.neighbours,
        "overlap": made.overlap,
    }


def _landmarks(pose: Pose) -> list[Landmark]:
    return [
        Landmark(name=point.name, x=point.x, y=point.y, z=point.z, visibility=point.score or 0.0)
        for point in pose.keypoints
    ]


def _head(landmarks: list[Landmark]) -> tuple[float, float]:
    points = [point for point in landmarks if point.name in _HEAD] or landmarks[:1]
    return (sum(p.x for p in points) / len(points), sum(p.y for p in points) / len(points))


def _box(rect: Rect) -> Box:
    return Box(
        x=max(0.0, rect.x0),
        y=max(0.0, rect.y0),
        width=max(0.0, rect.x1 - rect.x0),
        height=max(0.0, rect.y1 - rect.y0),
    )


def _crop_box(rect: Rect) -> CropBox:
    box = _box(rect)
    return CropBox(
        x=round(box.x, 1), y=round(box.y, 1), width=round(box.width, 1), height=round(box.height, 1)
    )
