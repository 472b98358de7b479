"""Case speakers written straight into the stores (no audio, no model): a transcript of four segments
whose file speakers S1 and S2 belong to two case speakers. For route tests that need speakers to act on."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass

from aima.storage.documents import DocumentStore
from aima.storage.speakers import CaseSpeakerRepository, FileSpeaker, Turn, encode_vector, file_speaker_id
from aima.storage.transcripts import TranscriptRepository
from aima.storage.vectors import VectorStore
from aima.transcripts import SpeechSegment, Transcript, segment_id


@dataclass(frozen=True)
class Seeded:
    media_id: str
    first: str  # the case speaker of S1 (segments 0 and 2)
    second: str  # the case speaker of S2 (segments 1 and 3)
    segments: list[str]


def voice(rng: random.Random) -> list[float]:
    values = [rng.random() for _ in range(256)]
    norm = sum(x * x for x in values) ** 0.5
    return [x / norm for x in values]


def seed_speakers(documents: DocumentStore, vectors: VectorStore, tenant_id: str, case_id: str) -> Seeded:
    rng = random.Random()
    media_id = str(uuid.uuid4())
    transcripts = TranscriptRepository(documents)
    segments = [
        SpeechSegment(id=segment_id(media_id, 2.5 * i), start=2.5 * i, end=2.5 * i + 2.0, text=f"line {i}")
        for i in range(4)
    ]
    stored = transcripts.add(
        Transcript(tenant_id=tenant_id, case_id=case_id, media_id=media_id, version=1, segments=segments)
    )
    repository = CaseSpeakerRepository(documents, transcripts=transcripts, vectors=vectors)
    speakers = [repository.create(tenant_id, case_id) for _ in range(2)]
    file_speakers = [
        FileSpeaker(
            id=file_speaker_id(media_id, stored.version, f"S{n + 1}"),
            tenant_id=tenant_id,
            case_id=case_id,
            media_id=media_id,
            version=stored.version,
            label=f"S{n + 1}",
            case_speaker_id=speaker.id,
            turns=[
                Turn(id=s.id, start=s.start, end=s.end, vector=encode_vector(voice(rng)))
                for s in segments[n::2]
            ],
        )
        for n, speaker in enumerate(speakers)
    ]
    repository.save_file_speakers(file_speakers)
    repository.make_current(tenant_id, case_id, media_id, {fs.id for fs in file_speakers})
    repository.relabel(tenant_id, case_id, media_id)
    return Seeded(media_id, speakers[0].id, speakers[1].id, [s.id for s in segments])


def speaker_request(
    documents: DocumentStore, vectors: VectorStore, tenant_id: str, case_id: str, route: str
) -> tuple[str, str, dict[str, object]]:
    """(method, path, body) of a successful call of a speaker correction route on freshly seeded
    speakers: ``rename``, ``merge`` or ``split`` (for the API's route tables)."""
    seed = seed_speakers(documents, vectors, tenant_id, case_id)
    base = f"/api/v1/cases/{case_id}/speakers"
    if route == "rename":
        return "PATCH", f"{base}/{seed.first}", {"name": "Witness"}
    if route == "merge":
        return "POST", f"{base}/{seed.first}/merge", {"speaker_id": seed.second}
    if route == "split":
        body: dict[str, object] = {"media_id": seed.media_id, "segment_ids": seed.segments[:1]}
        return "POST", f"{base}/{seed.first}/split", body
    raise ValueError(f"no speaker route {route!r}")
