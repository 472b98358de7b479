"""The persons function's core: a file's face tracks linked to the persons of its case.

``handle`` takes ``io.aima.faces.detected.v1`` and, under the case's persons lock:

1. reads the face version the event names (a face step that did not run → ``not_run``; an event
   older than the version already linked is ignored);
2. takes the tracks best first (highest quality), so sharp faces found persons and blurred ones join
   them. For each track, in this order:

   * a track of the file's previous face version that is the same face (similarity at least
     `aima.storage.persons.SAME_TRACK`) hands over its person and who chose it: names, merges and
     splits by users survive re-analysis;
   * otherwise the track's vector is searched among the case's ``faces`` vectors: the most similar
     track already linked to a person, if at least ``join`` similar, brings the track into that
     person (merged persons resolve to the one they were merged into);
   * otherwise a track of good quality (at least ``min_new_quality``) that is less than ``new``
     similar to every face of the case starts a new person. The file's own tracks that no person
     holds yet do not count here: a person seen in two scenes of one video has two tracks nearly
     alike, and the second must not stop the first from starting the person it then joins;
   * otherwise it stays **unassigned**, with the reason (too close to call, or too poor a face to
     start a person): it is never forced into the nearest person;

3. the case's unassigned tracks of other files are looked at again: one that now has a person at
   least ``join`` similar joins it;
4. stores the links, makes them the file's current ones and returns ``PersonsClustered``.

``join`` and ``new`` come from the tenant's ``thresholds.face_match`` (`LinkRules.from_face_match`,
calibrated in docs/persons.md). Ids of new persons derive from the track, so a redelivered event
makes no twin.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aima.storage.faces import FACES, FaceRepository, FaceTrack
from aima.storage.persons import SAME_TRACK, PersonRepository, PersonTrack, new_person_id
from aima.storage.speakers import decode_vector
from aima.storage.vectors import VectorHit, VectorStore
from events.catalogue import EventData, FacesDetected, ModelInfo, PersonsClustered
from functions.runtime.context import Context

log = logging.getLogger(__name__)

SEARCH_LIMIT = 20
REVISIT_LIMIT = 500


@dataclass(frozen=True)
class LinkRules:
    """How similar (cosine of unit vectors) a track must be to join a person, how far from every face
    of the case a good track must be to start one, and how good a face must be to start one."""

    join: float = 0.92
    new: float = 0.90
    min_new_quality: float = 0.5

    @classmethod
    def from_face_match(cls, face_match: float) -> LinkRules:
        """The tenant's ``face_match`` score (0..1, default 0.6) as similarities: ``join`` = 0.8 +
        0.2 x score (0.92 at the default), ``new`` = ``join`` - 0.02."""
        join = 0.8 + 0.2 * face_match
        return cls(join=round(join, 4), new=round(join - 0.02, 4))


@dataclass
class _Outcome:
    tracks: list[PersonTrack]
    new_persons: int
    revisited: int


class PersonsCore:
    """``async handle(data, ctx) -> list[EventData]`` for ``io.aima.faces.detected.v1``."""

    def __init__(
        self,
        faces: FaceRepository,
        persons: PersonRepository,
        vectors: Callable[[], VectorStore],
        *,
        rules_for: Callable[[str], LinkRules] = lambda tenant_id: LinkRules(),
    ) -> None:
        self._faces = faces
        self._persons = persons
        self._vectors = vectors
        self._rules_for = rules_for

    async def handle(self, data: FacesDetected, ctx: Context) -> list[EventData]:
        """Link the file's tracks; blocking work runs in a worker thread."""
        return await asyncio.to_thread(self._handle, data)

    def _handle(self, data: FacesDetected) -> list[EventData]:
        if data.status == "not_run" or data.version is None:
            return [self._not_run(data, f"faces were not found: {data.reason or 'the step did not run'}")]
        result = self._faces.get(data.tenant_id, data.case_id, data.media_id, data.version)
        if result is None:
            log.info("face result is gone; nothing to link", extra={"media_id": data.media_id})
            return []
        rules = self._rules_for(data.tenant_id)
        with self._persons.locked(data.case_id):
            previous = self._persons.tracks(data.tenant_id, data.case_id, data.media_id)
            if any(track.faces_version > result.version for track in previous):
                log.info("a newer face version is linked already", extra={"media_id": data.media_id})
                return []
            outcome = self._link(data, result.version, result.tracks, previous, rules)
        assigned = sum(1 for track in outcome.tracks if track.person_id is not None)
        persons = self._persons.persons(data.tenant_id, data.case_id)
        log.info(
            "faces linked to persons",
            extra={
                "media_id": data.media_id,
                "tracks": len(outcome.tracks),
                "assigned": assigned,
                "new_persons": outcome.new_persons,
                "revisited": outcome.revisited,
            },
        )
        return [
            PersonsClustered(
                tenant_id=data.tenant_id,
                case_id=data.case_id,
                media_id=data.media_id,
                job_id=data.job_id,
                person_count=len(persons),
                model=data.model,
                faces_version=result.version,
                tracks=len(outcome.tracks),
                assigned=assigned,
                unassigned=len(outcome.tracks) - assigned,
                new_persons=outcome.new_persons,
            )
        ]

    def _link(
        self,
        data: FacesDetected,
        version: int,
        tracks: list[FaceTrack],
        previous: list[PersonTrack],
        rules: LinkRules,
    ) -> _Outcome:
        tenant_id, case_id = data.tenant_id, data.case_id
        store = self._vectors()
        resolution = self._persons.resolution(tenant_id, case_id)
        decided: dict[str, PersonTrack] = {}
        new_persons = 0
        own = {track.id for track in tracks}
        for track in sorted(tracks, key=lambda t: (-t.quality, t.label)):
            vector = decode_vector(track.embedding)
            base = _person_track(data, version, track)
            earlier = _same_track(vector, previous)
            if earlier is not None:
                person = resolution.get(earlier.person_id) if earlier.person_id else None
                decided[track.id] = base.model_copy(
                    update={
                        "person_id": person.id if person else None,
                        "reason": earlier.reason,
                        "score": earlier.score,
                        "linked_by": "user" if earlier.linked_by == "user" else "previous",
                    }
                )
                continue
            hits = [
                hit
                for hit in store.search(
                    FACES, vector, tenant_id=tenant_id, case_id=case_id, limit=SEARCH_LIMIT
                )
                if hit.id != track.id
            ]
            best = _best_person(hits, self._linked(tenant_id, case_id, (hit.id for hit in hits), decided))
            # this file's other tracks that no person holds yet do not make a new person "too close to
            # call": they are the same person seen again (they join it next), or they wait their turn
            nearest = max(
                (hit.score for hit in hits if hit.id not in own or decided.get(hit.id, base).person_id),
                default=0.0,
            )
            if best is not None and best[0] >= rules.join:
                person = resolution.get(best[1])
                decided[track.id] = base.model_copy(
                    update={"person_id": person.id if person else best[1], "score": round(best[0], 4)}
                )
            elif track.quality >= rules.min_new_quality and nearest < rules.new:
                person_id = new_person_id(case_id, track.id)
                created = self._persons.create(tenant_id, case_id, person_id)
                resolution[created.id] = created
                new_persons += 1
                decided[track.id] = base.model_copy(update={"person_id": created.id})
            else:
                reason = (
                    f"too close to call: {nearest:.2f} similar to another face, {rules.join:.2f} needed"
                    if track.quality >= rules.min_new_quality
                    else f"too small or blurred to start a person (quality {track.quality:.2f})"
                )
                decided[track.id] = base.model_copy(update={"reason": reason})
        stored = [decided[track.id] for track in tracks]
        self._persons.save_tracks(stored)
        self._persons.make_current(tenant_id, case_id, data.media_id, version)
        revisited = self._revisit(tenant_id, case_id, data.media_id, rules)
        return _Outcome(stored, new_persons, revisited)

    def _linked(
        self, tenant_id: str, case_id: str, ids: Iterable[str], decided: dict[str, PersonTrack]
    ) -> dict[str, str | None]:
        """Track id -> its person (None: unassigned), for tracks of this run or current elsewhere."""
        wanted = list(ids)
        found: dict[str, str | None] = {tid: decided[tid].person_id for tid in wanted if tid in decided}
        stored = self._persons.tracks_by_id(tenant_id, case_id, [tid for tid in wanted if tid not in decided])
        for tid, track in stored.items():
            if track.current:
                found[tid] = track.person_id
        return found

    def _revisit(self, tenant_id: str, case_id: str, media_id: str, rules: LinkRules) -> int:
        """Unassigned tracks of the case's other files that a person now fits: joined to it."""
        store = self._vectors()
        resolution = self._persons.resolution(tenant_id, case_id)
        joined = 0
        waiting = [
            track
            for track in self._persons.tracks(tenant_id, case_id)
            if track.person_id is None and track.media_id != media_id and track.linked_by != "user"
        ][:REVISIT_LIMIT]
        for track in waiting:
            hits = [
                hit
                for hit in store.search(
                    FACES,
                    decode_vector(track.vector),
                    tenant_id=tenant_id,
                    case_id=case_id,
                    limit=SEARCH_LIMIT,
                )
                if hit.id != track.id
            ]
            best = _best_person(hits, self._linked(tenant_id, case_id, (hit.id for hit in hits), {}))
            if best is not None and best[0] >= rules.join:
                person = resolution.get(best[1])
                self._persons.save_tracks(
                    [
                        track.model_copy(
                            update={
                                "person_id": person.id if person else best[1],
                                "score": round(best[0], 4),
                                "reason": None,
                            }
                        )
                    ]
                )
                joined += 1
        return joined

    def _not_run(self, data: FacesDetected, reason: str) -> PersonsClustered:
        log.info("persons not run: %s", reason, extra={"media_id": data.media_id})
        return PersonsClustered(
            tenant_id=data.tenant_id,
            case_id=data.case_id,
            media_id=data.media_id,
            job_id=data.job_id,
            person_count=len(self._persons.persons(data.tenant_id, data.case_id)),
            model=ModelInfo.none(),
            status="not_run",
            reason=reason,
            faces_version=data.version,
        )


