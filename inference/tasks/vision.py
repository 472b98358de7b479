"""Image tasks: faces, body pose, OCR lines, sensitivity score, and a free-text description."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import ClassVar, Literal

from pydantic import Field, ValidationError

from aima.model_settings import ModelTask
from inference.base import InferenceModel
from inference.errors import InvalidModelOutput, ModelError, ModelNotConfigured
from inference.tasks.common import IO, Box, Embedder, ImageInput, Point, Score


class FaceInput(ImageInput):
    """An image to find faces in. ``fast`` runs the backend's fast detectors over the whole image;
    ``thorough`` (a still image) also its slow, accurate one; ``regions`` are boxes where a face is
    expected (a track's box on the frame before) that the backend looks at closely."""

    fast: bool = True
    thorough: bool = False
    regions: list[Box] = Field(default_factory=list, max_length=64)


class Face(IO):
    """A detected face: box, landmarks (e.g. 5 points: eyes, nose, mouth corners), embedding."""

    box: Box
    landmarks: list[Point] = Field(default_factory=list)
    embedding: list[float] | None = None
    score: Score
    detector: str | None = Field(default=None, description="which detector found it, e.g. 'hog'")
    quality: Score | None = Field(default=None, description="how useful it is to recognise: size, sharpness")


class Faces(IO):
    faces: list[Face]
    width: int | None = Field(default=None, ge=1, description="the upright image's width")
    height: int | None = Field(default=None, ge=1, description="the upright image's height")


class FaceAnalyzer(Embedder[FaceInput, Faces]):
    """Detects faces in an image and embeds each (for clustering into persons within a case)."""

    task: ClassVar[ModelTask] = ModelTask.FACE_ANALYZER
    collection: ClassVar[str] = "faces"
    input_type = FaceInput
    output_type = Faces

    def _check(self, inputs: FaceInput, output: Faces) -> None:
        for i, face in enumerate(output.faces):
            if face.embedding is not None:
                self.check_vector(face.embedding, f"face {i} embedding")


class Keypoint(IO):
    name: str = Field(min_length=1, description="e.g. 'left_shoulder'")
    x: float
    y: float
    score: Score | None = None
    z: float | None = Field(
        default=None,
        description="relative depth in pixels of the image's scale: larger is farther from the camera "
        "(MediaPipe: relative to the hips' midpoint)",
    )


class Pose(IO):
    box: Box | None = None
    keypoints: list[Keypoint] = Field(min_length=1)
    score: Score | None = None


class Poses(IO):
    poses: list[Pose]


class PoseInput(ImageInput):
    """An image for `PoseEstimator`, optionally only a region of it: keypoints stay in pixels of the
    whole image. ``max_people`` > 1 asks a single-person model to look again for further bodies."""

    crop: Box | None = None
    max_people: int = Field(default=1, ge=1, le=8)


class PoseEstimator(InferenceModel[ImageInput, Poses]):
    """Body keypoints of the people in an image (or a person crop: `PoseInput`)."""

    task: ClassVar[ModelTask] = ModelTask.POSE_ESTIMATOR
    input_type = ImageInput
    output_type = Poses

    def _check(self, inputs: ImageInput, output: Poses) -> None:
        for i, pose in enumerate(output.poses):
            names = [k.name for k in pose.keypoints]
            if len(names) != len(set(names)):
                raise InvalidModelOutput(f"pose {i} names a keypoint twice")


class TextLine(IO):
    text: str
    box: Box
    confidence: Score | None = None
    language: str | None = Field(default=None, pattern=r"^[a-z]{2,3}$")


class TextLines(IO):
    lines: list[TextLine]


class OcrReader(InferenceModel[ImageInput, TextLines]):
    """Lines of text visible in an image, each with its box."""

    task: ClassVar[ModelTask] = ModelTask.OCR
    input_type = ImageInput
    output_type = TextLines


class SensitivityScore(IO):
    """How likely the image shows explicit material (so reviewers see it blurred first)."""

    score: Score
    labels: dict[str, Score] = Field(default_factory=dict)


class SensitivityScorer(InferenceModel[ImageInput, SensitivityScore]):
    task: ClassVar[ModelTask] = ModelTask.SENSITIVITY_SCORER
    input_type = ImageInput
    output_type = SensitivityScore


class VisionInput(ImageInput):
    """An image to describe; ``prompt`` replaces the backend's default instruction, ``context`` is
    the case's context prompt (free text from the analyst: what the case is about, what to look
    at), sent with the image as background, never as a fact."""

    prompt: str | None = Field(default=None, max_length=4000)
    context: str | None = Field(default=None, max_length=4000)


class Label(IO):
    name: str = Field(min_length=1, max_length=200)
    confidence: Score


RestraintType = Literal["handcuffs", "cable_ties", "rope", "tape", "gag", "other"]


class PersonSeen(IO):
    """One visible person as the model saw them: clothing and posture, never who they are."""

    clothing: str = Field(max_length=500)
    posture: str = Field(max_length=500, description="e.g. 'sitting on the floor, arms behind the back'")


class RestraintIndicator(IO):
    """Something in the image that may restrain a person: an indicator for review, never a verdict."""

    type: RestraintType
    body_position: str = Field(max_length=500, description="the restrained person's body position")
    confidence: Score
    frame: int = Field(ge=1, description="the number of the image in the request it is seen in (1 = first)")


class DistressCue(IO):
    """A visible cue of distress (e.g. crying, cowering, a covered mouth): an indicator for review."""

    cue: str = Field(min_length=1, max_length=300)
    confidence: Score
    frame: int = Field(ge=1, description="the number of the image in the request it is seen in (1 = first)")


class VisionDescription(IO):
    """What a vision model saw: a description and labels, each an indicator, never a verdict."""

    text: str
    labels: list[Label] = Field(default_factory=list)


class SceneDescription(VisionDescription):
    """The structured description of one image (what `VisionDescriber.describe` returns): besides
    text and labels, the scene, the number of people and each one's clothing and posture, objects,
    restraint indicators and visible distress cues. Each is an indicator for human review, never a
    verdict; a list the model left empty stays empty."""

    scene: str = Field(max_length=1000)
    people_count: int = Field(ge=0, le=1000, description="people visible")
    people: list[PersonSeen]
    objects: list[str]
    restraint_indicators: list[RestraintIndicator]
    distress_cues: list[DistressCue]


Described = SceneDescription | InvalidModelOutput
"""The outcome for one frame of `VisionDescriber.describe`: its description, or why it has none."""


class VisionDescriber(InferenceModel[VisionInput, VisionDescription]):
    """Describes images. `describe` takes many frames and answers each one; a backend that can send
    several images in one request groups them (``max_images_per_request``)."""

    task: ClassVar[ModelTask] = ModelTask.VISION_DESCRIBER
    input_type = VisionInput
    output_type = VisionDescription

    @property
    def max_images_per_request(self) -> int:
        """Images per request (option ``max_images_per_request``, default 1)."""
        value = self.settings.options.get("max_images_per_request", 1)
        if not isinstance(value, int | str) or not str(value).isdigit() or int(value) < 1:
            raise self._tag(
                ModelNotConfigured(
                    f"option max_images_per_request must be a whole number >= 1, not {value!r}"
                )
            )
        return int(value)

    def describe(self, frames: Sequence[VisionInput]) -> list[Described]:
        """Each frame's description, in order, or the `InvalidModelOutput` that says why a frame has
        none (the frame is recorded failed; nothing is filled in). A model that is down or not
        configured raises (`ModelUnavailable`, `ModelNotConfigured`)."""
        outcomes: list[Described] = []
        with self._calling():
            for batch in _batches(frames, self.max_images_per_request):
                try:
                    found = self._describe_batch(batch)
                except InvalidModelOutput as exc:  # the whole request: every frame of it
                    self._tag(exc)
                    found = [exc] * len(batch)
                except ValidationError as exc:  # the backend built an output model from a bad answer
                    invalid = InvalidModelOutput(
                        f"the answer does not match the schema: {exc.errors()[0]['msg']}"
                    )
                    self._tag(invalid)
                    found = [invalid] * len(batch)
                except ModelError as exc:
                    self._tag(exc)
                    raise
                if len(found) != len(batch):
                    raise RuntimeError(f"{type(self).__name__} answered {len(found)} of {len(batch)} frames")
                outcomes.extend(self._checked(frame, item) for frame, item in zip(batch, found, strict=True))
        return outcomes

    def _describe_batch(self, frames: Sequence[VisionInput]) -> list[Described]:
        """One request's frames (sharing prompt and context); by default one `_predict` each, which
        must give the structured `SceneDescription` (a plain description is not filled in)."""
        found: list[Described] = []
        for frame in frames:
            try:
                output = self._predict(frame)
            except InvalidModelOutput as exc:
                found.append(exc)
                continue
            if isinstance(output, SceneDescription):
                found.append(output)
            else:
                found.append(
                    InvalidModelOutput(f"the {self.backend} backend gives no structured description")
                )
        return found

    def _checked(self, frame: VisionInput, item: Described) -> Described:
        if isinstance(item, InvalidModelOutput):
            self._tag(item)
            return item
        try:
            self.check_output(frame, item)
        except InvalidModelOutput as exc:
            return exc
        return item

    def _check(self, inputs: VisionInput, output: VisionDescription) -> None:
        if isinstance(output, SceneDescription) and len(output.people) > output.people_count:
            raise InvalidModelOutput(
                f"describes {len(output.people)} people but counts {output.people_count}"
            )

    @contextmanager
    def _calling(self) -> Iterator[None]:
        """Load the model and count the call in flight, as `predict` does."""
        with self._cond:
            self.load()
            self._in_flight += 1
        try:
            yield
        finally:
            with self._cond:
                self._in_flight -= 1
                self._last_used = time.monotonic()
                self._cond.notify_all()
                self._schedule_idle_unload()


def _batches(frames: Sequence[VisionInput], size: int) -> list[list[VisionInput]]:
    """Consecutive frames, at most ``size`` a batch, a new batch where prompt or context changes."""
    batches: list[list[VisionInput]] = []
    for frame in frames:
        last = batches[-1] if batches else None
        if last and len(last) < size and (last[0].prompt, last[0].context) == (frame.prompt, frame.context):
            last.append(frame)
        else:
            batches.append([frame])
    return batches
