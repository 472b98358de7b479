"""Tesseract 5 (Debian's ``tesseract-ocr`` with ``-eng`` and ``-deu``) as AIMA's `OcrReader`.

One call per image, through pytesseract, with every configured language loaded at once
(``eng+deu``): Tesseract reads each word with its first language and tries the others where that
one is unsure, keeping the better reading. Its hOCR output names the language that read each word;
a line's language is the one that read most of its characters (``eng`` → ``en``, ``deu`` → ``de``).
So the language of a line is chosen by which model reads it with the higher confidence, at the cost
of one call, not one per language.

* The EXIF orientation is applied first; boxes are in pixels of the upright image. A JPEG or PNG
  that needs no turning (every frame the probe writes) is handed to Tesseract as the file, which
  saves decoding it and encoding it again (about 10 % of a 1280x720 frame's time).
* A line's confidence is the mean of its words' confidences (``x_wconf``, 0..100, over 100).
  Lines below ``min_confidence`` and lines with no letter or digit are dropped (noise, textures).
* ``threads`` becomes ``OMP_THREAD_LIMIT`` of the tesseract process (default 1).

Options (``AIMA_MODELS__OCR__OPTIONS``): ``languages`` (``"eng+deu"``), ``psm`` (3: automatic page
segmentation), ``min_confidence`` (0.4).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

from inference.errors import InvalidModelOutput, ModelNotConfigured
from inference.tasks.common import Box, ImageInput
from inference.tasks.vision import OcrReader, TextLine, TextLines

DEFAULT_LANGUAGES = "eng+deu"
DEFAULT_PSM = 3
DEFAULT_MIN_CONFIDENCE = 0.4
ISO = {"eng": "en", "deu": "de", "fra": "fr", "spa": "es", "ita": "it", "nld": "nl", "por": "pt"}
"""Tesseract's language codes as the two-letter codes the rest of AIMA uses."""
_BBOX = re.compile(r"bbox (\d+) (\d+) (\d+) (\d+)")
_WCONF = re.compile(r"x_wconf (\d+(?:\.\d+)?)")
_TEXT = re.compile(r"\w", re.UNICODE)
DIRECT_FORMATS = frozenset({"JPEG", "PNG"})
"""Formats handed to Tesseract as files when nothing needs turning (`tesseract_input`)."""
_ORIENTATION = 0x0112


