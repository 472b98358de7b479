"""The ocr function's core: the text in a file's frames, line by line, stored and made searchable.

``handle`` takes ``io.aima.media.frames.extracted.v1`` (the sampled frames of a video, or the still
of an image, each with its id, object key and timestamp) and:

1. reads every frame, in time order, with the `OcrReader` (Tesseract by default: lines with boxes,
   confidence and language). A frame that is missing or cannot be decoded is skipped with its
   reason; the other frames go on;
2. joins a line with the line of the previous frame read that has the same normalised text
   (`aima.storage.ocr.normalise`) and an overlapping box: one line then spans several frames,
   with its first and last frame and timestamp, and keeps its best confidence;
3. stores the lines as the file's next OCR version (`aima.storage.ocr.OcrRepository`);
4. embeds each line with the text embedder and puts it into the case's search index, beside the
   speech segments (`aima.storage.speech_index.SpeechIndex.replace_ocr`), so the case search finds
   it with ``source: "ocr"``. Without a text embedder the lines are stored but not indexed.

No OCR model (or no tesseract binary) → ``not_run`` with the reason; a model that is down → the
event is retried by the bus.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aima.access.scope import Scope
from aima.domain import ModelRef
from aima.storage.media import MediaRepository
from aima.storage.objects import ObjectStore
from aima.storage.ocr import OcrLine, OcrRepository, OcrResult, TextBox, normalise
from aima.storage.speech_index import SpeechIndex
from aima.storage.transcripts import TranscriptRepository
from aima.storage.vectors import VectorDimensionMismatch, VectorStore
from aima.storage.versioned import SkippedFrame
from events.catalogue import EventData, FrameRef, FramesExtracted, ModelInfo, TextRecognized
from functions.runtime.context import Context
from functions.runtime.results import look_at_frames, not_run
from inference.errors import InvalidModelOutput, ModelNotConfigured
from inference.tasks.common import ImageInput
from inference.tasks.text import TextEmbedder, TextsInput
from inference.tasks.vision import OcrReader, TextLine, TextLines
from inference.vectors import ensure_collection_for

log = logging.getLogger(__name__)

ACTOR = "function:ocr"
EMBED_CHUNK = 256


@dataclass
class _Open:
    """A line being followed across frames."""

    key: str
    line: OcrLine
    box: TextBox
    frame_ids: list[str] = field(default_factory=list)


class OcrCore:
    """``async handle(data, ctx) -> list[EventData]`` for ``io.aima.media.frames.extracted.v1``."""

    def __init__(
        self,
        objects: ObjectStore,
        results: OcrRepository,
        media: MediaRepository,
        vectors: VectorStore,
        transcripts: TranscriptRepository,
        *,
        reader: Callable[[], OcrReader],
        embedder: Callable[[], TextEmbedder],
        workdir: Path | None = None,
    ) -> None:
        """``reader``/``embedder`` return the process's models (raising `ModelNotConfigured` when
        there is none)."""
        self._objects = objects
        self._results = results
        self._media = media
        self._vectors = vectors
        self._index = SpeechIndex(vectors, transcripts, ocr=results)
        self._reader = reader
        self._embedder = embedder
        self._workdir = workdir

    async def handle(self, data: FramesExtracted, ctx: Context) -> list[EventData]:
        """Read the file's frames; blocking work runs in a worker thread."""
        return await asyncio.to_thread(self._handle, data)

    def _handle(self, data: FramesExtracted) -> list[EventData]:
        if self._media.get(Scope.for_case(data.tenant_id, data.case_id, ACTOR), data.media_id) is None:
            log.info("media is gone; nothing to read", extra={"media_id": data.media_id})
            return []
        try:
            reader = self._reader()
            lines, skipped, read = self._read(data, reader)
        except ModelNotConfigured as exc:
            return not_run(self._results, OcrResult, TextRecognized, data, exc.reason, step="ocr")
        stored = self._results.add(
            OcrResult(
                tenant_id=data.tenant_id,
                case_id=data.case_id,
                media_id=data.media_id,
                version=1,
                model=ModelRef(name=reader.name, version=reader.version or "unknown", backend=reader.backend),
                frames=read,
                lines=lines,
                skipped=skipped,
            )
        )
        indexed = self._index_lines(stored)
        languages = Counter(line.language or "und" for line in stored.lines)
        log.info(
            "text recognised",
            extra={
                "media_id": data.media_id,
                "lines": len(lines),
                "skipped": len(skipped),
                "indexed": indexed,
            },
        )
        return [
            TextRecognized(
                **data.media_ids(),
                model=ModelInfo.of(stored.model),
                result_count=len(stored.lines),
                version=stored.version,
                frames=read,
                skipped_frames=len(skipped),
                languages=dict(languages),
                indexed_lines=indexed,
            )
        ]

    # --- reading ---------------------------------------------------------------------------------

    def _read(
        self, data: FramesExtracted, reader: OcrReader
    ) -> tuple[list[OcrLine], list[SkippedFrame], int]:
        """Every frame read in time order, lines joined across consecutive frames."""
        finished: list[OcrLine] = []
        open_lines: list[_Open] = []
        skipped: list[SkippedFrame] = []
        read = 0
        with tempfile.TemporaryDirectory(prefix="aima-ocr-", dir=self._workdir) as tmp:

            def look(frame: FrameRef, path: Path) -> TextLines:
                return reader.predict(
                    ImageInput(path=path, frame_id=frame.frame_id, timestamp_s=frame.timestamp_s)
                )

            for frame, _, found in look_at_frames(self._objects, data.frames, Path(tmp), look, skipped):
                read += 1
                open_lines, closed = _follow(data.media_id, frame, found.lines, open_lines)
                finished.extend(closed)
        finished.extend(_close(item) for item in open_lines)
        finished.sort(key=lambda line: (line.first_s, line.box.y, line.box.x))
        return finished, skipped, read

    # --- search index ------------------------------------------------------------------------------

    def _index_lines(self, result: OcrResult) -> int:
        """Embed the lines and make them the file's OCR records in ``texts``; 0 if that cannot be done."""
        newest = self._results.versions(result.tenant_id, result.case_id, result.media_id)
        if newest and newest[-1] > result.version:
            return 0  # a newer version was stored meanwhile; its run indexes it
        try:
            model = self._embedder()
            vectors = _embed(model, [line.text for line in result.lines])
            if result.lines:
                ensure_collection_for(self._vectors, model)
            written, _ = self._index.replace_ocr(result, vectors)
        except (ModelNotConfigured, InvalidModelOutput, VectorDimensionMismatch) as exc:
            reason = exc.reason if isinstance(exc, (ModelNotConfigured, InvalidModelOutput)) else str(exc)
            log.info("OCR lines not indexed: %s", reason, extra={"media_id": result.media_id})
            return 0
        return written


