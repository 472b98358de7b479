"""Blurred derivatives: no detail beyond a 24-pixel picture of the colours (no edges, no readable text),
the original's size and orientation, stored under the file's prefix by content, made once, and a grey
stand-in (never the original) for what cannot be decoded."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from aima.model_settings import OcrSettings
from aima.storage.blurred import RECIPE, BlurredImages, blur, blurred_key
from aima.storage.objects_local import LocalObjectStore
from inference.cpu.ocr import TesseractOcr
from inference.tasks.common import ImageInput
from tests.sensitivity.conftest import FONT, jpeg, scene

TEXT = "Harbour gate 7"


def pixels(body: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(body)).convert("RGB"), dtype=np.float32)


def sharpest(body: bytes) -> float:
    """The strongest edge (0..255): a sharp line or corner anywhere in the image scores high."""
    grey = Image.open(io.BytesIO(body)).convert("L").filter(ImageFilter.FIND_EDGES)
    return float(np.asarray(grey, dtype=np.float32)[2:-2, 2:-2].max())


def store(folder: Path) -> LocalObjectStore:
    return LocalObjectStore(folder / "objects", presign_secret=b"s" * 32, public_base_url="http://aima.test")


def test_the_derivative_holds_nothing_but_a_tiny_picture_of_the_colours() -> None:
    original = scene(3, (1280, 720), TEXT)
    blurred = blur(original)
    assert Image.open(io.BytesIO(blurred)).size == (1280, 720)
    assert Image.open(io.BytesIO(blurred)).format == "JPEG"
    assert sharpest(original) > 200
    assert sharpest(blurred) < 16
    # all it holds survives a trip through 32x18 pixels: no detail finer than that is left
    small = Image.open(io.BytesIO(blurred)).resize((32, 18), Image.Resampling.BOX)
    again = small.resize((1280, 720), Image.Resampling.BICUBIC)
    assert float(np.sqrt(((pixels(blurred) - pixels(jpeg(again))) ** 2).mean())) < 4.0
    # and it is far from the original, though its colours stay
    assert float(np.abs(pixels(blurred) - pixels(original)).mean()) > 8.0
    assert np.allclose(pixels(blurred).mean(axis=(0, 1)), pixels(original).mean(axis=(0, 1)), atol=6.0)


def test_text_in_the_original_cannot_be_read_in_the_derivative(tmp_path: Path) -> None:
    reader = TesseractOcr(OcrSettings(idle_unload_seconds=0, options={"min_confidence": 0.0}))
    page = Image.new("RGB", (1280, 720), "white")
    ImageDraw.Draw(page).text((80, 300), TEXT, font=ImageFont.truetype(FONT, 64), fill="black")
    try:
        original = jpeg(page)
        (tmp_path / "original.jpg").write_bytes(original)
        (tmp_path / "blurred.jpg").write_bytes(blur(original))
        read = " ".join(
            line.text for line in reader.predict(ImageInput(path=tmp_path / "original.jpg")).lines
        )
        assert read == TEXT
        assert reader.predict(ImageInput(path=tmp_path / "blurred.jpg")).lines == []
    finally:
        reader.close()


def test_the_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored on its side
    lying = Image.open(io.BytesIO(scene(1, (640, 360)))).transpose(Image.Transpose.ROTATE_90)
    out = io.BytesIO()
    lying.save(out, format="JPEG", exif=exif.tobytes())
    assert Image.open(out).size == (360, 640)
    assert Image.open(io.BytesIO(blur(out.getvalue()))).size == (640, 360)


def test_a_derivative_is_made_once_under_the_file_prefix_by_content(tmp_path: Path) -> None:
    objects = store(tmp_path)
    key = "cases/c1/media/m1/frames/0000001000.jpg"
    objects.put(key, io.BytesIO(scene(2)), content_type="image/jpeg")
    images = BlurredImages(objects)
    made = images.blurred("c1", "m1", key)
    sha256 = objects.stat(key).sha256
    assert sha256 is not None
    cached = blurred_key("c1", "m1", sha256)
    assert cached == f"cases/c1/media/m1/blurred/{RECIPE}-{sha256}.jpg"
    assert b"".join(objects.get(cached)) == made
    assert [info.key for info in objects.list("cases/c1/media/m1/blurred/")] == [cached]

    marker = blur(scene(5))  # served from the store from now on: the stored bytes come back
    objects.put(cached, io.BytesIO(marker), content_type="image/jpeg")
    assert images.blurred("c1", "m1", key) == marker

    objects.put(key, io.BytesIO(scene(4)), content_type="image/jpeg")  # the original changed
    assert images.blurred("c1", "m1", key) != marker
    assert len(list(objects.list("cases/c1/media/m1/blurred/"))) == 2


def test_an_undecodable_original_gets_a_grey_stand_in(tmp_path: Path) -> None:
    objects = store(tmp_path)
    key = "cases/c1/media/m1/crops/f1/face-0.jpg"
    objects.put(key, io.BytesIO(b"\xff\xd8 not an image"), content_type="image/jpeg")
    body = BlurredImages(objects).blurred("c1", "m1", key)
    grey = pixels(body)
    assert grey.std() < 1.0
    assert abs(float(grey.mean()) - 128) < 2
    assert list(objects.list("cases/c1/media/m1/blurred/")) == []  # not kept
