"""The persons of a case: whose face appears in which files, the faces of each, and the user's corrections.

* ``GET /cases/{case_id}/persons``: every person (merged ones are gone) by number, with the name to
  show (the user's, else "Person N"), how many face tracks and files it has, per file its first and
  last appearance, the URL of its best crop, and how many tracks of the case are unassigned;
* ``GET .../persons/unassigned``: the tracks that fit no person well enough, best first, each with
  the reason;
* ``GET .../persons/{person_id}``: one person with its gallery: every current track, best first;
* ``PATCH .../persons/{person_id}``: rename (``{"name": null}`` gives back "Person N");
* ``POST .../persons/{person_id}/merge``: ``{"into": OTHER}`` merges this person into OTHER and
  returns OTHER;
* ``POST .../persons/{person_id}/split``: ``{"track_ids": [...], "name"?}`` moves those tracks of
  this person to a new person (201, the new person).

A crop URL is the path of the image route that serves it (``.../media/{media_id}/crops/{frame_id}/
{name}``, blurred while its frame is sensitive), never the object key. Reading needs ``case.read``
(viewers), corrections ``case.update`` (analysts, owners); every call writes one audit record, a
correction's naming the person it touched. Corrections survive re-analysis (`aima.storage.persons`).
Problems: 404 for a person the case does not have, or one merged into another (the detail and the
``merged_into`` member name it); 422 for a correction that cannot be made (merging a person into
itself, tracks it does not have, a split that would leave it without faces).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from aima.access.policy import Action
from aima.storage.blurred import media_prefix
from aima.storage.cache import LockTimeout
from aima.storage.persons import Person, PersonError, PersonNotFound, PersonRepository, PersonTrack
from functions.api.problems import Problem
from functions.api.routes.images import NAME_PATTERN
from functions.api.schemas import CaseId
from functions.api.security import API_PREFIX, Access, RouteTable, api_route

router = RouteTable(tags=["persons"])

ID = r"^[A-Za-z0-9_-]{1,36}$"
PersonId = Annotated[str, Path(pattern=ID, description="A person's id.")]
Name = Annotated[str, StringConstraints(max_length=100, pattern=r"^[^\x00-\x1f\x7f]*$")]
TrackId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,100}$")]
_FRAME = re.compile(r"[A-Za-z0-9_-]{1,100}")
_NAME = re.compile(NAME_PATTERN)
BASE = "/cases/{case_id}/persons"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PersonRename(_In):
    name: Name | None = Field(description="the name to show; null or blank: back to 'Person N'")


class PersonMerge(_In):
    into: Annotated[str, StringConstraints(pattern=ID)] = Field(
        description="the person this one is merged into (it keeps its name, or takes this one's if it "
        "has none); this person's id then answers 404 naming it"
    )


class PersonSplit(_In):
    track_ids: list[TrackId] = Field(
        min_length=1, max_length=10_000, description="tracks of this person to move to a new person"
    )
    name: Name | None = Field(default=None, description="a name for the new person")


class AppearanceOut(BaseModel):
    media_id: str
    tracks: int
    first_s: float = Field(description="when the person first appears in the file")
    last_s: float = Field(description="when the person last appears in the file")


class PersonOut(BaseModel):
    id: str
    number: int
    name: str | None
    display_name: str
    origin: Literal["analysis", "split"]
    track_count: int = Field(description="the person's face tracks in the current face versions")
    media_count: int
    media: list[AppearanceOut] = Field(description="per file, in order of media id")
    best_crop_url: str | None = Field(description="the crop of its best track (null: no crop stored)")
    created_at: datetime
    updated_at: datetime


class PersonsOut(BaseModel):
    persons: list[PersonOut]
    unassigned: int = Field(description="tracks of the case that belong to no person")


class TrackOut(BaseModel):
    id: str
    media_id: str
    faces_version: int
    label: str = Field(description="the track's label in the file's face result (F1, F2, ...)")
    first_s: float
    last_s: float
    quality: float
    faces: int = Field(description="detections in the track")
    frame_id: str = Field(description="the frame its crop was cut from")
    crop_url: str | None = Field(description="the path of the crop's image route (null: none stored)")


class GalleryTrackOut(TrackOut):
    linked_by: Literal["analysis", "previous", "user"] = Field(
        description="who put it here: the analysis, the file's previous face version, or a user"
    )
    score: float | None = Field(description="the similarity it was linked by")


class UnassignedOut(TrackOut):
    reason: str | None = Field(description="why it belongs to no person")


class GalleryOut(PersonOut):
    gallery: list[GalleryTrackOut] = Field(description="every current track of the person, best first")


def crop_url(case_id: str, track: PersonTrack) -> str | None:
    """The path of the route serving the track's crop (derived from its key), or None."""
    key = track.crop_key
    prefix = f"{media_prefix(case_id, track.media_id)}/crops/"
    if not key or not key.startswith(prefix):
        return None
    frame_id, _, name = key[len(prefix) :].partition("/")
    if not _FRAME.fullmatch(frame_id) or not _NAME.fullmatch(name):
        return None
    return f"{API_PREFIX}/cases/{case_id}/media/{track.media_id}/crops/{frame_id}/{name}"