def _follow(
    media_id: str, frame: FrameRef, lines: Sequence[TextLine], open_lines: list[_Open]
) -> tuple[list[_Open], list[OcrLine]]:
    """Continue the open lines that this frame shows again; start the others; close the rest."""
    still: list[_Open] = []
    available = list(open_lines)
    for k, found in enumerate(lines):
        key = normalise(found.text)
        if not key:
            continue
        box = TextBox(x=found.box.x, y=found.box.y, width=found.box.width, height=found.box.height)
        match = next((item for item in available if item.key == key and item.box.overlaps(box)), None)
        confidence = found.confidence if found.confidence is not None else 0.0
        if match is not None:
            available.remove(match)
            best = max(match.line.confidence, confidence)
            match.line = match.line.model_copy(
                update={"last_s": frame.timestamp_s, "last_frame_id": frame.frame_id, "confidence": best}
            )
            match.box = box
            match.frame_ids.append(frame.frame_id)
            still.append(match)
            continue
        line = OcrLine(
            id=f"{media_id}-l{round(frame.timestamp_s * 1000)}-{k}",
            text=found.text,
            language=found.language,
            confidence=confidence,
            box=box,
            first_s=frame.timestamp_s,
            last_s=frame.timestamp_s,
            first_frame_id=frame.frame_id,
            last_frame_id=frame.frame_id,
        )
        still.append(_Open(key, line, box, [frame.frame_id]))
    return still, [_close(item) for item in available]


def _close(item: _Open) -> OcrLine:
    return item.line.model_copy(update={"frame_ids": list(item.frame_ids)})


def _embed(model: TextEmbedder, texts: Sequence[str]) -> list[list[float]]:
    vectors: list[list[float]] = []
    for start in range(0, len(texts), EMBED_CHUNK):
        vectors.extend(model.predict(TextsInput(texts=list(texts[start : start + EMBED_CHUNK]))).vectors)
    return vectors
