"""The faces function's core: every face in a file's frames, followed across them as tracks.

``handle`` takes ``io.aima.media.frames.extracted.v1`` (the sampled frames of a video, or the
still of an image) and:

1. runs the `FaceAnalyzer` on every frame in time order: the fast detectors on video frames, and
   also the slow, accurate one on the still of an image (``thorough``). A frame that is missing or
   cannot be decoded is skipped with its reason; the others go on;
2. follows the faces across frames (`functions.faces.tracking`). Where a track was seen on the
   frames before and after a frame but not on it, that frame's expected region gets a closer look
   (on at most one frame in `SECOND_LOOK_EVERY`, and `MAX_SECOND_LOOKS` per file), and a face found
   there that is the track's joins it;
3. crops each track's best face (1.6 times its box) from its frame and stores it as
   ``cases/{case}/media/{media}/crops/{frame_id}/{label}.jpg`` (a crop belongs to its frame, so it
   is blurred when the frame is sensitive);
4. stores the tracks as the file's next face version (`aima.storage.faces`), puts each track's
   vector into the case's ``faces`` collection (vector id = track id) and drops the vectors of the
   file's older versions; returns ``FacesDetected`` with the frames read, for the steps that look at
   the same frames (pose).

No face model → ``not_run`` with the reason; a model that is down → the event is retried.
"""

from __future__ import annotations

import asyncio
import io
import logging
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aima.access.scope import Scope
from aima.domain import ModelRef
from aima.storage.faces import (
    FACES,
    FaceBox,
    FaceDetection,
    FaceRepository,
    FaceResult,
    FaceTrack,
    track_id,
)
from aima.storage.media import MediaRepository
from aima.storage.objects import ObjectStore
from aima.storage.speakers import decode_vector, encode_vector
from aima.storage.vectors import VectorRecord, VectorStore
from aima.storage.versioned import SkippedFrame
from events.catalogue import EventData, FacesDetected, FrameRef, FramesExtracted, ModelInfo
from functions.faces.crops import crop_jpeg
from functions.faces.tracking import FOLLOW_NEAR, Seen, Track, Tracker, similarity
from functions.runtime.context import Context
from functions.runtime.results import look_at_frames, not_run
from inference.errors import ModelNotConfigured
from inference.tasks.vision import Face, FaceAnalyzer, FaceInput, Faces
from inference.vectors import ensure_collection_for

log = logging.getLogger(__name__)

ACTOR = "function:faces"
MAX_SECOND_LOOKS = 16
SECOND_LOOK_EVERY = 10
"""A closer look costs about a tenth of a frame's work: at most one frame in ten gets one."""
"""Frames per file given a closer look where a track lost its face."""
CROP_CONTEXT = 1.6


@dataclass(frozen=True)
class _Frame:
    ref: FrameRef
    index: int
    path: Path
    size: tuple[int, int]


