"""Real stores (SQLite, local objects, litemongo, Milvus Lite), dlib and MediaPipe, and photographs
that packages ship (`aima.samples_faces`), degraded by the tests."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aima.access.scope import Scope
from aima.model_settings import FaceAnalyzerSettings
from aima.samples_faces import FaceSamples, Head, face_samples, heads
from aima.storage.documents import DocumentStore
from aima.storage.faces import FaceRepository
from aima.storage.media import MediaRepository
from aima.storage.objects_local import LocalObjectStore
from aima.storage.persons import PersonRepository
from aima.storage.relational import Database
from aima.storage.vectors_milvus import MilvusVectorStore
from events.catalogue import EventData, FacesDetected, FrameRef, FramesExtracted, PersonsClustered, make_event
from functions.faces.core import FacesCore
from functions.persons.core import LinkRules, PersonsCore
from functions.runtime.context import Context
from inference.cpu.faces import DlibFaceAnalyzer
from inference.tasks.vision import FaceAnalyzer
from tests.support import add_media, case_stores


@pytest.fixture(scope="session")
def samples() -> FaceSamples:
    return face_samples()


@pytest.fixture(scope="session")
def pool(samples: FaceSamples) -> list[Head]:
    return heads(samples)


@pytest.fixture(scope="session")
def analyzer() -> Iterator[DlibFaceAnalyzer]:
    model = DlibFaceAnalyzer(FaceAnalyzerSettings(idle_unload_seconds=0))
    yield model
    model.close()


def jpeg(image: Any, quality: int = 92) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


@dataclass
class Env:
    db: Database
    objects: LocalObjectStore
    documents: DocumentStore
    vectors: MilvusVectorStore
    media: MediaRepository
    faces: FaceRepository
    persons: PersonRepository
    tenant_id: str
    case_id: str

    @property
    def scope(self) -> Scope:
        return Scope.for_case(self.tenant_id, self.case_id, "test")

    def frames(
        self, frames: Sequence[bytes | None], *, still: bool = False, step_s: float = 2.0
    ) -> FramesExtracted:
        """A media row and its frames stored the way the probe stores them (``None``: no object)."""
        media_id, base = add_media(
            self.objects,
            self.media,
            self.scope,
            self.case_id,
            b"",
            content_type="image/jpeg" if still else "video/mp4",
            filename="still.jpg" if still else "clip.mp4",
        )
        refs = []
        for index, body in enumerate(frames):
            millis = round(index * step_s * 1000)
            key = f"{base}/frames/{millis:010d}.jpg"
            if body is not None:
                self.objects.put(key, io.BytesIO(body), content_type="image/jpeg")
            refs.append(
                FrameRef(frame_id=f"{media_id}-f{millis}", object_key=key, timestamp_s=index * step_s)
            )
        return FramesExtracted(
            tenant_id=self.tenant_id, case_id=self.case_id, media_id=media_id, job_id="job-1", frames=refs
        )

    def faces_core(self, analyzer: Callable[[], FaceAnalyzer]) -> FacesCore:
        return FacesCore(self.objects, self.faces, self.media, self.vectors, analyzer=analyzer)

    def persons_core(self, rules: LinkRules | None = None) -> PersonsCore:
        chosen = rules or LinkRules()
        return PersonsCore(self.faces, self.persons, lambda: self.vectors, rules_for=lambda tenant_id: chosen)

    async def find(self, analyzer: Callable[[], FaceAnalyzer], data: FramesExtracted) -> list[EventData]:
        """The faces step on ``data``."""
        core = self.faces_core(analyzer)
        return list(await core.handle(data, Context("faces", make_event(data, source="/aima/test/probe"))))

    async def link(self, data: FacesDetected, rules: LinkRules | None = None) -> PersonsClustered:
        """The persons step on ``data``."""
        core = self.persons_core(rules)
        (done,) = await core.handle(data, Context("persons", make_event(data, source="/aima/test/faces")))
        assert isinstance(done, PersonsClustered)
        return done

    async def analyse(self, analyzer: FaceAnalyzer, data: FramesExtracted) -> FacesDetected:
        """The faces step, then the persons step, as the bus would run them."""
        (found,) = await self.find(lambda: analyzer, data)
        assert isinstance(found, FacesDetected)
        await self.link(found)
        return found


@pytest.fixture(scope="module")
def vectors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusVectorStore]:
    store = MilvusVectorStore(str(tmp_path_factory.mktemp("faces-vectors") / "vectors.db"))
    store.ensure_collections()
    yield store
    store.close()


@pytest.fixture
def env(tmp_path: Path, vectors: MilvusVectorStore) -> Iterator[Env]:
    with case_stores(tmp_path, "faces") as made:
        yield Env(
            made.db,
            made.objects,
            made.documents,
            vectors,
            MediaRepository(made.db),
            FaceRepository(made.documents),
            PersonRepository(made.documents),
            made.tenant_id,
            made.case_id,
        )