def best_first(tracks: Sequence[PersonTrack]) -> list[PersonTrack]:
    """Tracks by quality, the best first (then by file and time), as `PersonRepository.tracks_of`."""
    return sorted(tracks, key=lambda t: (-t.quality, t.media_id, t.first_s, t.label))


def _out(case_id: str, person: Person, tracks: Sequence[PersonTrack]) -> PersonOut:
    """``tracks``: the person's, best first."""
    by_media: dict[str, list[PersonTrack]] = defaultdict(list)
    for track in tracks:
        by_media[track.media_id].append(track)
    media = [
        AppearanceOut(
            media_id=media_id,
            tracks=len(found),
            first_s=min(t.first_s for t in found),
            last_s=max(t.last_s for t in found),
        )
        for media_id, found in sorted(by_media.items())
    ]
    best = next((url for t in tracks if (url := crop_url(case_id, t)) is not None), None)
    return PersonOut(
        id=person.id,
        number=person.number,
        name=person.name,
        display_name=person.display_name,
        origin=person.origin,
        track_count=len(tracks),
        media_count=len(media),
        media=media,
        best_crop_url=best,
        created_at=person.created_at,
        updated_at=person.updated_at,
    )


def _track_fields(case_id: str, track: PersonTrack) -> dict[str, object]:
    return {
        "id": track.id,
        "media_id": track.media_id,
        "faces_version": track.faces_version,
        "label": track.label,
        "first_s": track.first_s,
        "last_s": track.last_s,
        "quality": track.quality,
        "faces": track.faces,
        "frame_id": track.frame_id,
        "crop_url": crop_url(case_id, track),
    }


def _repository(access: Access) -> PersonRepository:
    stores = access.services.stores
    return PersonRepository(stores.documents, cache=stores.cache)


def _not_found(merged_into: str | None) -> Problem:
    if merged_into is None:
        return Problem(404, "not-found", "Not Found", "No such person.")
    return Problem(
        404,
        "not-found",
        "Not Found",
        f"The person was merged into person {merged_into}.",
        extensions={"merged_into": merged_into},
    )


@contextmanager
def _problems() -> Iterator[None]:
    """The kernel's refusals as problems."""
    try:
        yield
    except PersonNotFound as exc:
        raise _not_found(exc.merged_into) from None
    except PersonError as exc:  # also a name `clean_name` refuses (the identities' error)
        raise Problem(422, "invalid-correction", "Correction not possible", f"{exc}.") from None
    except LockTimeout:
        raise Problem(
            503,
            "busy",
            "Persons busy",
            "The case's persons are being updated; try again.",
            headers={"Retry-After": "5"},
        ) from None


def _person_out(repository: PersonRepository, access: Access, case_id: str, person_id: str) -> PersonOut:
    tenant_id = access.subject.tenant_id
    person = repository.get(tenant_id, case_id, person_id)
    if person is None:
        raise _not_found(None)
    return _out(case_id, person, repository.tracks_of(tenant_id, case_id, person.id))


