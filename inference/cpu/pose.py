"""MediaPipe Pose (the legacy solution of ``mediapipe==0.10.21``) as AIMA's `PoseEstimator`.

Only ``pose_landmark_full`` (``model_complexity=1``) ships inside the wheel; the lite and heavy
models would be downloaded on first use, so they are refused: nothing is fetched at run time.
The solution runs in ``static_image_mode`` (every image on its own, no tracking between calls).

One body per call: MediaPipe finds the most prominent person in the image, or in ``crop`` of a
`PoseInput`, and gives its 33 landmarks (``nose`` ... ``right_foot_index``: the lower-cased
``PoseLandmark`` names). Each keypoint is in pixels of the whole upright image (EXIF orientation
applied), with MediaPipe's visibility as its score and its depth ``z`` (relative to the hips'
midpoint, larger is farther from the camera) scaled like ``x``. A `Pose`'s ``box`` spans its
visible keypoints and its ``score`` is the mean visibility of the head, arms and hips.

``max_people`` > 1: after each body, its box (grown by 15 %) is blanked and MediaPipe looks again,
until no body is found or ``max_people`` were: how a caller learns that a crop holds more than one
person. The last decoded image is kept, so several crops of one frame decode it once.

MediaPipe picks its own XNNPACK threads (the legacy solution has no setting for it); calls are
serialised, one graph per model.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any, ClassVar

from inference.cpu.mediapipe_graphs import GRAPHS
from inference.errors import InvalidModelOutput, ModelNotConfigured
from inference.tasks.common import Box, ImageInput
from inference.tasks.vision import Keypoint, Pose, PoseEstimator, PoseInput, Poses

MODEL = "pose_landmark_full"
_MODEL_FILE = Path("modules") / "pose_landmark" / f"{MODEL}.tflite"
_SCORED = (0, 11, 12, 13, 14, 15, 16, 23, 24)
"""Landmarks whose mean visibility is a pose's score: nose, shoulders, elbows, wrists, hips."""
_BOX_VISIBILITY = 0.5
_BLANK_MARGIN = 0.15


