"""Real stores (SQLite, a local object folder, litemongo), frames drawn with PIL, and the vision
describer made by the registry from settings that point at the loopback server."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

from aima.access.scope import Scope
from aima.model_settings import ModelsSettings
from aima.storage.corroboration import corroborate
from aima.storage.documents import DocumentStore
from aima.storage.findings import FindingRepository
from aima.storage.media import MediaRepository
from aima.storage.objects_local import LocalObjectStore
from aima.storage.relational import Database
from aima.storage.vision import VisionRepository
from events.catalogue import EventData, FrameRef, FramesExtracted, make_event
from functions.runtime.context import Context
from functions.vision.core import VisionCore, VisionFinding
from inference.pool import ModelPool
from inference.tasks.vision import VisionDescriber
from tests.support import add_media, case_stores
from tests.vision.openai_vision_server import GREEN, RED, VisionServer, running

BLUE = (40, 60, 200)


def frame_png(colour: tuple[int, int, int], size: tuple[int, int] = (96, 64)) -> bytes:
    """A frame: a grey border around a block of ``colour`` (the server's "model" reads the centre)."""
    image = Image.new("RGB", size, (128, 128, 128))
    ImageDraw.Draw(image).rectangle((8, 8, size[0] - 9, size[1] - 9), fill=colour)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def server() -> VisionServer:
    return VisionServer()


@pytest.fixture
def endpoint(server: VisionServer) -> Iterator[str]:
    with running(server) as url:
        yield url


def describer(endpoint: str, server: VisionServer, **settings: Any) -> VisionDescriber:
    """The vision describer the process would build from ``AIMA_MODELS__VISION_DESCRIBER__*``."""
    block: dict[str, Any] = {
        "backend": "openai",
        "endpoint": endpoint,
        "model": server.model,
        "api_key": server.api_key,
        "timeout_seconds": 5,
        "idle_unload_seconds": 0,
    }
    models = ModelsSettings.model_validate({"vision_describer": block | settings})
    return ModelPool(models).get(VisionDescriber)


@dataclass
class Env:
    db: Database
    objects: LocalObjectStore
    documents: DocumentStore
    media: MediaRepository
    vision: VisionRepository
    findings: FindingRepository
    tenant_id: str
    case_id: str

    @property
    def scope(self) -> Scope:
        return Scope.for_case(self.tenant_id, self.case_id, "test")

    def extracted(
        self, colours: Sequence[tuple[int, int, int]], *, missing: Sequence[int] = ()
    ) -> FramesExtracted:
        """A video's frames, one per colour 2 s apart, stored the way the probe does (the frames
        numbered in ``missing`` are left out of the object store)."""
        media_id, base = add_media(
            self.objects,
            self.media,
            self.scope,
            self.case_id,
            b"video",
            content_type="video/mp4",
            filename="door.mp4",
        )
        frames = []
        for index, colour in enumerate(colours):
            key = f"{base}/frames/{index:04d}.png"
            if index not in missing:
                self.objects.put(key, io.BytesIO(frame_png(colour)), content_type="image/png")
            frames.append(FrameRef(frame_id=f"f{index:04d}", object_key=key, timestamp_s=2.0 * index))
        return FramesExtracted(
            tenant_id=self.tenant_id, case_id=self.case_id, media_id=media_id, job_id="job-1", frames=frames
        )

    def core(
        self, model: VisionDescriber | None, *, context: str | None = None, floor: float = 0.0
    ) -> VisionCore:
        def get() -> VisionDescriber:
            if model is None:
                return ModelPool(ModelsSettings()).get(VisionDescriber)  # the default: backend none
            return model

        return VisionCore(
            self.objects,
            self.vision,
            self.findings,
            self.media,
            describer=get,
            context_for=lambda tenant_id, case_id: context,
            min_confidence_for=lambda tenant_id: floor,
            corroborate=lambda tenant_id, case_id, media_id: corroborate(
                self.documents, tenant_id, case_id, media_id
            ),
        )

    async def run(
        self, core: VisionCore, data: FramesExtracted, event_id: str | None = None
    ) -> list[EventData]:
        event = make_event(data, source="/aima/test/probe", event_id=event_id)
        return list(await core.handle(data, Context("vision", event)))

    def vision_findings(self, media_id: str | None = None) -> list[VisionFinding]:
        return self.findings.list(self.tenant_id, self.case_id, media_id=media_id, model=VisionFinding)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    with case_stores(tmp_path, "vision") as made:
        yield Env(
            made.db,
            made.objects,
            made.documents,
            MediaRepository(made.db),
            VisionRepository(made.documents),
            FindingRepository(made.documents),
            made.tenant_id,
            made.case_id,
        )


__all__ = ["BLUE", "GREEN", "RED", "Env", "describer", "frame_png"]