@api_route(router, "GET", BASE, action=Action.CASE_READ)
def list_persons(case_id: CaseId, access: Access) -> PersonsOut:
    """The case's persons by number, with their tracks and files (current face versions), and how many
    tracks are unassigned."""
    access.require_case()
    repository = _repository(access)
    tenant_id = access.subject.tenant_id
    resolution = repository.resolution(tenant_id, case_id)
    mine: dict[str, list[PersonTrack]] = defaultdict(list)
    unassigned = 0
    for track in repository.tracks(tenant_id, case_id):
        if track.person_id is None:
            unassigned += 1
        elif (person := resolution.get(track.person_id)) is not None:
            mine[person.id].append(track)
    persons = [
        _out(case_id, p, best_first(mine.get(p.id, []))) for p in repository.persons(tenant_id, case_id)
    ]
    access.audit(object=f"case/{case_id}/persons", detail={"persons": len(persons), "unassigned": unassigned})
    return PersonsOut(persons=persons, unassigned=unassigned)


# before ``/persons/{person_id}``, which would take "unassigned" for a person's id
@api_route(router, "GET", BASE + "/unassigned", action=Action.CASE_READ)
def unassigned_tracks(case_id: CaseId, access: Access) -> list[UnassignedOut]:
    """The face tracks that belong to no person (current face versions), best first, with the reason."""
    access.require_case()
    tracks = _repository(access).tracks(access.subject.tenant_id, case_id)
    found = best_first([t for t in tracks if t.person_id is None])
    access.audit(object=f"case/{case_id}/persons/unassigned", detail={"tracks": len(found)})
    return [UnassignedOut.model_validate(_track_fields(case_id, t) | {"reason": t.reason}) for t in found]


@api_route(router, "GET", BASE + "/{person_id}", action=Action.CASE_READ)
def person_gallery(case_id: CaseId, person_id: PersonId, access: Access) -> GalleryOut:
    """The person with its gallery: every current track (file, label, times, quality, who linked it,
    crop), best first. A merged person's id answers 404 naming the person it was merged into."""
    access.require_case()
    repository = _repository(access)
    tenant_id = access.subject.tenant_id
    person = repository.get(tenant_id, case_id, person_id)
    if person is None:
        raise _not_found(None)
    if person.merged_into is not None:
        survivor = repository.resolution(tenant_id, case_id).get(person_id)
        raise _not_found(survivor.id if survivor is not None else person.merged_into)
    tracks = repository.tracks_of(tenant_id, case_id, person.id)
    gallery = [
        GalleryTrackOut.model_validate(
            _track_fields(case_id, t) | {"linked_by": t.linked_by, "score": t.score}
        )
        for t in tracks
    ]
    access.audit(object=f"person/{person_id}", detail={"tracks": len(gallery)})
    return GalleryOut(**_out(case_id, person, tracks).model_dump(), gallery=gallery)


@api_route(router, "PATCH", BASE + "/{person_id}", action=Action.CASE_UPDATE)
def rename_person(case_id: CaseId, person_id: PersonId, body: PersonRename, access: Access) -> PersonOut:
    """Name the person; the name stays with its faces when the case's files are analysed again."""
    access.require_case()
    repository = _repository(access)
    with _problems():
        renamed = repository.rename(access.subject.tenant_id, case_id, person_id, body.name)
    access.audit(
        object=f"person/{person_id}", detail={"correction": "rename", "named": renamed.name is not None}
    )
    return _person_out(repository, access, case_id, person_id)


@api_route(router, "POST", BASE + "/{person_id}/merge", action=Action.CASE_UPDATE)
def merge_person(case_id: CaseId, person_id: PersonId, body: PersonMerge, access: Access) -> PersonOut:
    """Merge this person into ``into``; returns the person that remains (``into``)."""
    access.require_case()
    repository = _repository(access)
    with _problems():
        kept = repository.merge(access.subject.tenant_id, case_id, person_id, body.into)
    access.audit(object=f"person/{person_id}", detail={"correction": "merge", "into": kept.id})
    return _person_out(repository, access, case_id, kept.id)


@api_route(router, "POST", BASE + "/{person_id}/split", action=Action.CASE_UPDATE, status_code=201)
def split_person(case_id: CaseId, person_id: PersonId, body: PersonSplit, access: Access) -> PersonOut:
    """Move tracks of this person to a new person; returns the new one. The tracks stay apart when
    their files are analysed again."""
    access.require_case()
    repository = _repository(access)
    with _problems():
        created = repository.split(
            access.subject.tenant_id, case_id, person_id, body.track_ids, name=body.name
        )
    detail = {"correction": "split", "new_person": created.id, "tracks": len(set(body.track_ids))}
    access.audit(object=f"person/{person_id}", detail=detail)
    return _person_out(repository, access, case_id, created.id)