def _person_track(data: FacesDetected, version: int, track: FaceTrack) -> PersonTrack:
    best = track.best_detection
    return PersonTrack(
        id=track.id,
        tenant_id=data.tenant_id,
        case_id=data.case_id,
        media_id=data.media_id,
        faces_version=version,
        label=track.label,
        crop_key=track.crop_key,
        frame_id=best.frame_id,
        first_s=track.first_s,
        last_s=track.last_s,
        quality=track.quality,
        faces=len(track.detections),
        vector=track.embedding,
    )


def _best_person(hits: list[VectorHit], linked: dict[str, str | None]) -> tuple[float, str] | None:
    """The most similar hit that belongs to a person: (similarity, person id)."""
    best: tuple[float, str] | None = None
    for hit in hits:
        person_id = linked.get(hit.id)
        if person_id is not None and (best is None or hit.score > best[0]):
            best = (hit.score, person_id)
    return best


def _same_track(vector: list[float], previous: list[PersonTrack]) -> PersonTrack | None:
    """The previous version's track that is this face on the same frames, if any."""
    best: tuple[float, PersonTrack] | None = None
    for track in previous:
        score = sum(a * b for a, b in zip(vector, decode_vector(track.vector), strict=True))
        if score >= SAME_TRACK and (best is None or score > best[0]):
            best = (score, track)
    return best[1] if best else None
