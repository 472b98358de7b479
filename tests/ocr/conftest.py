"""Real stores (SQLite, local objects, litemongo, Milvus Lite), Tesseract and images the tests draw."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from aima.access.scope import Scope
from aima.model_settings import OcrSettings, TextEmbedderSettings
from aima.storage.documents import DocumentStore
from aima.storage.media import MediaRepository
from aima.storage.objects_local import LocalObjectStore
from aima.storage.ocr import OcrRepository
from aima.storage.relational import Database
from aima.storage.transcripts import TranscriptRepository
from aima.storage.vectors_milvus import MilvusVectorStore
from events.catalogue import FrameRef, FramesExtracted
from functions.ocr.core import OcrCore
from inference.cpu.ocr import TesseractOcr
from inference.cpu.texts import MiniLMTextEmbedder
from inference.errors import ModelNotConfigured
from inference.tasks.text import TextEmbedder
from inference.tasks.vision import OcrReader
from tests.support import add_media, case_stores

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
ENGLISH = "Meet me at the old station tonight"
GERMAN = "Straße gesperrt für Fahrzeuge über drei Tonnen"


def draw(lines: Sequence[tuple[int, int, str]], size: tuple[int, int] = (900, 220)) -> Image.Image:
    """A white image with each ``(x, y, text)`` written in black DejaVu Sans, 32 px."""
    font = ImageFont.truetype(FONT, 32)
    image = Image.new("RGB", size, "white")
    pen = ImageDraw.Draw(image)
    for x, y, text in lines:
        pen.text((x, y), text, font=font, fill="black")
    return image


def png(image: Image.Image, **save: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=str(save.pop("format", "PNG")), **save)
    return out.getvalue()


@pytest.fixture(scope="session")
def reader() -> Iterator[TesseractOcr]:
    model = TesseractOcr(OcrSettings(idle_unload_seconds=0))
    yield model
    model.close()


@pytest.fixture(scope="session")
def embedder() -> Iterator[MiniLMTextEmbedder]:
    model = MiniLMTextEmbedder(TextEmbedderSettings(idle_unload_seconds=0))
    yield model
    model.close()


def no_embedder() -> TextEmbedder:
    raise ModelNotConfigured("no text embedder in this test")


@dataclass
class Env:
    db: Database
    objects: LocalObjectStore
    documents: DocumentStore
    vectors: MilvusVectorStore
    media: MediaRepository
    results: OcrRepository
    transcripts: TranscriptRepository
    tenant_id: str
    case_id: str

    @property
    def scope(self) -> Scope:
        return Scope.for_case(self.tenant_id, self.case_id, "test")

    def frames(
        self, frames: Sequence[tuple[float, bytes | None]], filename: str = "clip.mp4"
    ) -> FramesExtracted:
        """A media row and its frames stored the way the probe stores them (``None``: no object)."""
        media_id, base = add_media(
            self.objects,
            self.media,
            self.scope,
            self.case_id,
            b"",
            content_type="video/mp4",
            filename=filename,
        )
        refs = []
        for index, (timestamp, body) in enumerate(frames):
            key = f"{base}/frames/{index:05d}.png"
            if body is not None:
                self.objects.put(key, io.BytesIO(body), content_type="image/png")
            refs.append(FrameRef(frame_id=f"{media_id}-f{index}", object_key=key, timestamp_s=timestamp))
        return FramesExtracted(
            tenant_id=self.tenant_id, case_id=self.case_id, media_id=media_id, job_id="job-1", frames=refs
        )

    def core(
        self, reader: Callable[[], OcrReader], embedder: Callable[[], TextEmbedder] = no_embedder
    ) -> OcrCore:
        return OcrCore(
            self.objects,
            self.results,
            self.media,
            self.vectors,
            self.transcripts,
            reader=reader,
            embedder=embedder,
        )


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, MilvusVectorStore]]:
    folder = tmp_path_factory.mktemp("ocr-vectors")
    vectors = MilvusVectorStore(str(folder / "vectors.db"))
    vectors.ensure_collections()
    yield folder, vectors
    vectors.close()


@pytest.fixture
def env(tmp_path: Path, stores: tuple[Path, MilvusVectorStore]) -> Iterator[Env]:
    with case_stores(tmp_path, "ocr") as made:
        yield Env(
            made.db,
            made.objects,
            made.documents,
            stores[1],
            MediaRepository(made.db),
            OcrRepository(made.documents),
            TranscriptRepository(made.documents),
            made.tenant_id,
            made.case_id,
        )
