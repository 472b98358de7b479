"""What Tesseract is given: a frame as the probe writes it (JPEG, RGB, upright) as its file, anything
that needs turning or converting decoded first, and the same lines either way."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from inference.cpu.ocr import TesseractOcr, parse_hocr, tesseract_input, upright
from inference.errors import InvalidModelOutput
from inference.tasks.common import ImageInput
from tests.ocr.conftest import ENGLISH, GERMAN, draw, png


def test_a_probe_frame_is_handed_over_as_its_file(tmp_path: Path) -> None:
    path = tmp_path / "frame-0"  # the OCR step's name for a downloaded frame: no extension
    path.write_bytes(png(draw([(20, 30, ENGLISH)]), format="JPEG", quality=90))
    assert tesseract_input(path) == str(path)
    grey = tmp_path / "grey.png"
    grey.write_bytes(png(draw([(20, 30, ENGLISH)]).convert("L")))
    assert tesseract_input(grey) == str(grey)


def test_what_needs_turning_or_converting_is_decoded_first(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    turned = tmp_path / "turned.jpg"
    lying = draw([(20, 30, ENGLISH)], size=(700, 100)).transpose(Image.Transpose.ROTATE_90)
    turned.write_bytes(png(lying, format="JPEG", exif=exif.tobytes()))
    image = tesseract_input(turned)
    assert isinstance(image, Image.Image)
    assert image.size == (700, 100)
    palette = tmp_path / "palette.png"
    palette.write_bytes(png(draw([(20, 30, ENGLISH)]).convert("P")))
    assert isinstance(tesseract_input(palette), Image.Image)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    with pytest.raises(InvalidModelOutput, match="cannot be read"):
        tesseract_input(broken)


def test_the_file_and_the_decoded_image_read_the_same_lines(reader: TesseractOcr, tmp_path: Path) -> None:
    import pytesseract

    path = tmp_path / "sign.jpg"
    path.write_bytes(png(draw([(20, 30, ENGLISH), (20, 120, GERMAN)]), format="JPEG", quality=92))
    assert reader.predict(ImageInput(path=path)).lines  # loads the model
    config = "--psm 3"
    as_file = parse_hocr(
        pytesseract.image_to_pdf_or_hocr(str(path), lang="eng+deu", extension="hocr", config=config)
    )
    decoded = parse_hocr(
        pytesseract.image_to_pdf_or_hocr(upright(path), lang="eng+deu", extension="hocr", config=config)
    )
    assert [(line.text, line.box, line.language) for line in as_file] == [
        (line.text, line.box, line.language) for line in decoded
    ]
    assert len(as_file) == 2
