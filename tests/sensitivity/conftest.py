"""Real stores (SQLite, a local object folder, litemongo), frames drawn with Pillow (benign scenes:
shapes and text, never explicit material), and the Open-NSFW scorer from the installed package.

The gateway fixtures of `tests.api.conftest` (a tenant with one user per kind of caller and a shared
case) are used by the HTTP tests."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw, ImageFont

from aima.access.scope import Scope
from aima.model_settings import SensitivityScorerSettings
from aima.storage.documents import DocumentStore
from aima.storage.media import MediaRepository
from aima.storage.objects import ObjectStore
from aima.storage.objects_local import LocalObjectStore
from aima.storage.retention import PROBES
from aima.storage.sensitivity import SensitivityRepository
from events.catalogue import EventData, FrameRef, FramesExtracted, make_event
from functions.runtime.context import Context
from functions.sensitivity.core import SensitivityCore
from inference.cpu.nsfw import OpenNsfwScorer
from inference.tasks.vision import SensitivityScorer
from tests.api.conftest import app, ingest_bus, services, settings, world  # noqa: F401 - gateway fixtures
from tests.support import add_media, case_stores

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


def scene(seed: int = 0, size: tuple[int, int] = (640, 360), text: str = "Harbour gate 7") -> bytes:
    """A benign frame as JPEG: sky, a field, a checkerboard, a sun and a line of text (detail to blur)."""
    width, height = size
    image = Image.new("RGB", size, (80 + seed * 20 % 100, 140, 210))
    pen = ImageDraw.Draw(image)
    pen.rectangle((0, height * 2 // 3, width, height), fill=(40, 150, 60))
    cell = max(4, width // 40)
    for row in range(6):
        for col in range(10):
            if (row + col) % 2 == 0:
                x, y = width // 10 + col * cell, height // 8 + row * cell
                pen.rectangle((x, y, x + cell - 1, y + cell - 1), fill=(250, 250, 250))
    pen.ellipse((width * 3 // 4, 20, width * 3 // 4 + height // 5, 20 + height // 5), fill=(250, 210, 40))
    pen.text(
        (width // 10, height * 3 // 4),
        text,
        font=ImageFont.truetype(FONT, max(12, height // 12)),
        fill="black",
    )
    return jpeg(image)


def jpeg(image: Image.Image, quality: int = 92) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


@pytest.fixture(scope="session")
def scorer() -> Iterator[OpenNsfwScorer]:
    model = OpenNsfwScorer(SensitivityScorerSettings(idle_unload_seconds=0))
    yield model
    model.close()


def put_frames(
    objects: ObjectStore,
    documents: DocumentStore,
    tenant_id: str,
    case_id: str,
    media_id: str,
    frames: Sequence[tuple[float, bytes | None]],
) -> FramesExtracted:
    """Frames (``None``: no object), a thumbnail and a preview stored the way the probe stores them,
    with the probe's document; returns the probe's ``FramesExtracted``."""
    base = f"cases/{case_id}/media/{media_id}"
    refs = []
    for timestamp, body in frames:
        key = f"{base}/frames/{round(timestamp * 1000):010d}.jpg"
        if body is not None:
            objects.put(key, io.BytesIO(body), content_type="image/jpeg")
        refs.append(FrameRef(frame_id=str(uuid.uuid4()), object_key=key, timestamp_s=timestamp))
    first = next((body for _, body in frames if body is not None), scene())
    objects.put(f"{base}/thumb.jpg", io.BytesIO(first), content_type="image/jpeg")
    objects.put(f"{base}/preview.jpg", io.BytesIO(scene(9, (960, 120))), content_type="image/jpeg")
    doc: dict[str, Any] = {
        "media_id": media_id,
        "kind": "video",
        "frames": [ref.model_dump() for ref in refs],
        "thumbnail": f"{base}/thumb.jpg",
        "preview": f"{base}/preview.jpg",
    }
    where = {"_id": media_id, "tenant_id": tenant_id, "case_id": case_id}
    documents.update_one(PROBES, where, {"$set": doc}, upsert=True)
    return FramesExtracted(
        tenant_id=tenant_id, case_id=case_id, media_id=media_id, job_id="job-1", frames=refs
    )


async def run(core: SensitivityCore, data: FramesExtracted) -> list[EventData]:
    event = make_event(data, source="/aima/test/probe")
    return list(await core.handle(data, Context("sensitivity", event)))


@dataclass
class Env:
    objects: LocalObjectStore
    documents: DocumentStore
    media: MediaRepository
    results: SensitivityRepository
    tenant_id: str
    case_id: str
    threshold: float = 0.8

    @property
    def scope(self) -> Scope:
        return Scope.for_case(self.tenant_id, self.case_id, "test")

    def frames(self, frames: Sequence[tuple[float, bytes | None]]) -> FramesExtracted:
        """A media row and its frames as the probe stores them."""
        media_id, _ = add_media(
            self.objects,
            self.media,
            self.scope,
            self.case_id,
            b"",
            content_type="video/mp4",
            filename="clip.mp4",
        )
        return put_frames(self.objects, self.documents, self.tenant_id, self.case_id, media_id, frames)

    def core(self, scorer: Callable[[], SensitivityScorer]) -> SensitivityCore:
        return SensitivityCore(
            self.objects,
            self.results,
            self.media,
            scorer=scorer,
            threshold_for=lambda _tenant: self.threshold,
        )


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    with case_stores(tmp_path, "sensitivity") as made:
        yield Env(
            made.objects,
            made.documents,
            MediaRepository(made.db),
            SensitivityRepository(made.documents),
            made.tenant_id,
            made.case_id,
        )
