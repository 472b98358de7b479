"""Case speakers: the voices of a case, the file speakers linked to them, and the user's corrections.

The ``speakers`` step clusters the turns of one transcript version into **file speakers** (S1, S2,
... by first appearance) and links each to a **case speaker** (one voice across the case's files).
Users rename, merge and split case speakers; those corrections survive re-analysis (a new
transcript version of the same media) because of how they are stored:

* a **name** belongs to the case speaker, and a new version's file speaker is linked to the case
  speaker whose voice it matches (the previous version of the same media matches itself);
* a **merge** of A into B sets ``A.merged_into = B``; nothing else is rewritten, every reader
  resolves A to B (`resolution`), so a new version whose voice matches A's records lands in B;
* a **split** moves turns (those of one file speaker, or chosen segments) to a new case speaker C
  and stores a **pin**: the time spans of the moved turns in that media, pointing at C. The next
  analysis of that media assigns every segment that lies mostly inside a pinned span to the pin's
  speaker before clustering the rest; the newest pin wins where two overlap.

Collections (every document carries ``tenant_id`` and ``case_id``, so deleting the case removes
them with the rest of it):

* ``case_speakers``: ``_id`` = the speaker's id; ``number`` (stable, "Speaker 3"), ``name``,
  ``merged_into``, ``origin`` (analysis or split);
* ``speaker_numbers``: ``_id = {case_id}-n{number}``, one per number handed out (an insert with a
  taken id fails, so two writers never share a number);
* ``file_speakers``: ``_id = {media_id}-v{version}-{label}``: the turns (segment id, times, the
  turn's voice vector as base64 float32), the case speaker it is linked to and whether it belongs to
  the media's current labelled version. Its centroid is the ``voices`` vector with the same id, so
  a vector hit names its file speaker; hits of file speakers that are no longer current are ignored.
* ``speaker_pins``: the spans of a split, by media.

Writes that read first (number allocation, linking, corrections) run under the case's speaker
lock (`CaseSpeakerRepository.locked`) when the repository has a cache.
"""

from __future__ import annotations

import base64
import math
import uuid
from array import array
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from aima.domain import utcnow
from aima.storage.cache import Cache
from aima.storage.documents import DocumentStore
from aima.storage.factory import case_cache_prefix
from aima.storage.identities import CaseIdentity, Identities, IdentityError
from aima.storage.transcripts import TranscriptRepository
from aima.storage.vectors import VectorRecord, VectorStore

CASE_SPEAKERS = "case_speakers"
NUMBERS = "speaker_numbers"
FILE_SPEAKERS = "file_speakers"
PINS = "speaker_pins"
VOICES = "voices"
"""The vector collection of file-speaker centroids."""
LOCK_TIMEOUT_S = 120.0
_NAMESPACE = uuid.UUID("6f1c1a52-8d0e-4c55-9f61-2d9a3b1e7c40")

Origin = Literal["analysis", "split"]


SpeakerError = IdentityError
"""A correction that cannot be made (the message says why)."""


class SpeakerNotFound(SpeakerError):
    """No such speaker in the case, or it was merged into another (``merged_into`` names it)."""

    def __init__(self, message: str, merged_into: str | None = None) -> None:
        super().__init__(message)
        self.merged_into = merged_into


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class CaseSpeaker(CaseIdentity):
    """One voice across the files of a case ("Speaker N" until a user names it)."""

    NOUN: ClassVar[str] = "Speaker"

    origin: Origin = "analysis"


class Turn(_Model):
    """One segment of a file speaker, with its voice vector (base64 float32, little-endian)."""

    id: str
    start: float = Field(ge=0)
    end: float = Field(ge=0)
    vector: str

    @property
    def values(self) -> list[float]:
        return decode_vector(self.vector)


class FileSpeaker(_Model):
    """The turns of one voice in one transcript version of one media file."""

    id: str
    tenant_id: str
    case_id: str
    media_id: str
    version: int = Field(ge=1)
    label: str = Field(pattern=r"^S[1-9][0-9]{0,4}$")
    case_speaker_id: str
    turns: list[Turn]
    current: bool = False
    origin: Literal["analysis", "pinned", "split"] = "analysis"
    score: float | None = Field(default=None, description="similarity of the voice it was linked by")

    @property
    def seconds(self) -> float:
        return sum(turn.end - turn.start for turn in self.turns)

    def centroid(self) -> list[float]:
        """The normalised mean of the turns' vectors."""
        return unit_mean([turn.values for turn in self.turns])


