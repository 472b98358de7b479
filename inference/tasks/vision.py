"""Image tasks: faces, body pose, OCR lines, sensitivity score, and a free-text description."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from aima.model_settings import ModelTask
from inference.base import InferenceModel
from inference.errors import InvalidModelOutput
from inference.tasks.common import IO, Box, Embedder, ImageInput, Point, Score


class Face(IO):
    """A detected face: box, landmarks (e.g. 5 points: eyes, nose, mouth corners), embedding."""

    box: Box
    landmarks: list[Point] = Field(default_factory=list)
    embedding: list[float] | None = None
    score: Score


class Faces(IO):
    faces: list[Face]


class FaceAnalyzer(Embedder[ImageInput, Faces]):
    """Detects faces in an image and embeds each (for clustering into persons within a case)."""

    task: ClassVar[ModelTask] = ModelTask.FACE_ANALYZER
    collection: ClassVar[str] = "faces"
    input_type = ImageInput
    output_type = Faces

    def _check(self, inputs: ImageInput, output: Faces) -> None:
        for i, face in enumerate(output.faces):
            if face.embedding is not None:
                self.check_vector(face.embedding, f"face {i} embedding")


class Keypoint(IO):
    name: str = Field(min_length=1, description="e.g. 'left_shoulder'")
    x: float
    y: float
    score: Score | None = None


class Pose(IO):
    box: Box | None = None
    keypoints: list[Keypoint] = Field(min_length=1)
    score: Score | None = None


class Poses(IO):
    poses: list[Pose]


class PoseEstimator(InferenceModel[ImageInput, Poses]):
    """Body keypoints of the people in an image (or a person crop)."""

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
    """An image to describe; ``prompt`` replaces the backend's default instruction."""

    prompt: str | None = Field(default=None, max_length=4000)


class Label(IO):
    name: str = Field(min_length=1, max_length=200)
    confidence: Score


class VisionDescription(IO):
    """What a vision model saw: a description and labels, each an indicator, never a verdict."""

    text: str
    labels: list[Label] = Field(default_factory=list)


class VisionDescriber(InferenceModel[VisionInput, VisionDescription]):
    task: ClassVar[ModelTask] = ModelTask.VISION_DESCRIBER
    input_type = VisionInput
    output_type = VisionDescription
