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
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from aima.domain import utcnow
from aima.storage.cache import Cache
from aima.storage.documents import DocumentStore, DuplicateDocument
from aima.storage.factory import case_cache_prefix
from aima.storage.speakers import clean_name

PERSONS = "persons"
NUMBERS = "person_numbers"
TRACKS = "person_tracks"
SAME_TRACK = 0.95
"""A new version's track is the previous version's track of the same file from this similarity."""
LOCK_TIMEOUT_S = 120.0
MAX_MERGE_CHAIN = 64
_NAMESPACE = uuid.UUID("3b8e2f7a-61c4-4d0e-9a5b-7c2d1e4f8a90")

Origin = Literal["analysis", "split"]
LinkedBy = Literal["analysis", "previous", "user"]


class PersonError(ValueError):
    """A correction that cannot be made (the message says why)."""


class PersonNotFound(PersonError):
    """No such person in the case, or it was merged into another (``merged_into`` names it)."""

    def __init__(self, message: str, merged_into: str | None = None) -> None:
        super().__init__(message)
        self.merged_into = merged_into


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Person(_Model):
    """One face across the files of a case; named by a reviewer, never by a model."""

    id: str
    tenant_id: str
    case_id: str
    number: int = Field(ge=1)
    name: str | None = None
    merged_into: str | None = None
    origin: Origin = "analysis"
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    @property
    def display_name(self) -> str:
        """The user's name for it, else "Person N" (N stays the same for the person's life)."""
        return self.name or f"Person {self.number}"


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
        doc = self._docs.find_one(PERSONS, _where(tenant_id, case_id, _id=person_id))
        return _person(doc) if doc else None

    def persons(self, tenant_id: str, case_id: str, *, merged: bool = False) -> list[Person]:
        """The case's persons by number; without ``merged``, only those not merged into another."""
        docs = self._docs.find(PERSONS, _where(tenant_id, case_id), sort=[("number", 1)])
        persons = [_person(doc) for doc in docs]
        return persons if merged else [p for p in persons if p.merged_into is None]

    def resolution(self, tenant_id: str, case_id: str) -> dict[str, Person]:
        """Every person id of the case (merged ones included) -> the person it now is."""
        persons = {p.id: p for p in self.persons(tenant_id, case_id, merged=True)}
        resolved: dict[str, Person] = {}
        for person in persons.values():
            current = person
            for _ in range(MAX_MERGE_CHAIN):
                if current.merged_into is None or current.merged_into not in persons:
                    break
                current = persons[current.merged_into]
            resolved[person.id] = current
        return resolved

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
        existing = self.get(tenant_id, case_id, person_id)
        if existing is not None:
            return existing
        number = self._reserve_number(tenant_id, case_id, person_id)
        now = utcnow()
        person = Person(
            id=person_id,
            tenant_id=tenant_id,
            case_id=case_id,
            number=number,
            name=clean_name(name),
            origin=origin,
            created_at=now,
            updated_at=now,
        )
        try:
            self._docs.insert_one(
                PERSONS, {"_id": person_id, **person.model_dump(mode="python", exclude={"id"})}
            )
        except DuplicateDocument:
            found = self.get(tenant_id, case_id, person_id)
            if found is None:
                raise
            return found
        return person

    def _reserve_number(self, tenant_id: str, case_id: str, person_id: str) -> int:
        mine = self._docs.find_one(NUMBERS, _where(tenant_id, case_id, person_id=person_id))
        if mine is not None:
            return int(mine["number"])
        last = self._docs.find(NUMBERS, _where(tenant_id, case_id), sort=[("number", -1)], limit=1)
        number = int(last[0]["number"]) + 1 if last else 1
        while True:
            doc = {"_id": f"{case_id}-n{number}", **_where(tenant_id, case_id)}
            try:
                self._docs.insert_one(NUMBERS, {**doc, "number": number, "person_id": person_id})
            except DuplicateDocument:
                number += 1
                continue
            return number

    def rename(self, tenant_id: str, case_id: str, person_id: str, name: str | None) -> Person:
        """Give the person a name (None or blank: back to "Person N")."""
        with self.locked(case_id):
            person = self._active(tenant_id, case_id, person_id)
            update = {"name": clean_name(name), "updated_at": utcnow()}
            self._docs.update_one(PERSONS, _where(tenant_id, case_id, _id=person.id), {"$set": update})
            return person.model_copy(update=update)

    def merge(self, tenant_id: str, case_id: str, source_id: str, into_id: str) -> Person:
        """Merge ``source_id`` into ``into_id``; returns the person that remains (it keeps its name,
        or takes the merged person's if it had none)."""
        if source_id == into_id:
            raise PersonError("a person cannot be merged with itself")
        with self.locked(case_id):
            source = self._active(tenant_id, case_id, source_id)
            into = self._active(tenant_id, case_id, into_id)
            now = utcnow()
            self._docs.update_one(
                PERSONS,
                _where(tenant_id, case_id, _id=source.id),
                {"$set": {"merged_into": into.id, "updated_at": now}},
            )
            update: dict[str, Any] = {"updated_at": now}
            if into.name is None and source.name is not None:
                update["name"] = source.name
            self._docs.update_one(PERSONS, _where(tenant_id, case_id, _id=into.id), {"$set": update})
            return into.model_copy(update=update)

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


def _person(doc: Mapping[str, Any]) -> Person:
    return Person.model_validate({**doc, "id": doc["_id"]})


def _track(doc: Mapping[str, Any]) -> PersonTrack:
    return PersonTrack.model_validate({**doc, "id": doc["_id"]})
