"""insightface as an optional face backend, for users who bring its model packs.

insightface's model packs (``buffalo_l`` and others) are for non-commercial research use and are
not redistributable, so none ships with AIMA and nothing is downloaded: the pack must already lie
in ``<root>/models/<name>/`` (``root`` from the option ``root``, else ``$AIMA_MODEL_DIR/insightface``,
else ``~/.insightface``). Select it with::

    AIMA_MODELS__FACE_ANALYZER__BACKEND=insightface
    AIMA_MODELS__FACE_ANALYZER__MODEL=buffalo_l
    AIMA_MODELS__FACE_ANALYZER__DIMENSION=512

and install ``insightface`` and ``onnxruntime`` yourself. Its detector (SCRFD) gives five landmarks
and its recognition model a normalised 512-d vector; the case's ``faces`` collection takes the
model's dimension (`inference.vectors`), so switching backends needs a new collection (re-analysis).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

from inference.cpu.images import load_upright
from inference.errors import InvalidModelOutput, ModelNotConfigured
from inference.tasks.common import Box, Point
from inference.tasks.vision import Face, FaceAnalyzer, FaceInput, Faces

DETECTION_SIZE = 640


def pack_root(options: dict[str, Any]) -> Path:
    """Where the model packs lie (see module docstring)."""
    if options.get("root"):
        return Path(str(options["root"])).expanduser()
    if os.environ.get("AIMA_MODEL_DIR"):
        return Path(os.environ["AIMA_MODEL_DIR"]) / "insightface"
    return Path.home() / ".insightface"


class InsightFaceAnalyzer(FaceAnalyzer):
    """insightface's ``FaceAnalysis`` on the CPU with a pack the user installed."""

    backend: ClassVar[str] = "insightface"
    extra: ClassVar[str] = "insightface"
    native_dimension: ClassVar[int | None] = None

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self._app: Any = None

    @property
    def pack(self) -> Path:
        return pack_root(self.settings.options) / "models" / (self.settings.model or "buffalo_l")

    def _check_available(self) -> None:
        if not self.pack.is_dir():
            raise ModelNotConfigured(
                f"the insightface pack {self.pack} is not there (it is not redistributable and is never "
                "downloaded: install it yourself)"
            )

    def _load(self) -> None:
        self._check_available()
        from insightface.app import FaceAnalysis

        app = FaceAnalysis(
            name=self.settings.model or "buffalo_l",
            root=str(pack_root(self.settings.options)),
            allowed_modules=["detection", "recognition"],
            providers=["CPUExecutionProvider"],
        )
        app.prepare(ctx_id=-1, det_size=(DETECTION_SIZE, DETECTION_SIZE))
        self._app = app
        recognition = app.models.get("recognition")
        if recognition is not None:
            self.check_dimension(int(recognition.output_shape[1]))

    def _unload(self) -> None:
        self._app = None

    def _predict(self, inputs: FaceInput) -> Faces:
        try:
            image = load_upright(inputs.path)
        except (OSError, ValueError) as exc:
            raise InvalidModelOutput(f"the image cannot be read: {exc}") from exc
        height, width = image.shape[:2]
        faces = []
        for found in self._app.get(image[:, :, ::-1].copy()):  # insightface reads BGR
            x0, y0, x1, y1 = (float(v) for v in found.bbox)
            x0, y0 = max(0.0, x0), max(0.0, y0)
            x1, y1 = min(float(width), x1), min(float(height), y1)
            faces.append(
                Face(
                    box=Box(x=x0, y=y0, width=max(0.0, x1 - x0), height=max(0.0, y1 - y0)),
                    landmarks=[Point(x=float(x), y=float(y)) for x, y in found.kps],
                    embedding=[float(v) for v in found.normed_embedding],
                    score=min(1.0, max(0.0, float(found.det_score))),
                    detector="insightface",
                    quality=min(1.0, max(0.0, float(found.det_score))),
                )
            )
        return Faces(faces=faces, width=width, height=height)
