"""One task class per model task, with typed pydantic inputs and outputs.

A task class is the protocol the function steps code against (``predict``/``apredict`` of its
input and output types, ``health``, ``unload``; embedders also ``dimension``); a backend is a
subclass that sets ``backend`` and implements ``_load`` and ``_predict``.
"""

from __future__ import annotations

from typing import Any

from aima.model_settings import ModelTask
from inference.base import InferenceModel
from inference.tasks.common import IO, AudioInput, Box, Embedder, ImageInput, Point, Score, TimeSpan
from inference.tasks.speech import (
    SpeechDetector,
    SpeechRegions,
    Transcriber,
    Transcript,
    TranscriptionInput,
    TranscriptSegment,
    VoiceEmbedder,
    VoiceEmbedding,
    VoiceEmbeddings,
    VoiceInput,
    Word,
)
from inference.tasks.text import (
    DraftStatement,
    DroppedStatement,
    Fact,
    Narrative,
    NarrativeDraft,
    NarrativeInput,
    Narrator,
    Statement,
    TextEmbedder,
    TextEmbeddings,
    TextsInput,
    sift_narrative,
)
from inference.tasks.vision import (
    Face,
    FaceAnalyzer,
    FaceInput,
    Faces,
    Keypoint,
    Label,
    OcrReader,
    Pose,
    PoseEstimator,
    Poses,
    SensitivityScore,
    SensitivityScorer,
    TextLine,
    TextLines,
    VisionDescriber,
    VisionDescription,
    VisionInput,
)

TASK_CLASSES: dict[ModelTask, type[InferenceModel[Any, Any]]] = {
    ModelTask.SPEECH_DETECTOR: SpeechDetector,
    ModelTask.TRANSCRIBER: Transcriber,
    ModelTask.VOICE_EMBEDDER: VoiceEmbedder,
    ModelTask.FACE_ANALYZER: FaceAnalyzer,
    ModelTask.POSE_ESTIMATOR: PoseEstimator,
    ModelTask.OCR: OcrReader,
    ModelTask.SENSITIVITY_SCORER: SensitivityScorer,
    ModelTask.VISION_DESCRIBER: VisionDescriber,
    ModelTask.TEXT_EMBEDDER: TextEmbedder,
    ModelTask.NARRATOR: Narrator,
}
"""The task class every backend of a task must subclass."""

__all__ = [
    "IO",
    "TASK_CLASSES",
    "AudioInput",
    "Box",
    "DraftStatement",
    "DroppedStatement",
    "Embedder",
    "Face",
    "FaceAnalyzer",
    "FaceInput",
    "Faces",
    "Fact",
    "ImageInput",
    "Keypoint",
    "Label",
    "Narrative",
    "NarrativeDraft",
    "NarrativeInput",
    "Narrator",
    "OcrReader",
    "Point",
    "Pose",
    "PoseEstimator",
    "Poses",
    "Score",
    "SensitivityScore",
    "SensitivityScorer",
    "SpeechDetector",
    "SpeechRegions",
    "Statement",
    "TextEmbedder",
    "TextEmbeddings",
    "TextLine",
    "TextLines",
    "TextsInput",
    "TimeSpan",
    "Transcriber",
    "Transcript",
    "TranscriptSegment",
    "TranscriptionInput",
    "VisionDescriber",
    "VisionDescription",
    "VisionInput",
    "VoiceEmbedder",
    "VoiceEmbedding",
    "VoiceEmbeddings",
    "VoiceInput",
    "Word",
    "sift_narrative",
]
