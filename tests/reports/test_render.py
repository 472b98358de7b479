"""The report opened as a person would: the HTML in headless Chromium (a screenshot, and the DOM it
built), the PDF through poppler (pdftoppm pages, pdftotext text). Chromium and poppler-utils come from
Debian (`scripts/ensure-tools.sh`); a missing tool fails the test rather than skipping it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageStat

from aima.reports.html import BANNER
from aima.reports.model import CaseReport
from tests.reports import sample
from tests.reports.conftest import Exported

WIDTH, HEIGHT = 1280, 4000


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed: run bash scripts/ensure-tools.sh"
    return path


def chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            tool("chromium"),
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-extensions",
            f"--user-data-dir={profile}",
            *args,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def squashed(text: str) -> str:
    """Text without any whitespace: line breaks in table cells then do not matter."""
    return re.sub(r"\s+", "", text)


def busy(image: Image.Image) -> bool:
    """Whether a region has something drawn in it (not one flat colour)."""
    return max(ImageStat.Stat(image.convert("L")).stddev) > 8


def has_colour(image: Image.Image, colour: tuple[int, int, int], tolerance: int = 12) -> bool:
    """Whether some pixel is within ``tolerance`` of ``colour`` in each channel."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    return bool((np.abs(pixels - np.array(colour, dtype=np.int16)) <= tolerance).all(axis=2).any())


@pytest.fixture(scope="module")
def screenshot(exported: Exported, tmp_path_factory: pytest.TempPathFactory) -> Image.Image:
    folder = tmp_path_factory.mktemp("chromium")
    target = folder / "report.png"
    chromium(
        exported.folder / "report.html",
        folder / "profile",
        f"--screenshot={target}",
        f"--window-size={WIDTH},{HEIGHT}",
    )
    image = Image.open(target)
    image.load()
    return image


def test_chromium_draws_the_page_with_its_pictures(screenshot: Image.Image) -> None:
    assert screenshot.size == (WIDTH, HEIGHT)
    bands = [screenshot.crop((0, top, WIDTH, top + 400)) for top in range(0, HEIGHT, 400)]
    assert all(busy(band) for band in bands), [i for i, band in enumerate(bands) if not busy(band)]
    assert busy(screenshot.crop((0, 0, WIDTH, 120))), "the header is drawn"
    # the thumbnail and the crop arrive as data: URIs, allowed by the page's own policy
    assert has_colour(screenshot, (70, 130, 180)), "the video's thumbnail is drawn"
    assert has_colour(screenshot, (200, 120, 90)), "Anna Meier's crop is drawn"


def test_chromium_builds_the_timeline_and_the_persons(
    exported: Exported, report: CaseReport, tmp_path: Path
) -> None:
    dom = chromium(exported.folder / "report.html", tmp_path / "profile", "--dump-dom").stdout
    assert '<section id="timeline">' in dom
    assert '<section id="persons">' in dom
    for entry in report.timeline:
        assert f'<tr id="{entry.id}"' in dom
    for person in report.persons:
        assert f'<article class="person" id="{person.id}">' in dom
        assert person.name in dom
    assert "<script" not in dom.lower()
    assert BANNER in dom


def test_the_pdf_has_pages_that_show_the_timeline_and_the_persons(
    exported: Exported, report: CaseReport, tmp_path: Path
) -> None:
    pdf = exported.folder / "report.pdf"
    assert pdf.read_bytes().startswith(b"%PDF-")
    info = subprocess.run([tool("pdfinfo"), str(pdf)], capture_output=True, text=True, check=True).stdout
    counted = re.search(r"^Pages:\s+(\d+)", info, re.MULTILINE)
    assert counted, info
    pages = int(counted.group(1))
    assert pages >= 2
    assert "A4" in info

    subprocess.run([tool("pdftoppm"), "-png", "-r", "60", str(pdf), str(tmp_path / "page")], check=True)
    images = sorted(tmp_path.glob("page-*.png"))
    assert len(images) == pages
    for path in images:
        with Image.open(path) as page:
            assert busy(page), f"{path.name} is blank"
    with Image.open(images[0]) as first:
        assert busy(first.crop((0, 0, first.width, first.height // 3))), "the header is drawn"

    text = subprocess.run(
        [tool("pdftotext"), "-enc", "UTF-8", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    flat = squashed(text)
    for heading in ("Timeline", "Persons", "Indicators for review", "Chain of custody"):
        assert squashed(heading) in flat
    assert squashed(BANNER) in flat
    for entry in report.timeline:
        assert squashed(entry.text) in flat, entry.id
    for person in report.persons:
        assert squashed(person.name) in flat
    assert squashed(sample.GERMAN_EN) in flat
    assert "page1of" in flat