class TesseractOcr(OcrReader):
    """Lines of text in an image, each with its box, confidence and language, from Tesseract 5."""

    backend: ClassVar[str] = "tesseract"
    extra: ClassVar[str] = "ocr"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._version = ""

    @property
    def name(self) -> str:
        return self.settings.model or f"tesseract-{self.languages}"

    @property
    def version(self) -> str:
        return self._version or self._binary_version()

    @property
    def languages(self) -> str:
        return str(self.settings.options.get("languages", DEFAULT_LANGUAGES))

    @property
    def min_confidence(self) -> float:
        return float(self.settings.options.get("min_confidence", DEFAULT_MIN_CONFIDENCE))

    def _check_available(self) -> None:
        import importlib.util

        if importlib.util.find_spec("pytesseract") is None or importlib.util.find_spec("PIL") is None:
            raise ImportError(name="pytesseract")
        if shutil.which("tesseract") is None:
            raise ModelNotConfigured(
                "the tesseract binary is not installed (Debian: tesseract-ocr tesseract-ocr-eng "
                "tesseract-ocr-deu; scripts/ensure-tools.sh)"
            )

    def _load(self) -> None:
        self._check_available()
        import pytesseract

        installed = set(pytesseract.get_languages(config=""))
        missing = [lang for lang in self.languages.split("+") if lang not in installed]
        if missing:
            raise ModelNotConfigured(
                f"tesseract has no {'+'.join(missing)} model installed (Debian: tesseract-ocr-<lang>)"
            )
        # pytesseract starts tesseract with this process's environment: one OpenMP thread pool each
        os.environ["OMP_THREAD_LIMIT"] = str(max(1, self.threads))
        self._version = f"tesseract {pytesseract.get_tesseract_version()} ({self.languages})"

    def _predict(self, inputs: ImageInput) -> TextLines:
        import pytesseract

        image = tesseract_input(inputs.path)
        config = f"--psm {int(self.settings.options.get('psm', DEFAULT_PSM))}"
        try:
            hocr = pytesseract.image_to_pdf_or_hocr(
                image, lang=self.languages, extension="hocr", config=config
            )
        except pytesseract.TesseractError as exc:
            raise InvalidModelOutput(f"tesseract failed: {exc}") from exc
        return TextLines(lines=[line for line in parse_hocr(hocr) if self._keep(line)])

    def _keep(self, line: TextLine) -> bool:
        return bool(_TEXT.search(line.text)) and (line.confidence or 0.0) >= self.min_confidence

    def _binary_version(self) -> str:
        binary = shutil.which("tesseract")
        if binary is None:
            return ""
        try:
            out = subprocess.run(
                [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return ""
        first = (out.stdout or out.stderr).splitlines()
        return f"{first[0].strip()} ({self.languages})" if first else ""


def tesseract_input(path: Path) -> Any:
    """What Tesseract is given: the file itself (its path) when it is a JPEG or PNG in RGB or grey
    that its EXIF orientation does not turn, so Tesseract decodes it once and nothing is encoded
    again (a frame from the probe always is); any other image decoded upright (`upright`)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            as_is = (
                opened.format in DIRECT_FORMATS
                and opened.mode in ("RGB", "L")
                and opened.getexif().get(_ORIENTATION, 1) == 1
            )
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InvalidModelOutput(f"the image cannot be read: {type(exc).__name__}: {exc}") from exc
    return str(path) if as_is else upright(path)


def upright(path: Path) -> Any:
    """The image at ``path`` with its EXIF orientation applied, as RGB or greyscale (PIL)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened)
            image.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InvalidModelOutput(f"the image cannot be read: {type(exc).__name__}: {exc}") from exc
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    return image


def parse_hocr(hocr: bytes | str) -> list[TextLine]:
    """The lines of Tesseract's hOCR: text, box, mean word confidence and the majority language."""
    # tesseract wrote this XML (the image only yields escaped text), no entities or DTD are read
    root = ET.fromstring(hocr.encode() if isinstance(hocr, str) else hocr)  # noqa: S314
    lines: list[TextLine] = []
    for par in root.iter():
        if _class(par) != "ocr_par":
            continue
        par_lang = par.get("lang")
        for line in par.iter():
            if _class(line) not in ("ocr_line", "ocr_caption", "ocr_header", "ocr_textfloat"):
                continue
            words: list[str] = []
            confidences: list[float] = []
            langs: Counter[str] = Counter()
            for word in line.iter():
                if _class(word) != "ocrx_word":
                    continue
                text = "".join(word.itertext()).strip()
                if not text:
                    continue
                words.append(text)
                conf = _WCONF.search(word.get("title", ""))
                confidences.append(float(conf.group(1)) / 100 if conf else 0.0)
                lang = word.get("lang") or par_lang
                if lang:
                    langs[lang] += len(text)
            box = _BBOX.search(line.get("title", ""))
            if not words or box is None:
                continue
            x0, y0, x1, y1 = (int(v) for v in box.groups())
            language = _iso(langs.most_common(1)[0][0]) if langs else None
            lines.append(
                TextLine(
                    text=" ".join(words),
                    box=Box(x=x0, y=y0, width=max(0, x1 - x0), height=max(0, y1 - y0)),
                    confidence=round(min(1.0, max(0.0, sum(confidences) / len(confidences))), 4),
                    language=language,
                )
            )
    return lines


def _iso(code: str) -> str | None:
    found = ISO.get(code, code)
    return found if re.fullmatch(r"[a-z]{2,3}", found) else None


def _class(element: ET.Element) -> str:
    return element.get("class", "")