class MediaPipePoseEstimator(PoseEstimator):
    """33 body landmarks of the most prominent person in an image or crop (see module docstring)."""

    backend: ClassVar[str] = "mediapipe"
    extra: ClassVar[str] = "vision"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._solution: Any = None
        self._names: list[str] = []
        self._lock = threading.Lock()
        self._cached: tuple[tuple[str, int, int], Any] | None = None

    @property
    def name(self) -> str:
        return self.settings.model or MODEL

    @property
    def version(self) -> str:
        found = importlib.util.find_spec("mediapipe")
        if found is None:
            return ""
        from importlib.metadata import version

        return f"mediapipe {version('mediapipe')} {MODEL}"

    def _check_available(self) -> None:
        if self.name != MODEL:
            raise ModelNotConfigured(
                f"the mediapipe backend runs only {MODEL} (model_complexity=1, bundled in the wheel); "
                f"{self.name!r} would be downloaded"
            )
        found = importlib.util.find_spec("mediapipe")
        if found is None or importlib.util.find_spec("PIL") is None:
            raise ImportError(name="mediapipe" if found is None else "PIL")
        folders = list(found.submodule_search_locations or [])
        if not any((Path(folder) / _MODEL_FILE).is_file() for folder in folders):
            raise ModelNotConfigured(f"the mediapipe wheel has no {_MODEL_FILE}; it will not be downloaded")

    def _load(self) -> None:
        self._check_available()
        from mediapipe.python.solutions import pose

        with GRAPHS:
            self._solution = pose.Pose(
                static_image_mode=True,
                model_complexity=1,
                enable_segmentation=False,
                min_detection_confidence=0.5,
            )
        self._names = [landmark.name.lower() for landmark in pose.PoseLandmark]

    def _unload(self) -> None:
        solution, self._solution = self._solution, None
        self._cached = None
        if solution is not None:
            with GRAPHS:
                solution.close()

    def _predict(self, inputs: ImageInput) -> Poses:
        import numpy as np

        crop = inputs.crop if isinstance(inputs, PoseInput) else None
        most = inputs.max_people if isinstance(inputs, PoseInput) else 1
        with self._lock:
            image = self._image(inputs.path)
            height, width = image.shape[:2]
            x0, y0, x1, y1 = _region(crop, width, height)
            if x1 - x0 < 2 or y1 - y0 < 2:
                return Poses(poses=[])
            region = np.array(image[y0:y1, x0:x1])  # a copy: blanking must not touch the cache
            poses: list[Pose] = []
            while len(poses) < most:
                found = self._solution.process(region).pose_landmarks
                if found is None:
                    break
                pose = self._pose(found.landmark, x0, y0, x1 - x0, y1 - y0, width, height)
                poses.append(pose)
                if len(poses) < most and not _blank(region, pose.box, x0, y0):
                    break
        return Poses(poses=poses)

    def _image(self, path: Path) -> Any:
        """The upright RGB image as a numpy array; the last one is kept for the next crop."""
        import numpy as np

        try:
            stat = path.stat()
        except OSError as exc:
            raise InvalidModelOutput(f"the image cannot be read: {exc}") from exc
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        if self._cached is not None and self._cached[0] == key:
            return self._cached[1]
        from PIL import Image, ImageOps, UnidentifiedImageError

        try:
            with Image.open(path) as opened:
                image = ImageOps.exif_transpose(opened).convert("RGB")
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise InvalidModelOutput(f"the image cannot be read: {type(exc).__name__}: {exc}") from exc
        array = np.asarray(image)
        self._cached = (key, array)
        return array

    def _pose(self, landmarks: Any, x0: int, y0: int, w: int, h: int, width: int, height: int) -> Pose:
        keypoints = [
            Keypoint(
                name=name,
                x=round(x0 + point.x * w, 2),
                y=round(y0 + point.y * h, 2),
                z=round(point.z * w, 2),
                score=round(min(1.0, max(0.0, point.visibility)), 4),
            )
            for name, point in zip(self._names, landmarks, strict=True)
        ]
        seen = [k for k in keypoints if (k.score or 0.0) >= _BOX_VISIBILITY] or keypoints
        left = min(max(0.0, min(k.x for k in seen)), width)
        top = min(max(0.0, min(k.y for k in seen)), height)
        right = min(max(left, max(k.x for k in seen)), width)
        bottom = min(max(top, max(k.y for k in seen)), height)
        score = sum(keypoints[i].score or 0.0 for i in _SCORED) / len(_SCORED)
        box = Box(x=left, y=top, width=right - left, height=bottom - top)
        return Pose(box=box, keypoints=keypoints, score=round(score, 4))


def _region(crop: Box | None, width: int, height: int) -> tuple[int, int, int, int]:
    """The crop in whole pixels, clipped to the image (the whole image without a crop)."""
    if crop is None:
        return 0, 0, width, height
    x0 = min(max(0, round(crop.x)), width)
    y0 = min(max(0, round(crop.y)), height)
    x1 = min(max(x0, round(crop.x + crop.width)), width)
    y1 = min(max(y0, round(crop.y + crop.height)), height)
    return x0, y0, x1, y1


def _blank(region: Any, box: Box | None, x0: int, y0: int) -> bool:
    """Black out ``box`` (image pixels, grown by 15 %) in ``region``; False if nothing is left."""
    if box is None:
        return False
    grow = _BLANK_MARGIN * max(box.width, box.height)
    height, width = region.shape[:2]
    left = max(0, int(box.x - x0 - grow))
    top = max(0, int(box.y - y0 - grow))
    right = min(width, int(box.x - x0 + box.width + grow) + 1)
    bottom = min(height, int(box.y - y0 + box.height + grow) + 1)
    if right <= left or bottom <= top:
        return False
    region[top:bottom, left:right] = 0
    return bool((right - left) * (bottom - top) < width * height)
