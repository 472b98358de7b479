"""Persons: the faces of a case grouped across its files, and the user's corrections.

The ``persons`` step links every face track of a file (`aima.storage.faces`) to a **person** of
the case, or leaves it **unassigned** when it fits no person well enough. Users rename, merge and
split persons; the corrections survive re-analysis (a new face version of the same file) because
a new version's track that matches a track of the file's previous version (the same face on the
same frames: similarity at least `SAME_TRACK`) takes over that track's person, whatever put it
there: the analysis or a user. Merges are stored as ``merged_into`` and resolved on reading
(`resolution`), so a track that lands on a merged person lands on the one it was merged into.

Collections (every document carries ``tenant_id`` and ``case_id``, so deleting the case removes
them with the rest of it):

* ``persons``: ``_id`` = the person's id; ``number`` (stable: "Person 3"), ``name``,
  ``merged_into``, ``origin`` (analysis or split);
* ``person_numbers``: ``_id = {case_id}-n{number}``, one per number handed out (an insert with a
  taken id fails, so two writers never share a number);
* ``person_tracks``: ``_id`` = the face track's id: its media, face version, person (None:
  unassigned, with the reason), the similarity it was linked by, who linked it (``analysis``,
  ``previous`` version, ``user``), whether it belongs to the media's current face version, and
  what a gallery shows (crop key, frame, times, quality).

Writes that read first run under the case's persons lock (`PersonRepository.locked`) when the
repository has a cache.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from aima.storage.cache import Cache
from aima.storage.documents import DocumentStore
from aima.storage.factory import case_cache_prefix
from aima.storage.identities import CaseIdentity, Identities, IdentityError

PERSONS = "persons"
NUMBERS = "person_numbers"
TRACKS = "person_tracks"
SAME_TRACK = 0.95
"""A new version's track is the previous version's track of the same file from this similarity."""
LOCK_TIMEOUT_S = 120.0
_NAMESPACE = uuid.UUID("3b8e2f7a-61c4-4d0e-9a5b-7c2d1e4f8a90")

Origin = Literal["analysis", "split"]
LinkedBy = Literal["analysis", "previous", "user"]


PersonError = IdentityError
"""A correction that cannot be made (the message says why)."""


class PersonNotFound(PersonError):
    """No such person in the case, or it was merged into another (``merged_into`` names it)."""

    def __init__(self, message: str, merged_into: str | None = None) -> None:
        super().__init__(message)
        self.merged_into = merged_into


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Person(CaseIdentity):
    """One face across the files of a case; named by a reviewer, never by a model ("Person N")."""

    NOUN: ClassVar[str] = "Person"

    origin: Origin = "analysis"


class PersonTrack(_Model):
    """A face track and the person it belongs to (None: unassigned)."""

    id: str
    tenant_id: str
    case_id: str
    media_id: str
    faces_version: int = Field(ge=1)
    label: str
    person_id: str | None = None
    reason: str | None = Field(default=None, description="why it is unassigned")
    score: float | None = Field(default=None, description="similarity it was linked by")
    linked_by: LinkedBy = "analysis"
    current: bool = True
    crop_key: str | None = None
    frame_id: str
    first_s: float = Field(ge=0)
    last_s: float = Field(ge=0)
    quality: float = Field(ge=0, le=1)
    faces: int = Field(ge=1, description="detections in the track")
    vector: str = Field(description="the track's unit vector, base64 float32")


def new_person_id(*parts: object) -> str:
    """A person id derived from ``parts`` (the same parts give the same id: a re-run makes no twin)."""
    return str(uuid.uuid5(_NAMESPACE, "/".join(str(part) for part in parts)))


class PersonRepository:
    """Persons, their tracks and the corrections over the document store (see module docstring)."""

    def __init__(self, documents: DocumentStore, *, cache: Cache | None = None) -> None:
        self._docs = documents
        self._identities = Identities(documents, PERSONS, NUMBERS, Person)
        self._cache = cache

    @contextmanager
    def locked(self, case_id: str, *, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
        """Hold the case's persons lock (no-op without a cache)."""
        if self._cache is None:
            yield
            return
        with self._cache.lock(f"{case_cache_prefix(case_id)}persons", timeout, blocking_timeout=timeout):
            yield

    # --- persons -------------------------------------------------------------------------------

    def get(self, tenant_id: str, case_id: str, person_id: str) -> Person | None:
        return self._identities.get(tenant_id, case_id, person_id)

    def persons(self, tenant_id: str, case_id: str, *, merged: bool = False) -> list[Person]:
        """The case's persons by number; without ``merged``, only those not merged into another."""
        return self._identities.all(tenant_id, case_id, merged=merged)

    def resolution(self, tenant_id: str, case_id: str) -> dict[str, Person]:
        """Every person id of the case (merged ones included) -> the person it now is."""
        return self._identities.resolution(tenant_id, case_id)

    def create(
        self,
        tenant_id: str,
        case_id: str,
        person_id: str,
        *,
        name: str | None = None,
        origin: Origin = "analysis",
    ) -> Person:
        """A new person with the case's next number; creating the same id twice returns the first."""
        return self._identities.create(tenant_id, case_id, person_id, name=name, origin=origin)

    def rename(self, tenant_id: str, case_id: str, person_id: str, name: str | None) -> Person:
        """Give the person a name (None or blank: back to "Person N")."""
        with self.locked(case_id):
            return self._identities.rename(self._active(tenant_id, case_id, person_id), name)

    def merge(self, tenant_id: str, case_id: str, source_id: str, into_id: str) -> Person:
        """Merge ``source_id`` into ``into_id``; returns the person that remains (it keeps its name,
        or takes the merged person's if it had none)."""
        if source_id == into_id:
            raise PersonError("a person cannot be merged with itself")
        with self.locked(case_id):
            source = self._active(tenant_id, case_id, source_id)
            into = self._active(tenant_id, case_id, into_id)
            return self._identities.merge(source, into)

    def split(
        self,
        tenant_id: str,
        case_id: str,
        person_id: str,
        track_ids: Sequence[str],
        *,
        name: str | None = None,
    ) -> Person:
        """Move the tracks ``track_ids`` of a person to a new person; returns the new person."""
        wanted = list(dict.fromkeys(track_ids))
        if not wanted:
            raise PersonError("name the tracks to split off")
        with self.locked(case_id):
            person = self._active(tenant_id, case_id, person_id)
            mine = self.tracks_of(tenant_id, case_id, person.id)
            owned = {track.id for track in mine}
            unknown = [tid for tid in wanted if tid not in owned]
            if unknown:
                raise PersonError(f"not tracks of this person: {', '.join(unknown[:5])}")
            if len(owned) == len(wanted):
                raise PersonError("that would leave the person without faces; rename it instead")
            created = self.create(tenant_id, case_id, str(uuid.uuid4()), name=name, origin="split")
            for tid in wanted:
                self._docs.update_one(
                    TRACKS,
                    _where(tenant_id, case_id, _id=tid),
                    {"$set": {"person_id": created.id, "linked_by": "user", "score": None, "reason": None}},
                )
            return created

    def _active(self, tenant_id: str, case_id: str, person_id: str) -> Person:
        person = self.get(tenant_id, case_id, person_id)
        if person is None:
            raise PersonNotFound("no such person")
        if person.merged_into is not None:
            survivor = self.resolution(tenant_id, case_id).get(person_id)
            raise PersonNotFound("the person was merged into another", survivor.id if survivor else None)
        return person

    # --- tracks --------------------------------------------------------------------------------

    def tracks(
        self, tenant_id: str, case_id: str, media_id: str | None = None, *, current: bool | None = True
    ) -> list[PersonTrack]:
        """Tracks of the case (or one media), of the current face versions unless ``current`` is
        None (all) or False (superseded ones)."""
        where = _where(tenant_id, case_id)
        if media_id is not None:
            where["media_id"] = media_id
        if current is not None:
            where["current"] = current
        docs = self._docs.find(TRACKS, where, sort=[("media_id", 1), ("first_s", 1), ("label", 1)])
        return [_track(doc) for doc in docs]

    def tracks_by_id(self, tenant_id: str, case_id: str, ids: Sequence[str]) -> dict[str, PersonTrack]:
        if not ids:
            return {}
        docs = self._docs.find(TRACKS, _where(tenant_id, case_id, _id={"$in": list(ids)}))
        return {str(doc["_id"]): _track(doc) for doc in docs}

    def tracks_of(self, tenant_id: str, case_id: str, person_id: str) -> list[PersonTrack]:
        """The current tracks of the person (and of the persons merged into it), best first."""
        resolution = self.resolution(tenant_id, case_id)
        found = [
            track
            for track in self.tracks(tenant_id, case_id)
            if track.person_id is not None
            and resolution.get(track.person_id) is not None
            and resolution[track.person_id].id == person_id
        ]
        return sorted(found, key=lambda track: (-track.quality, track.media_id, track.first_s))

    def save_tracks(self, tracks: Sequence[PersonTrack]) -> None:
        """Upsert the tracks (deterministic ids: a redelivered event writes the same documents)."""
        for track in tracks:
            doc = track.model_dump(mode="python", exclude={"id", "tenant_id", "case_id"})
            self._docs.update_one(
                TRACKS, _where(track.tenant_id, track.case_id, _id=track.id), {"$set": doc}, upsert=True
            )

    def make_current(self, tenant_id: str, case_id: str, media_id: str, faces_version: int) -> None:
        """Make the media's tracks of ``faces_version`` current and its other versions' superseded."""
        for track in self.tracks(tenant_id, case_id, media_id, current=None):
            wanted = track.faces_version == faces_version
            if track.current != wanted:
                self._docs.update_one(
                    TRACKS, _where(tenant_id, case_id, _id=track.id), {"$set": {"current": wanted}}
                )


def _where(tenant_id: str, case_id: str, **fields: Any) -> dict[str, Any]:
    return {"tenant_id": tenant_id, "case_id": case_id, **fields}


def _track(doc: Mapping[str, Any]) -> PersonTrack:
    return PersonTrack.model_validate({**doc, "id": doc["_id"]})
