"""The ocr function: text in a file's frames (or the image itself), line by line, searchable."""

from __future__ import annotations

from aima.storage.media import MediaRepository
from aima.storage.ocr import OcrRepository
from aima.storage.transcripts import TranscriptRepository
from events.catalogue import FramesExtracted, TextRecognized
from functions.ocr.core import OcrCore
from functions.runtime.deps import Deps
from functions.runtime.spec import FunctionSpec, Resources
from inference.tasks.text import TextEmbedder
from inference.tasks.vision import OcrReader


def build(deps: Deps) -> OcrCore:
    """A core on the process's stores, its OCR reader and its text embedder (for the search index)."""
    stores = deps.stores
    return OcrCore(
        stores.objects,
        OcrRepository(stores.documents),
        MediaRepository(stores.db),
        stores.vectors,
        TranscriptRepository(stores.documents),
        reader=lambda: deps.models.get(OcrReader),
        embedder=lambda: deps.models.get(TextEmbedder),
    )


SPEC = FunctionSpec(
    name="ocr",
    description="lines of text in frames and images with boxes, language and confidence; searchable",
    consumes=(FramesExtracted,),
    emits=(TextRecognized,),
    build=build,
    needs=("database", "objects", "documents", "vectors", "bus", "model:ocr"),
    resources=Resources(cpu="1", memory="1Gi", concurrency=1, timeout_s=1800, max_scale=4),
    port=8087,
    analysis=True,
    step="ocr",
    image="ocr",
)
