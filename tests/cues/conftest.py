"""Real stores (litemongo documents, Milvus Lite vectors), the packaged MiniLM and transcripts written
directly, the way the transcribe function stores them."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from aima.access.scope import Scope
from aima.model_settings import TextEmbedderSettings
from aima.storage.documents import DocumentStore
from aima.storage.findings import FindingRepository
from aima.storage.speech_index import SegmentHit, SpeechIndex
from aima.storage.transcripts import TranscriptRepository
from aima.storage.vectors_milvus import MilvusVectorStore
from aima.transcripts import SpeechSegment, Transcript, segment_id
from events.catalogue import ModelInfo, TranscriptCompleted, make_event
from functions.cues.core import CueCore, CueFinding
from functions.cues.cuelist import CueList, TenantPhrases, load_cue_list
from functions.runtime.context import Context
from inference.cpu.texts import MiniLMTextEmbedder
from inference.tasks.text import TextEmbedder, TextsInput

Line = Sequence[str]
"""(language, text) or (language, text, English translation)."""


@pytest.fixture(scope="session")
def embedder() -> Iterator[MiniLMTextEmbedder]:
    """The packaged MiniLM, loaded once for every cue and search test."""
    model = MiniLMTextEmbedder(TextEmbedderSettings(idle_unload_seconds=0))
    model.load()
    yield model
    model.close()


@pytest.fixture(scope="session")
def cue_list() -> CueList:
    return load_cue_list()


@dataclass
class Env:
    """Stores of one module; every test works in cases of its own (`new_case`)."""

    documents: DocumentStore
    vectors: MilvusVectorStore
    transcripts: TranscriptRepository
    findings: FindingRepository
    embedder: TextEmbedder
    cue_list: CueList
    tenant_id: str = "tenant-a"

    def new_case(self) -> str:
        return str(uuid.uuid4())

    def scope(self, case_id: str, tenant_id: str | None = None) -> Scope:
        return Scope.for_case(tenant_id or self.tenant_id, case_id, "test")

    def store(
        self,
        case_id: str,
        lines: Sequence[Line],
        *,
        media_id: str | None = None,
        tenant_id: str | None = None,
        gap: float = 1.0,
    ) -> Transcript:
        """A transcript of ``lines`` (one speech segment each, 3 s long) as the media's next version."""
        media_id = media_id or str(uuid.uuid4())
        segments, start = [], 0.0
        for line in lines:
            language, text = line[0], line[1]
            translation = line[2] if len(line) == 3 else None
            segments.append(
                SpeechSegment(
                    id=segment_id(media_id, start),
                    start=start,
                    end=start + 3.0,
                    text=text,
                    language=language,
                    translation=translation,
                    speaker="S1",
                )
            )
            start += 3.0 + gap
        return self.transcripts.add(
            Transcript(
                tenant_id=tenant_id or self.tenant_id,
                case_id=case_id,
                media_id=media_id,
                version=1,
                duration_s=start,
                speech_s=3.0 * len(segments),
                segments=segments,
            )
        )

    def core(
        self,
        *,
        embedder: TextEmbedder | None = None,
        floor: float = 0.0,
        phrases_for: Callable[[str], TenantPhrases] | None = None,
    ) -> CueCore:
        model = embedder or self.embedder
        return CueCore(
            self.transcripts,
            self.vectors,
            self.findings,
            embedder=lambda: model,
            cues=self.cue_list,
            min_confidence_for=lambda tenant_id: floor,
            phrases_for=phrases_for or (lambda tenant_id: TenantPhrases()),
        )

    async def run(self, transcript: Transcript, core: CueCore | None = None) -> list[object]:
        """Hand ``core`` the ``transcript.completed`` event of ``transcript``; return what it emitted."""
        data = completed(transcript)
        event = make_event(data, source="/aima/test/transcribe")
        return list(await (core or self.core()).handle(data, Context("cues", event)))

    def cue_findings(self, case_id: str, media_id: str | None = None) -> list[CueFinding]:
        return self.findings.list(self.tenant_id, case_id, media_id=media_id, model=CueFinding)

    def search(
        self, case_id: str, query: str, limit: int = 5, tenant_id: str | None = None
    ) -> list[SegmentHit]:
        vector = self.embedder.predict(TextsInput(texts=[query])).vectors[0]
        index = SpeechIndex(self.vectors, self.transcripts)
        return index.search(self.scope(case_id, tenant_id), case_id, vector, limit)


def completed(transcript: Transcript) -> TranscriptCompleted:
    return TranscriptCompleted(
        tenant_id=transcript.tenant_id,
        case_id=transcript.case_id,
        media_id=transcript.media_id,
        job_id="job-1",
        model=ModelInfo(name="base", version="test", backend="faster-whisper"),
        result_count=len(transcript.segments),
        version=transcript.version,
        language=transcript.language,
        speech_segments=len(transcript.speech),
    )


@pytest.fixture(scope="module")
def env(
    tmp_path_factory: pytest.TempPathFactory, embedder: MiniLMTextEmbedder, cue_list: CueList
) -> Iterator[Env]:
    folder: Path = tmp_path_factory.mktemp("cues")
    documents = DocumentStore.from_uri(f"litemongo://{folder / 'documents'}", "aima")
    vectors = MilvusVectorStore(str(folder / "vectors.db"))
    vectors.ensure_collections()
    yield Env(
        documents,
        vectors,
        TranscriptRepository(documents),
        FindingRepository(documents),
        embedder,
        cue_list,
    )
    vectors.close()
    documents.close()