class SpeakerPin(_Model):
    """Spans of one media file that belong to one case speaker (a split's record)."""

    id: str
    tenant_id: str
    case_id: str
    media_id: str
    case_speaker_id: str
    spans: list[tuple[float, float]]
    created_at: datetime = Field(default_factory=utcnow)
    created_by: str | None = None


class Appearance(_Model):
    """Where a case speaker speaks in one media file (its current labelled version)."""

    media_id: str
    version: int
    labels: list[str]
    spans: list[tuple[str, float, float]] = Field(description="segment id, start, end")

    @property
    def seconds(self) -> float:
        return sum(end - start for _, start, end in self.spans)


# --- vectors ------------------------------------------------------------------------------------


def encode_vector(values: Sequence[float]) -> str:
    return base64.b64encode(array("f", values).tobytes()).decode("ascii")


def decode_vector(text: str) -> list[float]:
    values = array("f")
    values.frombytes(base64.b64decode(text))
    return values.tolist()


def unit_mean(vectors: Sequence[Sequence[float]]) -> list[float]:
    """The mean of ``vectors`` scaled to unit length (ValueError for none, or a zero mean)."""
    if not vectors:
        raise ValueError("no vectors to average")
    size = len(vectors[0])
    total = [0.0] * size
    for vector in vectors:
        for i, x in enumerate(vector):
            total[i] += x
    norm = math.sqrt(sum(x * x for x in total))
    if not norm or not math.isfinite(norm):
        raise ValueError("the vectors average to zero")
    return [x / norm for x in total]


def file_speaker_id(media_id: str, version: int, label: str) -> str:
    return f"{media_id}-v{version}-{label}"


def new_speaker_id(*parts: object) -> str:
    """A speaker id derived from ``parts`` (the same parts give the same id: a re-run creates no twin)."""
    return str(uuid.uuid5(_NAMESPACE, "/".join(str(part) for part in parts)))


def covered(start: float, end: float, spans: Iterable[tuple[float, float]]) -> bool:
    """Whether most of ``[start, end]`` lies inside ``spans``."""
    length = end - start
    inside = sum(max(0.0, min(end, b) - max(start, a)) for a, b in spans)
    return inside > 0 and inside >= 0.5 * length


