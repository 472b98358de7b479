"""Person crops from face boxes, and how much of a neighbour falls into each.

Every length is in units of the face's size ``s`` (the larger side of its box) and measured in the
face's own frame: **along** the body (from the eyes towards the nose: image down for an upright
face; the five landmarks turn it to the nearest of the four image directions, so a person lying
on their side gets a crop that runs sideways) and **across** it.

* **Crop** (`BODY`): across ``±4.5 s`` (outstretched arms: an arm span is about nine face boxes),
  along from ``4 s`` before the face centre (hands raised above the head) to ``9 s`` after it (the
  feet of a standing body), clipped to the frame.
* **Torso** of a neighbour (`TORSO`): across ``±1.5 s``, along ``-0.5 s`` to ``5 s`` (chin to hips).
* **Trim**: a neighbour beside the person (face centres at most ``3 s`` apart along the body) cuts
  the crop on its side halfway between the two faces, but never nearer than ``1.5 s`` to the
  person's own face centre, so the person's own torso stays whole.
* **Overlap**: the largest share of a neighbour's torso (within the frame) that lies inside the
  trimmed crop. The crop's confidence is ``1 - overlap``; above `MAX_OVERLAP` (0.5) the crop is
  skipped rather than posed, since the single-person model may then give a neighbour's skeleton.
* **Match**: the skeleton's head (mean of nose and eyes) must lie within ``0.75 s`` of the face
  centre the crop was built around; otherwise the skeleton is someone else's and is not used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from aima.storage.faces import FaceBox

MAX_OVERLAP = 0.5
MATCH_RADIUS = 0.75
BESIDE = 3.0
OWN_HALF_WIDTH = 1.5
WHOLE_FRAME_CONFIDENCE = 0.75
"""A body found on a frame without faces: nothing tells whether the skeleton is one person."""


@dataclass(frozen=True)
class Extent:
    """A region in a face's frame, in face sizes: ``across`` and ``along`` ranges."""

    left: float
    right: float
    before: float
    after: float


BODY = Extent(left=-4.5, right=4.5, before=-4.0, after=9.0)
TORSO = Extent(left=-1.5, right=1.5, before=-0.5, after=5.0)


@dataclass(frozen=True)
class Rect:
    """An axis-aligned region of the frame, in pixels."""

    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def area(self) -> float:
        return max(0.0, self.x1 - self.x0) * max(0.0, self.y1 - self.y0)

    def meet(self, other: Rect) -> Rect:
        return Rect(
            max(self.x0, other.x0), max(self.y0, other.y0), min(self.x1, other.x1), min(self.y1, other.y1)
        )


@dataclass(frozen=True)
class Person:
    """A face on a frame: the key it is known by, its box and the direction its body runs."""

    key: str
    face: FaceBox
    down: tuple[int, int]

    @property
    def size(self) -> float:
        return max(self.face.width, self.face.height)

    @property
    def centre(self) -> tuple[float, float]:
        return (self.face.x + self.face.width / 2, self.face.y + self.face.height / 2)

    def offset(self, point: tuple[float, float]) -> tuple[float, float]:
        """``point`` as (across, along) from the face centre, in face sizes."""
        (cx, cy), (dx, dy) = self.centre, self.down
        x, y = point[0] - cx, point[1] - cy
        return ((x * dy - y * dx) / self.size, (x * dx + y * dy) / self.size)

    def region(self, extent: Extent) -> Rect:
        """The frame rectangle that ``extent`` covers."""
        (cx, cy), (dx, dy), s = self.centre, self.down, self.size
        corners = [
            (cx + s * (a * dy + b * dx), cy + s * (-a * dx + b * dy))
            for a in (extent.left, extent.right)
            for b in (extent.before, extent.after)
        ]
        xs, ys = [c[0] for c in corners], [c[1] for c in corners]
        return Rect(min(xs), min(ys), max(xs), max(ys))


@dataclass(frozen=True)
class Plan:
    """A crop for one person: where, whether it was trimmed, and its neighbours' overlap."""

    rect: Rect
    trimmed: bool
    overlap: float
    neighbours: int

    @property
    def confidence(self) -> float:
        return round(1.0 - self.overlap, 4)

    @property
    def skip(self) -> bool:
        return self.overlap > MAX_OVERLAP


def body_direction(landmarks: Sequence[tuple[float, float]]) -> tuple[int, int]:
    """From the eyes to the nose (dlib's five points: four eye corners, then the nose), turned to
    the nearest image direction; image down without landmarks."""
    if len(landmarks) < 5:
        return (0, 1)
    eyes_x = sum(p[0] for p in landmarks[:4]) / 4
    eyes_y = sum(p[1] for p in landmarks[:4]) / 4
    dx, dy = landmarks[4][0] - eyes_x, landmarks[4][1] - eyes_y
    if dx == 0 and dy == 0:
        return (0, 1)
    if abs(dx) > abs(dy):
        return (1 if dx > 0 else -1, 0)
    return (0, 1 if dy > 0 else -1)


def plan(person: Person, others: Sequence[Person], frame: Rect) -> Plan:
    """The person's crop, trimmed towards neighbours beside them, with the overlap left."""
    extent = BODY
    trimmed = False
    for other in others:
        across, along = person.offset(other.centre)
        if abs(along) > BESIDE or across == 0:
            continue
        cut = max(OWN_HALF_WIDTH, abs(across) / 2)
        if across > 0 and cut < extent.right:
            extent, trimmed = Extent(extent.left, cut, extent.before, extent.after), True
        elif across < 0 and -cut > extent.left:
            extent, trimmed = Extent(-cut, extent.right, extent.before, extent.after), True
    rect = person.region(extent).meet(frame)
    shares = [_share(other.region(TORSO).meet(frame), rect) for other in others]
    inside = [share for share in shares if share > 0.05]
    return Plan(
        rect=rect, trimmed=trimmed, overlap=round(max(shares, default=0.0), 4), neighbours=len(inside)
    )


def matches(person: Person, head: tuple[float, float]) -> bool:
    """Whether a skeleton's head lies at the person's face."""
    across, along = person.offset(head)
    return math.hypot(across, along) <= MATCH_RADIUS


def _share(torso: Rect, crop: Rect) -> float:
    """The share of ``torso`` inside ``crop``."""
    return torso.meet(crop).area / torso.area if torso.area > 0 else 0.0