class FacesCore:
    """``async handle(data, ctx) -> list[EventData]`` for ``io.aima.media.frames.extracted.v1``."""

    def __init__(
        self,
        objects: ObjectStore,
        faces: FaceRepository,
        media: MediaRepository,
        vectors: VectorStore,
        *,
        analyzer: Callable[[], FaceAnalyzer],
        workdir: Path | None = None,
    ) -> None:
        """``analyzer`` returns the process's face model (raising `ModelNotConfigured` if none)."""
        self._objects = objects
        self._faces = faces
        self._media = media
        self._vectors = vectors
        self._analyzer = analyzer
        self._workdir = workdir

    async def handle(self, data: FramesExtracted, ctx: Context) -> list[EventData]:
        """Find and follow the faces; blocking work runs in a worker thread."""
        return await asyncio.to_thread(self._handle, data)

    def _handle(self, data: FramesExtracted) -> list[EventData]:
        media = self._media.get(Scope.for_case(data.tenant_id, data.case_id, ACTOR), data.media_id)
        if media is None:
            log.info("media is gone; nothing to look at", extra={"media_id": data.media_id})
            return []
        try:
            model = self._analyzer()
            model.load()
        except ModelNotConfigured as exc:
            return not_run(self._faces, FaceResult, FacesDetected, data, exc.reason, step="faces")
        still = media.kind == "image" or (media.kind is None and media.content_type.startswith("image/"))
        frames = sorted(data.frames, key=lambda frame: (frame.timestamp_s, frame.frame_id))
        with tempfile.TemporaryDirectory(prefix="aima-faces-", dir=self._workdir) as tmp:
            read, skipped, tracker = self._follow(frames, Path(tmp), model, still)
            self._second_looks(read, tracker, model)
            tracks = tracker.tracks
            version = (self._faces.versions(data.tenant_id, data.case_id, data.media_id) or [0])[-1] + 1
            stored_tracks = [
                self._stored(data, version, n, track, read) for n, track in enumerate(tracks, start=1)
            ]
        reference = ModelRef(name=model.name, version=model.version or "unknown", backend=model.backend)
        stored = self._faces.add(
            FaceResult(
                tenant_id=data.tenant_id,
                case_id=data.case_id,
                media_id=data.media_id,
                version=version,
                model=reference,
                frames=len(read),
                frame_sizes={frame.ref.frame_id: frame.size for frame in read.values()},
                tracks=stored_tracks,
                skipped=skipped,
            )
        )
        if stored.version != version:  # a concurrent run took the number: ids follow the stored one
            stored = self._renumbered(stored)
        self._index(stored, model)
        detections = [d for track in stored.tracks for d in track.detections]
        log.info(
            "faces found",
            extra={"media_id": data.media_id, "tracks": len(stored.tracks), "faces": len(detections)},
        )
        return [
            FacesDetected(
                **data.media_ids(),
                model=ModelInfo.of(reference),
                result_count=len(stored.tracks),
                version=stored.version,
                frames=[frame.ref for frame in sorted(read.values(), key=lambda f: f.index)],
                skipped_frames=len(skipped),
                faces=len(detections),
                tracks=len(stored.tracks),
                detectors=dict(Counter(d.detector for d in detections)),
            )
        ]

    # --- finding and following ---------------------------------------------------------------------

    def _follow(
        self, frames: list[FrameRef], folder: Path, model: FaceAnalyzer, still: bool
    ) -> tuple[dict[int, _Frame], list[SkippedFrame], Tracker]:
        tracker = Tracker()
        read: dict[int, _Frame] = {}
        skipped: list[SkippedFrame] = []

        def look(ref: FrameRef, path: Path) -> Faces:
            return model.predict(
                FaceInput(path=path, frame_id=ref.frame_id, timestamp_s=ref.timestamp_s, thorough=still)
            )

        for ref, path, found in look_at_frames(self._objects, frames, folder, look, skipped, keep=True):
            index = len(read)
            read[index] = _Frame(ref, index, path, (found.width or 0, found.height or 0))
            tracker.add(ref.frame_id, ref.timestamp_s, found.faces)
        return read, skipped, tracker

    def _second_looks(self, read: dict[int, _Frame], tracker: Tracker, model: FaceAnalyzer) -> None:
        """Where a track lost its face for one frame, look there more closely."""
        looks = 0
        for index, frame in sorted(read.items()):
            gaps = tracker.expected(index)
            if not gaps or looks >= min(MAX_SECOND_LOOKS, max(1, len(read) // SECOND_LOOK_EVERY)):
                continue
            looks += 1
            regions = [face.box for _, face in gaps]
            found = model.predict(
                FaceInput(
                    path=frame.path,
                    frame_id=frame.ref.frame_id,
                    timestamp_s=frame.ref.timestamp_s,
                    regions=regions,
                    fast=False,
                )
            )
            for track, before in gaps:
                match = _best_match(found, before)
                if match is not None:
                    tracker.insert(track, Seen(frame.ref.frame_id, frame.ref.timestamp_s, index, match))

    # --- storing -----------------------------------------------------------------------------------

    def _stored(
        self, data: FramesExtracted, version: int, number: int, track: Track, read: dict[int, _Frame]
    ) -> FaceTrack:
        label = f"F{number}"
        best = track.best
        best_seen = track.seen[best]
        frame = read[best_seen.index]
        crop_key = (
            f"cases/{data.case_id}/media/{data.media_id}/crops/{frame.ref.frame_id}/v{version}-{label}.jpg"
        )
        payload = crop_jpeg(frame.path, best_seen.face.box, CROP_CONTEXT)
        self._objects.put(crop_key, io.BytesIO(payload), content_type="image/jpeg")
        return FaceTrack(
            id=track_id(data.media_id, version, label),
            label=label,
            detections=[_detection(seen) for seen in track.seen],
            best=best,
            crop_key=crop_key,
            embedding=encode_vector(track.vector()),
        )

    def _renumbered(self, stored: FaceResult) -> FaceResult:
        tracks = [
            track.model_copy(update={"id": track_id(stored.media_id, stored.version, track.label)})
            for track in stored.tracks
        ]
        return stored.model_copy(update={"tracks": tracks})

    def _index(self, result: FaceResult, model: FaceAnalyzer) -> None:
        """The tracks' vectors into ``faces``; the file's vectors of other versions out."""
        if result.tracks:
            ensure_collection_for(self._vectors, model)
            self._vectors.upsert(
                FACES,
                [
                    VectorRecord(
                        track.id,
                        result.tenant_id,
                        result.case_id,
                        result.media_id,
                        decode_vector(track.embedding),
                        ref=track.id,
                    )
                    for track in result.tracks
                ],
            )
        self._vectors.delete_media_in(
            FACES, result.media_id, case_id=result.case_id, keep={track.id for track in result.tracks}
        )


def _detection(seen: Seen) -> FaceDetection:
    face = seen.face
    return FaceDetection(
        frame_id=seen.frame_id,
        timestamp_s=seen.timestamp_s,
        box=FaceBox(
            x=face.box.x, y=face.box.y, width=max(face.box.width, 1.0), height=max(face.box.height, 1.0)
        ),
        landmarks=[(point.x, point.y) for point in face.landmarks],
        detector=face.detector or "unknown",
        score=face.score,
        quality=face.quality if face.quality is not None else face.score,
    )


def _best_match(found: Faces, before: Face) -> Face | None:
    """The face of ``found`` that continues ``before``: the most similar, if similar enough."""
    scored = [
        (similarity(face.embedding, before.embedding or ()), face)
        for face in found.faces
        if face.embedding is not None
    ]
    best = max(scored, key=lambda pair: pair[0], default=None)
    return best[1] if best is not None and best[0] >= FOLLOW_NEAR else None