class CaseSpeakerRepository:
    """Case speakers, file speakers and corrections over the document store (see module docstring).

    ``vectors`` is needed by `save_analysis` and `split` (centroids go to the ``voices`` collection),
    ``transcripts`` by the corrections (they relabel the affected transcripts), ``cache`` for the
    case lock.
    """

    def __init__(
        self,
        documents: DocumentStore,
        *,
        transcripts: TranscriptRepository | None = None,
        vectors: VectorStore | Callable[[], VectorStore] | None = None,
        cache: Cache | None = None,
    ) -> None:
        """``vectors`` may be a function returning the store, so it is opened on first use."""
        self._docs = documents
        self._identities = Identities(documents, CASE_SPEAKERS, NUMBERS, CaseSpeaker)
        self._transcripts = transcripts or TranscriptRepository(documents)
        self._vectors_of = vectors
        self._cache = cache

    @property
    def _vectors(self) -> VectorStore | None:
        found = self._vectors_of
        if found is None or isinstance(found, VectorStore):
            return found
        store = found()
        self._vectors_of = store
        return store

    @contextmanager
    def locked(self, case_id: str, *, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
        """Hold the case's speaker lock (no-op without a cache)."""
        if self._cache is None:
            yield
            return
        with self._cache.lock(f"{case_cache_prefix(case_id)}speakers", timeout, blocking_timeout=timeout):
            yield

    # --- case speakers -------------------------------------------------------------------------

    def get(self, tenant_id: str, case_id: str, speaker_id: str) -> CaseSpeaker | None:
        return self._identities.get(tenant_id, case_id, speaker_id)

    def speakers(self, tenant_id: str, case_id: str, *, merged: bool = False) -> list[CaseSpeaker]:
        """The case's speakers by number; without ``merged``, only those not merged into another."""
        return self._identities.all(tenant_id, case_id, merged=merged)

    def resolution(self, tenant_id: str, case_id: str) -> dict[str, CaseSpeaker]:
        """Every speaker id of the case (merged ones included) -> the speaker it now is."""
        return self._identities.resolution(tenant_id, case_id)

    def resolve(self, tenant_id: str, case_id: str, speaker_id: str) -> CaseSpeaker | None:
        """The speaker ``speaker_id`` now is (itself, or the one it was merged into)."""
        return self.resolution(tenant_id, case_id).get(speaker_id)

    def display_names(self, tenant_id: str, case_id: str) -> dict[str, str]:
        """Case speaker id -> what to call it: the user's name, else "Speaker N". Ids of merged
        speakers map to the name of the speaker they were merged into."""
        return {sid: speaker.display_name for sid, speaker in self.resolution(tenant_id, case_id).items()}

    def create(
        self,
        tenant_id: str,
        case_id: str,
        speaker_id: str | None = None,
        *,
        name: str | None = None,
        origin: Origin = "analysis",
    ) -> CaseSpeaker:
        """A new speaker with the case's next number; with a given id, creating it twice returns the
        first (a re-run after a crash creates no twin)."""
        return self._identities.create(
            tenant_id, case_id, speaker_id or str(uuid.uuid4()), name=name, origin=origin
        )

    def rename(self, tenant_id: str, case_id: str, speaker_id: str, name: str | None) -> CaseSpeaker:
        """Give the speaker a name (None or blank: back to "Speaker N")."""
        with self.locked(case_id):
            return self._identities.rename(self._active(tenant_id, case_id, speaker_id), name)

    def merge(self, tenant_id: str, case_id: str, source_id: str, into_id: str) -> CaseSpeaker:
        """Merge ``source_id`` into ``into_id``; returns the speaker that remains. It keeps its name,
        or takes the merged speaker's if it had none. The affected transcripts are relabelled."""
        if source_id == into_id:
            raise SpeakerError("a speaker cannot be merged with itself")
        with self.locked(case_id):
            source = self._active(tenant_id, case_id, source_id)
            into = self._active(tenant_id, case_id, into_id)
            resolution = self.resolution(tenant_id, case_id)
            affected = {
                fs.media_id
                for fs in self.file_speakers(tenant_id, case_id)
                if resolution.get(fs.case_speaker_id, source).id == source.id
            }
            remaining = self._identities.merge(source, into)
            for media_id in sorted(affected):
                self.relabel(tenant_id, case_id, media_id)
            return remaining

    def split(
        self,
        tenant_id: str,
        case_id: str,
        speaker_id: str,
        media_id: str,
        *,
        label: str | None = None,
        segment_ids: Sequence[str] | None = None,
        name: str | None = None,
        actor: str | None = None,
    ) -> CaseSpeaker:
        """Move turns of ``speaker_id`` in ``media_id`` to a new speaker: those of file speaker
        ``label``, or the segments ``segment_ids``. Pins their spans (so a re-analysis keeps them
        apart), recomputes the centroids and relabels the transcript; returns the new speaker."""
        if (label is None) == (not segment_ids):
            raise SpeakerError("name either a file speaker label or segment ids")
        if self._vectors is None:
            raise RuntimeError("splitting needs the vector store")
        with self.locked(case_id):
            speaker = self._active(tenant_id, case_id, speaker_id)
            resolution = self.resolution(tenant_id, case_id)
            mine = [
                fs
                for fs in self.file_speakers(tenant_id, case_id)
                if resolution.get(fs.case_speaker_id, speaker).id == speaker.id
            ]
            here = [fs for fs in mine if fs.media_id == media_id]
            if label is not None:
                chosen = {turn.id for fs in here if fs.label == label for turn in fs.turns}
                if not chosen:
                    raise SpeakerError(f"the speaker has no file speaker {label} in that media")
            else:
                wanted = list(dict.fromkeys(segment_ids or ()))
                owned = {turn.id for fs in here for turn in fs.turns}
                unknown = [sid for sid in wanted if sid not in owned]
                if unknown:
                    raise SpeakerError(f"not turns of this speaker in that media: {', '.join(unknown[:5])}")
                chosen = set(wanted)
            remaining = sum(1 for fs in mine for turn in fs.turns if turn.id not in chosen)
            if remaining == 0:
                raise SpeakerError("that would leave the speaker without turns; rename it instead")
            created = self.create(tenant_id, case_id, name=name, origin="split")
            moved = [turn for fs in here for turn in fs.turns if turn.id in chosen]
            self._move(here, chosen, created.id)
            pin = SpeakerPin(
                id=str(uuid.uuid4()),
                tenant_id=tenant_id,
                case_id=case_id,
                media_id=media_id,
                case_speaker_id=created.id,
                spans=[(turn.start, turn.end) for turn in sorted(moved, key=lambda t: t.start)],
                created_by=actor,
            )
            self._docs.insert_one(PINS, {"_id": pin.id, **pin.model_dump(mode="python", exclude={"id"})})
            self.relabel(tenant_id, case_id, media_id)
            return created

    def _move(self, here: list[FileSpeaker], chosen: set[str], target: str) -> None:
        """Give the ``chosen`` turns of the file speakers ``here`` (one media, its current version) to
        ``target``: a file speaker that loses every turn is relinked, one that keeps some keeps its
        label, and the turns it lost become a new file speaker with the next free label."""
        changed: list[FileSpeaker] = []
        taken: list[Turn] = []
        for fs in here:
            gone = [turn for turn in fs.turns if turn.id in chosen]
            if not gone:
                continue
            keep = [turn for turn in fs.turns if turn.id not in chosen]
            if keep:
                changed.append(fs.model_copy(update={"turns": keep}))
                taken.extend(gone)
            else:
                changed.append(
                    fs.model_copy(update={"case_speaker_id": target, "origin": "split", "score": None})
                )
        if taken:
            first = here[0]
            siblings = self.file_speakers(first.tenant_id, first.case_id, first.media_id, current=None)
            used = [int(fs.label[1:]) for fs in siblings if fs.version == first.version]
            label = f"S{max(used, default=0) + 1}"
            changed.append(
                FileSpeaker(
                    id=file_speaker_id(first.media_id, first.version, label),
                    tenant_id=first.tenant_id,
                    case_id=first.case_id,
                    media_id=first.media_id,
                    version=first.version,
                    label=label,
                    case_speaker_id=target,
                    turns=sorted(taken, key=lambda turn: turn.start),
                    current=True,
                    origin="split",
                )
            )
        self.save_file_speakers(changed)

    def _active(self, tenant_id: str, case_id: str, speaker_id: str) -> CaseSpeaker:
        speaker = self.get(tenant_id, case_id, speaker_id)
        if speaker is None:
            raise SpeakerNotFound("no such speaker")
        if speaker.merged_into is not None:
            survivor = self.resolve(tenant_id, case_id, speaker_id)
            raise SpeakerNotFound(
                "the speaker was merged into another", survivor.id if survivor else speaker.merged_into
            )
        return speaker

    # --- file speakers -------------------------------------------------------------------------

    def file_speakers(
        self, tenant_id: str, case_id: str, media_id: str | None = None, *, current: bool | None = True
    ) -> list[FileSpeaker]:
        """File speakers of the case (or one media), of the current labelled versions unless
        ``current`` is None (all) or False (superseded ones)."""
        where = _where(tenant_id, case_id)
        if media_id is not None:
            where["media_id"] = media_id
        if current is not None:
            where["current"] = current
        docs = self._docs.find(FILE_SPEAKERS, where, sort=[("media_id", 1), ("version", 1), ("label", 1)])
        return [_file_speaker(doc) for doc in docs]

    def file_speakers_by_id(self, tenant_id: str, case_id: str, ids: Sequence[str]) -> dict[str, FileSpeaker]:
        if not ids:
            return {}
        docs = self._docs.find(FILE_SPEAKERS, _where(tenant_id, case_id, _id={"$in": list(ids)}))
        return {str(doc["_id"]): _file_speaker(doc) for doc in docs}

    def save_file_speakers(self, speakers: Sequence[FileSpeaker]) -> None:
        """Upsert the file speakers and their centroids (``voices`` vectors with the same ids)."""
        if not speakers:
            return
        vectors = self._vectors
        if vectors is None:
            raise RuntimeError("saving file speakers needs the vector store")
        vectors.upsert(
            VOICES,
            [
                VectorRecord(fs.id, fs.tenant_id, fs.case_id, fs.media_id, fs.centroid(), ref=fs.id)
                for fs in speakers
            ],
        )
        for fs in speakers:
            doc = fs.model_dump(mode="python", exclude={"id", "tenant_id", "case_id"})
            self._docs.update_one(
                FILE_SPEAKERS, _where(fs.tenant_id, fs.case_id, _id=fs.id), {"$set": doc}, upsert=True
            )

    def make_current(self, tenant_id: str, case_id: str, media_id: str, ids: Collection[str]) -> None:
        """Make the file speakers ``ids`` the media's current ones (its newest labelled version) and
        every other file speaker of the media superseded."""
        for fs in self.file_speakers(tenant_id, case_id, media_id, current=None):
            wanted = fs.id in ids
            if fs.current != wanted:
                self._docs.update_one(
                    FILE_SPEAKERS, _where(tenant_id, case_id, _id=fs.id), {"$set": {"current": wanted}}
                )

    def relabel(self, tenant_id: str, case_id: str, media_id: str) -> bool:
        """Write the current file speakers' labels and (resolved) case speakers onto their transcript."""
        current = self.file_speakers(tenant_id, case_id, media_id)
        if not current:
            return False
        resolution = self.resolution(tenant_id, case_id)
        labels: dict[str, tuple[str | None, str | None]] = {}
        for fs in current:
            speaker = resolution.get(fs.case_speaker_id)
            for turn in fs.turns:
                labels[turn.id] = (fs.label, speaker.id if speaker else fs.case_speaker_id)
        return self._transcripts.label_speakers(tenant_id, case_id, media_id, current[0].version, labels)

    def appearances(self, tenant_id: str, case_id: str) -> dict[str, list[Appearance]]:
        """Resolved case speaker id -> where it speaks (current versions), media in id order."""
        resolution = self.resolution(tenant_id, case_id)
        found: dict[str, dict[str, Appearance]] = {}
        for fs in self.file_speakers(tenant_id, case_id):
            speaker = resolution.get(fs.case_speaker_id)
            key = speaker.id if speaker else fs.case_speaker_id
            per_media = found.setdefault(key, {})
            appearance = per_media.get(fs.media_id)
            if appearance is None:
                appearance = per_media[fs.media_id] = Appearance(
                    media_id=fs.media_id, version=fs.version, labels=[], spans=[]
                )
            appearance.labels.append(fs.label)
            appearance.spans.extend((turn.id, turn.start, turn.end) for turn in fs.turns)
        for per_media in found.values():
            for appearance in per_media.values():
                appearance.labels.sort(key=lambda label: int(label[1:]))
                appearance.spans.sort(key=lambda span: span[1])
        return {key: list(per_media.values()) for key, per_media in found.items()}

    # --- pins ----------------------------------------------------------------------------------

    def pins(self, tenant_id: str, case_id: str, media_id: str) -> list[SpeakerPin]:
        """The media's pins, oldest first (a later pin wins where two overlap)."""
        docs = self._docs.find(PINS, _where(tenant_id, case_id, media_id=media_id), sort=[("created_at", 1)])
        return [SpeakerPin.model_validate({**doc, "id": doc["_id"]}) for doc in docs]

    def delete_media(self, tenant_id: str, case_id: str, media_id: str) -> int:
        """Forget a deleted media file's file speakers and pins (its vectors go with the media's)."""
        where = _where(tenant_id, case_id, media_id=media_id)
        return self._docs.delete_many(FILE_SPEAKERS, where) + self._docs.delete_many(PINS, where)


def _where(tenant_id: str, case_id: str, **fields: Any) -> dict[str, Any]:
    return {"tenant_id": tenant_id, "case_id": case_id, **fields}


def _file_speaker(doc: Mapping[str, Any]) -> FileSpeaker:
    return FileSpeaker.model_validate({**doc, "id": doc["_id"]})
