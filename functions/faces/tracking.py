"""Faces on consecutive frames of a video followed as tracks (pure logic, no I/O).

Frames come in time order. A face on a frame continues an open track when it looks like the
track's face and either sits where the track was or looks very much like it:

* similarity (cosine of unit vectors) to the track's last face at least `FOLLOW_NEAR` and its centre
  within `NEAR_FACES` face heights of the last centre per sampled frame in between (people move
  between samples a second or more apart), or
* similarity at least `FOLLOW_ANYWHERE` wherever it is (a person who moved between samples).

Pairs are taken best first, one face per track per frame. A track not seen for `MAX_GAP_FRAMES`
sampled frames is closed; a face that continues no track opens a new one. Labels F1, F2, ... follow
first appearance. A track's vector is the quality-weighted mean of its faces' vectors, normalised;
its best face is the one of highest quality.

Different people scored up to 0.91 with each other on the degraded faces of
``benchmarks/vision.py`` (docs/faces.md), so a face is followed nearby from 0.90 (one face blurred
on one frame scored 0.92 with itself) and anywhere only from 0.94.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from inference.tasks.vision import Face

FOLLOW_NEAR = 0.90
NEAR_FACES = 3.0
FOLLOW_ANYWHERE = 0.94
MAX_GAP_FRAMES = 3


@dataclass(frozen=True)
class Seen:
    """One face on one frame."""

    frame_id: str
    timestamp_s: float
    index: int
    """The frame's position in time order."""
    face: Face


@dataclass
class Track:
    """Faces followed across frames, in time order."""

    seen: list[Seen] = field(default_factory=list)

    @property
    def last(self) -> Seen:
        return self.seen[-1]

    @property
    def best(self) -> int:
        """Index of the face of highest quality (the earliest among equals)."""
        qualities = [s.face.quality or 0.0 for s in self.seen]
        return qualities.index(max(qualities))

    def vector(self) -> list[float]:
        """The quality-weighted mean of the faces' vectors, normalised."""
        size = len(self.seen[0].face.embedding or ())
        total = [0.0] * size
        for item in self.seen:
            weight = max(item.face.quality or 0.0, 0.05)
            for i, value in enumerate(item.face.embedding or ()):
                total[i] += weight * value
        norm = math.sqrt(sum(v * v for v in total)) or 1.0
        return [v / norm for v in total]


def similarity(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity of two unit vectors."""
    return sum(x * y for x, y in zip(a, b, strict=True))


def distance(a: Face, b: Face) -> float:
    """Distance between the centres of two faces' boxes, in pixels."""
    ax, ay = a.box.x + a.box.width / 2, a.box.y + a.box.height / 2
    bx, by = b.box.x + b.box.width / 2, b.box.y + b.box.height / 2
    return math.hypot(ax - bx, ay - by)


class Tracker:
    """Feed frames in time order (`add`); `tracks` gives every track, closed or open."""

    def __init__(self) -> None:
        self._tracks: list[Track] = []
        self._frames = 0

    def add(self, frame_id: str, timestamp_s: float, faces: Sequence[Face]) -> None:
        index = self._frames
        self._frames += 1
        open_tracks = [t for t in self._tracks if index - t.last.index <= MAX_GAP_FRAMES]
        pairs: list[tuple[float, int, int]] = []
        for f, face in enumerate(faces):
            if face.embedding is None:
                continue
            for t, track in enumerate(open_tracks):
                last = track.last.face
                score = similarity(face.embedding, last.embedding or ())
                near = distance(face, last) <= NEAR_FACES * max(face.box.height, last.box.height) * (
                    index - track.last.index
                )
                if score >= FOLLOW_ANYWHERE or (score >= FOLLOW_NEAR and near):
                    pairs.append((score, f, t))
        taken_faces: set[int] = set()
        taken_tracks: set[int] = set()
        for _, f, t in sorted(pairs, reverse=True):
            if f in taken_faces or t in taken_tracks:
                continue
            taken_faces.add(f)
            taken_tracks.add(t)
            open_tracks[t].seen.append(Seen(frame_id, timestamp_s, index, faces[f]))
        for f, face in enumerate(faces):
            if f not in taken_faces and face.embedding is not None:
                self._tracks.append(Track([Seen(frame_id, timestamp_s, index, face)]))

    def expected(self, index: int) -> list[tuple[Track, Face]]:
        """Tracks seen on frame ``index - 1`` and ``index + 1`` but not on ``index`` (a face the
        fast detectors lost for one frame), with their face before the gap."""
        gaps = []
        for track in self._tracks:
            indices = [s.index for s in track.seen]
            for before, after in itertools.pairwise(indices):
                if before == index - 1 and after == index + 1:
                    gaps.append((track, next(s.face for s in track.seen if s.index == before)))
        return gaps

    def insert(self, track: Track, seen: Seen) -> None:
        """Add a face found later on a frame inside the track's time range."""
        track.seen.append(seen)
        track.seen.sort(key=lambda s: s.index)

    @property
    def tracks(self) -> list[Track]:
        """Every track, by first appearance."""
        return sorted(self._tracks, key=lambda t: (t.seen[0].index, t.seen[0].face.box.x))
