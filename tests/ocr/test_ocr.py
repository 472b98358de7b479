"""OCR: English and German lines read from images the tests draw, EXIF orientation, lines joined
across consecutive frames, damaged frames skipped, the lines found by the case search, not run."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from aima.model_settings import OcrSettings
from aima.settings import load_settings
from aima.storage.speech_index import SegmentHit, SpeechIndex, texts_to_index
from aima.transcripts import SpeechSegment, Transcript, segment_id
from events.catalogue import EventData, FramesExtracted, TextRecognized, make_event
from functions.ocr.spec import SPEC
from functions.runtime.context import Context
from inference.cpu.ocr import TesseractOcr
from inference.cpu.texts import MiniLMTextEmbedder
from inference.errors import ModelNotConfigured
from inference.pool import ModelPool
from inference.tasks.common import ImageInput
from inference.tasks.text import TextEmbedder, TextsInput
from inference.tasks.vision import OcrReader
from tests.ocr.conftest import ENGLISH, GERMAN, Env, draw, no_embedder, png


def similar(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()


async def run(
    env: Env,
    reader: Callable[[], OcrReader],
    data: FramesExtracted,
    embedder: Callable[[], TextEmbedder] = no_embedder,
) -> list[EventData]:
    core = env.core(reader, embedder)
    event = make_event(data, source="/aima/test/probe")
    return list(await core.handle(data, Context("ocr", event)))


def test_english_and_german_lines_are_read_with_box_language_and_confidence(
    reader: TesseractOcr, tmp_path: Path
) -> None:
    path = tmp_path / "sign.png"
    path.write_bytes(png(draw([(20, 30, ENGLISH), (20, 120, GERMAN)])))
    lines = reader.predict(ImageInput(path=path)).lines
    assert len(lines) == 2
    english, german = lines
    assert similar(english.text, ENGLISH) >= 0.95, english.text
    assert similar(german.text, GERMAN) >= 0.9, german.text
    assert "Straße" in german.text
    assert "für" in german.text
    assert (english.language, german.language) == ("en", "de")
    assert english.confidence is not None
    assert english.confidence > 0.8
    assert german.confidence is not None
    assert german.confidence > 0.8
    assert 10 <= english.box.x <= 30
    assert 20 <= english.box.y <= 50
    assert english.box.y < german.box.y
    assert 400 <= english.box.width <= 700
    assert reader.version.startswith("tesseract 5")


def test_the_exif_orientation_is_applied_first(reader: TesseractOcr, tmp_path: Path) -> None:
    upright = draw([(20, 30, ENGLISH)], size=(700, 100))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # lying on its side, as a camera stores it
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = tmp_path / "rotated.jpg"
    path.write_bytes(png(stored, format="JPEG", quality=95, exif=exif.tobytes()))
    assert Image.open(path).size == (100, 700)
    (line,) = reader.predict(ImageInput(path=path)).lines
    assert similar(line.text, ENGLISH) >= 0.95, line.text
    assert line.box.width > 5 * line.box.height  # boxes in pixels of the upright image


async def test_lines_are_joined_across_consecutive_frames_and_a_damaged_frame_is_skipped(
    env: Env, reader: TesseractOcr
) -> None:
    both = png(draw([(20, 30, ENGLISH), (20, 120, GERMAN)]))
    moved = png(draw([(26, 34, ENGLISH)]))  # the English line moved a little, the German one is gone
    data = env.frames(
        [
            (0.0, both),
            (1.0, b"\x89PNG\r\n\x1a\n not an image"),  # damaged: skipped, the file goes on
            (2.0, moved),
            (3.0, None),  # missing from the object store
            (4.0, png(draw([]))),  # no text
            (5.0, both),  # the English line again after a frame without it: a new line
        ]
    )
    (event,) = await run(env, lambda: reader, data)
    assert isinstance(event, TextRecognized)
    assert (event.status, event.frames, event.skipped_frames, event.result_count) == ("completed", 4, 2, 4)
    assert event.version == 1
    assert event.indexed_lines == 0
    assert event.languages == {"en": 2, "de": 2}
    result = env.results.latest(env.tenant_id, env.case_id, data.media_id)
    assert result is not None
    assert result.model is not None
    assert result.model.backend == "tesseract"
    frame = [ref.frame_id for ref in data.frames]
    first, german, again, german_again = result.lines
    assert similar(first.text, ENGLISH) >= 0.95
    assert (first.first_s, first.last_s, first.first_frame_id, first.last_frame_id) == (
        0.0,
        2.0,
        frame[0],
        frame[2],
    )
    assert first.frame_ids == [frame[0], frame[2]]
    assert (german.first_s, german.last_s, german.frame_ids) == (0.0, 0.0, [frame[0]])
    assert (again.first_s, again.last_s, again.frame_ids) == (5.0, 5.0, [frame[5]])
    assert german_again.first_s == 5.0
    assert len({line.id for line in result.lines}) == 4
    reasons = {skip.frame_id: skip.reason for skip in result.skipped}
    assert reasons[frame[1]].startswith("the frame could not be read")
    assert reasons[frame[3]] == "the frame is missing from the object store"


async def test_search_finds_an_ocr_line_beside_speech(
    env: Env, reader: TesseractOcr, embedder: MiniLMTextEmbedder
) -> None:
    data = env.frames(
        [(0.0, png(draw([(20, 30, ENGLISH), (20, 120, GERMAN)]))), (1.5, png(draw([(20, 30, ENGLISH)])))]
    )
    (event,) = await run(env, lambda: reader, data, embedder=lambda: embedder)
    assert isinstance(event, TextRecognized)
    assert event.indexed_lines == 2
    index = SpeechIndex(env.vectors, env.transcripts, env.media)

    def search(query: str) -> list[SegmentHit]:
        vector = embedder.predict(TextsInput(texts=[query])).vectors[0]
        return list(index.search(env.scope, env.case_id, vector, limit=3))

    hit = search("meet at the old train station tonight")[0]
    assert (hit.source, hit.media_id, hit.filename, hit.frame_id) == (
        "ocr",
        data.media_id,
        "clip.mp4",
        data.frames[0].frame_id,
    )
    assert (hit.start, hit.end, hit.timestamp_s, hit.ocr_version) == (0.0, 1.5, 0.0, 1)
    assert hit.transcript_version is None

    # the same file's speech, indexed afterwards (as the cues function does), keeps its OCR lines
    said = "Please call my sister about the car"
    transcript = env.transcripts.add(
        Transcript(
            tenant_id=env.tenant_id,
            case_id=env.case_id,
            media_id=data.media_id,
            version=1,
            duration_s=3.0,
            segments=[
                SpeechSegment(id=segment_id(data.media_id, 0.0), start=0.0, end=3.0, text=said, language="en")
            ],
        )
    )
    texts = texts_to_index(transcript)
    index.replace(transcript, texts, embedder.predict(TextsInput(texts=[t.text for t in texts])).vectors)
    spoken = search("phone my sister about the vehicle")[0]
    assert (spoken.source, spoken.text) == ("speech", said)
    assert search("meet at the old train station tonight")[0].source == "ocr"


async def test_no_model_or_no_tesseract_is_not_run_with_the_reason(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = env.frames([(0.0, png(draw([(20, 30, ENGLISH)])))])
    pool = ModelPool.from_settings(load_settings(data_dir=tmp_path, models={"ocr": {"backend": "none"}}))
    (event,) = await run(env, lambda: pool.get(OcrReader), data)
    assert isinstance(event, TextRecognized)
    assert (event.status, event.result_count, event.model.backend) == ("not_run", 0, "none")
    assert event.reason is not None
    assert "AIMA_MODELS__OCR__BACKEND" in event.reason
    pool.close()

    monkeypatch.setenv("PATH", str(tmp_path))  # no tesseract binary on the path
    bare = TesseractOcr(OcrSettings(idle_unload_seconds=0))
    assert bare.health().state == "not_configured"
    (event,) = await run(env, lambda: bare, data)
    assert isinstance(event, TextRecognized)
    assert event.status == "not_run"
    assert event.reason is not None
    assert "tesseract binary is not installed" in event.reason
    stored = env.results.latest(env.tenant_id, env.case_id, data.media_id)
    assert stored is not None
    assert (stored.status, stored.version) == ("not_run", 2)


def test_spec() -> None:
    assert (SPEC.name, SPEC.port, SPEC.analysis) == ("ocr", 8087, True)
    assert "model:ocr" in SPEC.needs


def test_default_backend_is_tesseract(tmp_path: Path) -> None:
    assert load_settings(data_dir=tmp_path).models.ocr.backend == "tesseract"
    with pytest.raises(ModelNotConfigured):
        ModelPool.from_settings(load_settings(data_dir=tmp_path, models={"ocr": {"backend": "none"}})).get(
            OcrReader
        )
