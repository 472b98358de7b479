"""Transcripts in the document store: one document per version, and per-chunk checkpoints.

Collections:

* ``transcripts``: ``_id = {media_id}-v{version}``; each run of `transcribe` inserts the next
  version (an insert with an existing id fails, so two runs racing for a version cannot overwrite
  each other: the loser takes the next number). Readers take the highest version.
* ``transcript_chunks``: ``_id = {run}-c{index}``: the segments of one finished chunk of a run
  (``run`` is the handled event's id), so a redelivered event resumes at the first unfinished chunk.

Every read goes through a `Scope`-like pair (tenant, case): a transcript is never found from
another case. Deleting a case removes both collections' documents with the rest of the case.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aima.storage.documents import DocumentStore, DuplicateDocument
from aima.transcripts import SpeechSegment, Transcript

TRANSCRIPTS = "transcripts"
CHUNKS = "transcript_chunks"
MAX_VERSION_RACE = 20


class TranscriptRepository:
    """Versioned transcripts of media files, scoped by tenant and case."""

    def __init__(self, documents: DocumentStore) -> None:
        self._docs = documents

    @property
    def documents(self) -> DocumentStore:
        return self._docs

    # --- versions ----------------------------------------------------------------------------

    def latest(self, tenant_id: str, case_id: str, media_id: str) -> Transcript | None:
        """The newest version of the media's transcript, or None."""
        found = self._docs.find(
            TRANSCRIPTS, _where(tenant_id, case_id, media_id=media_id), sort=[("version", -1)], limit=1
        )
        return _transcript(found[0]) if found else None

    def get(self, tenant_id: str, case_id: str, media_id: str, version: int) -> Transcript | None:
        doc = self._docs.find_one(TRANSCRIPTS, _where(tenant_id, case_id, _id=_doc_id(media_id, version)))
        return _transcript(doc) if doc else None

    def versions(self, tenant_id: str, case_id: str, media_id: str) -> list[int]:
        """The stored version numbers, oldest first."""
        where = _where(tenant_id, case_id, media_id=media_id)
        docs = self._docs.find(TRANSCRIPTS, where, sort=[("version", 1)])
        return [int(doc["version"]) for doc in docs]

    def latest_for_case(self, tenant_id: str, case_id: str) -> list[Transcript]:
        """The newest transcript of every media file of the case."""
        newest: dict[str, dict[str, Any]] = {}
        for doc in self._docs.find(TRANSCRIPTS, _where(tenant_id, case_id), sort=[("version", 1)]):
            newest[doc["media_id"]] = doc
        return [_transcript(doc) for doc in newest.values()]

    def add(self, transcript: Transcript) -> Transcript:
        """Store ``transcript`` as the media's next version (its ``version`` is replaced)."""
        for _ in range(MAX_VERSION_RACE):
            current = self.versions(transcript.tenant_id, transcript.case_id, transcript.media_id)
            candidate = transcript.model_copy(update={"version": (current[-1] if current else 0) + 1})
            doc = candidate.model_dump(mode="python")
            doc["_id"] = _doc_id(candidate.media_id, candidate.version)
            try:
                self._docs.insert_one(TRANSCRIPTS, doc)
            except DuplicateDocument:  # a concurrent run took this version: try the next
                continue
            return candidate
        raise RuntimeError(f"could not find a free transcript version for media {transcript.media_id}")

    def label_speakers(
        self,
        tenant_id: str,
        case_id: str,
        media_id: str,
        version: int,
        labels: Mapping[str, tuple[str | None, str | None]],
    ) -> bool:
        """Set ``(speaker, case_speaker_id)`` on the segments named by id in ``labels`` (others are
        cleared); returns whether that version exists."""
        transcript = self.get(tenant_id, case_id, media_id, version)
        if transcript is None:
            return False
        segments = []
        for segment in transcript.segments:
            speaker, case_speaker = labels.get(segment.id, (None, None))
            segments.append(segment.model_copy(update={"speaker": speaker, "case_speaker_id": case_speaker}))
        update = {
            "segments": [segment.model_dump(mode="python") for segment in segments],
            "speakers_labelled": True,
        }
        return bool(
            self._docs.update_one(
                TRANSCRIPTS, _where(tenant_id, case_id, _id=_doc_id(media_id, version)), {"$set": update}
            )
        )

    # --- chunk checkpoints ---------------------------------------------------------------------

    def save_chunk(
        self, tenant_id: str, case_id: str, run: str, index: int, segments: Sequence[SpeechSegment]
    ) -> None:
        """Record a finished chunk of run ``run`` (idempotent)."""
        update = {
            "$set": {
                "run": run,
                "index": index,
                "segments": [segment.model_dump(mode="python") for segment in segments],
            }
        }
        self._docs.update_one(CHUNKS, _where(tenant_id, case_id, _id=f"{run}-c{index}"), update, upsert=True)

    def chunks(self, tenant_id: str, case_id: str, run: str) -> dict[int, list[SpeechSegment]]:
        """The finished chunks of run ``run``, by index."""
        docs = self._docs.find(CHUNKS, _where(tenant_id, case_id, run=run))
        return {int(doc["index"]): [SpeechSegment.model_validate(s) for s in doc["segments"]] for doc in docs}

    def forget_chunks(self, tenant_id: str, case_id: str, run: str) -> int:
        """Drop a finished run's checkpoints."""
        return self._docs.delete_many(CHUNKS, _where(tenant_id, case_id, run=run))

    def delete_media(self, tenant_id: str, case_id: str, media_id: str) -> int:
        """Remove every version of the media's transcript."""
        return self._docs.delete_many(TRANSCRIPTS, _where(tenant_id, case_id, media_id=media_id))


def _doc_id(media_id: str, version: int) -> str:
    return f"{media_id}-v{version}"


def _where(tenant_id: str, case_id: str, **fields: Any) -> dict[str, Any]:
    return {"tenant_id": tenant_id, "case_id": case_id, **fields}


def _transcript(doc: Mapping[str, Any]) -> Transcript:
    return Transcript.model_validate({key: value for key, value in doc.items() if key != "_id"})
