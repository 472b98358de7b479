"""Persons written straight into the stores (no pictures, no model): two persons with face tracks in two
files and one unassigned track. For route and CLI tests that need persons to act on."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from aima.storage.documents import DocumentStore
from aima.storage.faces import track_id
from aima.storage.persons import PersonRepository, PersonTrack
from aima.storage.speakers import encode_vector

VECTOR = encode_vector([1.0] + [0.0] * 127)
REASON = "too close to call between two persons"


@dataclass(frozen=True)
class SeededPersons:
    media: tuple[str, str]
    first: str  # Person 1: three tracks, two in the first file and one in the second
    second: str  # Person 2: two tracks in the first file
    first_tracks: list[str]  # best first
    second_tracks: list[str]  # best first
    unassigned: str  # a track of the second file


def crop_key(case_id: str, media_id: str, frame_id: str, label: str) -> str:
    """Where the faces step stores a track's crop."""
    return f"cases/{case_id}/media/{media_id}/crops/{frame_id}/v1-{label}.jpg"


def person_track(
    tenant_id: str,
    case_id: str,
    media_id: str,
    label: str,
    person_id: str | None,
    *,
    quality: float,
    first_s: float,
    reason: str | None = None,
) -> PersonTrack:
    frame_id = f"f{int(first_s * 1000):010d}"
    return PersonTrack(
        id=track_id(media_id, 1, label),
        tenant_id=tenant_id,
        case_id=case_id,
        media_id=media_id,
        faces_version=1,
        label=label,
        person_id=person_id,
        reason=reason,
        score=None if person_id is None else 0.95,
        crop_key=crop_key(case_id, media_id, frame_id, label),
        frame_id=frame_id,
        first_s=first_s,
        last_s=first_s + 2.0,
        quality=quality,
        faces=5,
        vector=VECTOR,
    )


def seed_persons(documents: DocumentStore, tenant_id: str, case_id: str) -> SeededPersons:
    repository = PersonRepository(documents)
    first = repository.create(tenant_id, case_id, str(uuid.uuid4())).id
    second = repository.create(tenant_id, case_id, str(uuid.uuid4())).id
    one, two = str(uuid.uuid4()), str(uuid.uuid4())
    tracks = [
        person_track(tenant_id, case_id, one, "F1", first, quality=0.6, first_s=1.0),
        person_track(tenant_id, case_id, one, "F2", second, quality=0.8, first_s=2.0),
        person_track(tenant_id, case_id, one, "F3", first, quality=0.9, first_s=10.0),
        person_track(tenant_id, case_id, one, "F4", second, quality=0.5, first_s=12.0),
        person_track(tenant_id, case_id, two, "F1", first, quality=0.7, first_s=0.5),
        person_track(tenant_id, case_id, two, "F2", None, quality=0.3, first_s=4.0, reason=REASON),
    ]
    repository.save_tracks(tracks)
    return SeededPersons(
        media=(one, two),
        first=first,
        second=second,
        first_tracks=[tracks[2].id, tracks[4].id, tracks[0].id],
        second_tracks=[tracks[1].id, tracks[3].id],
        unassigned=tracks[5].id,
    )


def person_request(
    documents: DocumentStore, tenant_id: str, case_id: str, route: str
) -> tuple[str, str, dict[str, object] | None]:
    """(method, path, body) of a successful call of a person route on freshly seeded persons:
    ``gallery``, ``rename``, ``merge`` or ``split`` (for the API's route tables)."""
    seed = seed_persons(documents, tenant_id, case_id)
    base = f"/api/v1/cases/{case_id}/persons"
    if route == "gallery":
        return "GET", f"{base}/{seed.first}", None
    if route == "rename":
        return "PATCH", f"{base}/{seed.first}", {"name": "Witness"}
    if route == "merge":
        return "POST", f"{base}/{seed.second}/merge", {"into": seed.first}
    if route == "split":
        return "POST", f"{base}/{seed.first}/split", {"track_ids": seed.first_tracks[:1]}
    raise ValueError(f"no person route {route!r}")
