"""Posture cues read from one body's 2D landmarks (pixels of the frame, MediaPipe's visibility).

Each cue is `CueCheck` with ``holds`` True (seen), False (clearly not) or None (cannot tell: the
landmarks it needs are not visible, or the measure lies in the margin around its threshold), and a
confidence when it holds: the lowest visibility of the landmarks used times ``0.5 + 0.5 *
strength``, where strength (0..1) says how far past its threshold the measure is.

Lengths are in units of the body's **scale**: the shoulder width, or 0.6 x the torso length
(shoulder midpoint to hip midpoint) where that is larger (a body seen from the side). The **body
axis** runs from the shoulder midpoint to the hip midpoint (image down without visible hips).

* ``wrists_together``: wrist distance / scale <= 0.25 (clearly not >= 0.6). Crossed arms, measured
  on three portraits upright and turned, give 0.32 to 0.73.
* ``arms_raised``: both wrists above their shoulders along the body axis by >= 0.25 scale (clearly
  not: a wrist below its shoulder by >= 0.25); strength grows to 1 at one scale above.
* ``lying_down``: the body axis is >= 50 degrees from the image vertical (clearly not <= 35);
  strength grows from 45 to 90 degrees. A torso foreshortened towards the camera (shorter than half
  the shoulder width) cannot tell.
* ``hands_behind_back``: 2D landmarks show this only weakly, so its confidence is capped at 0.6.
  Shoulders and elbows must be visible and both wrists must lie near the body's midline between
  mid-torso and just below the hips. Facing the camera (a crop built around a detected face; else
  the person's left shoulder on the image's right, across the body axis), each wrist must be hidden
  (visibility < 0.5) or estimated behind the body (depth behind the hips); with the back to the
  camera, the wrists must be visible and within 0.6 scale of each other. Clearly not: both wrists
  visible and in front of the body, or a wrist far from the midline or above the shoulders.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from aima.storage.poses import Cue, CueCheck, Landmark

VISIBLE = 0.5
WRISTS_TOGETHER = 0.25
WRISTS_APART = 0.6
RAISED = 0.25
LYING_DEG = 50.0
UPRIGHT_DEG = 35.0
BEHIND_CAP = 0.6
BEHIND_MIDLINE = 0.75
BEHIND_WRISTS = 0.6

_SHOULDERS = ("left_shoulder", "right_shoulder")
_HIPS = ("left_hip", "right_hip")
_WRISTS = ("left_wrist", "right_wrist")
_ELBOWS = ("left_elbow", "right_elbow")

Vec = tuple[float, float]


@dataclass(frozen=True)
class Body:
    """The frame of reference every cue is read in."""

    points: Mapping[str, Landmark]
    shoulders: Vec
    hips: Vec | None
    scale: float
    down: Vec
    facing: bool

    def at(self, name: str) -> Vec:
        point = self.points[name]
        return (point.x, point.y)

    def along(self, name: str, origin: Vec) -> float:
        """How far ``name`` lies from ``origin`` down the body axis, in scales."""
        x, y = self.at(name)
        return ((x - origin[0]) * self.down[0] + (y - origin[1]) * self.down[1]) / self.scale

    def across(self, name: str, origin: Vec) -> float:
        """How far ``name`` lies from ``origin`` across the body (towards the image's right when
        upright), in scales."""
        x, y = self.at(name)
        return ((x - origin[0]) * self.down[1] - (y - origin[1]) * self.down[0]) / self.scale


def read_cues(points: Mapping[str, Landmark], *, facing: bool | None = None) -> list[CueCheck]:
    """The four cues on one body's landmarks (by name). ``facing``: whether the person faces the
    camera (True for a crop built around a detected face; None: read from the shoulders)."""
    body = _body(points, facing)
    if body is None:
        missing = "the shoulders are not visible"
        return [CueCheck(cue=cue, holds=None, confidence=0.0, detail=missing) for cue in _ORDER]
    return [
        wrists_together(body),
        hands_behind_back(body),
        arms_raised(body),
        lying_down(body),
    ]


_ORDER: tuple[Cue, ...] = ("wrists_together", "hands_behind_back", "arms_raised", "lying_down")


def wrists_together(body: Body) -> CueCheck:
    used = [*_WRISTS, *_SHOULDERS]
    seen = _visibility(body, used)
    if seen < VISIBLE:
        return _unclear("wrists_together", used, "the wrists or shoulders are not visible")
    distance = _distance(body.at("left_wrist"), body.at("right_wrist")) / body.scale
    measure = round(distance, 3)
    if distance <= WRISTS_TOGETHER:
        strength = 1 - distance / WRISTS_TOGETHER
        detail = f"wrists {measure} body scales apart"
        return _holds("wrists_together", used, seen, strength, measure, detail)
    holds = False if distance >= WRISTS_APART else None
    return CueCheck(
        cue="wrists_together",
        holds=holds,
        confidence=0.0,
        measure=measure,
        landmarks=used,
        detail=f"wrists {measure} body scales apart",
    )


def arms_raised(body: Body) -> CueCheck:
    used = [*_WRISTS, *_SHOULDERS]
    seen = _visibility(body, used)
    if seen < VISIBLE:
        return _unclear("arms_raised", used, "the wrists or shoulders are not visible")
    rises = [
        -body.along(wrist, body.at(shoulder)) for wrist, shoulder in zip(_WRISTS, _SHOULDERS, strict=True)
    ]
    lowest = round(min(rises), 3)
    detail = f"the lower wrist is {lowest} scales above its shoulder"
    if lowest >= RAISED:
        strength = min(1.0, (lowest - RAISED) / (1 - RAISED))
        return _holds("arms_raised", used, seen, strength, lowest, detail)
    holds = False if lowest <= -RAISED else None
    return CueCheck(
        cue="arms_raised", holds=holds, confidence=0.0, measure=lowest, landmarks=used, detail=detail
    )


def lying_down(body: Body) -> CueCheck:
    used = [*_SHOULDERS, *_HIPS]
    seen = _visibility(body, used)
    if seen < VISIBLE or body.hips is None:
        return _unclear("lying_down", used, "the shoulders or hips are not visible")
    dx = body.hips[0] - body.shoulders[0]
    dy = body.hips[1] - body.shoulders[1]
    width = _distance(body.at("left_shoulder"), body.at("right_shoulder"))
    if math.hypot(dx, dy) < 0.5 * width:
        return _unclear("lying_down", used, "the torso is foreshortened towards the camera")
    angle = round(math.degrees(math.atan2(abs(dx), abs(dy))), 1)
    detail = f"the torso is {angle} degrees from upright"
    if angle >= LYING_DEG:
        strength = min(1.0, (angle - 45.0) / 45.0)
        return _holds("lying_down", used, seen, strength, angle, detail)
    holds = False if angle <= UPRIGHT_DEG else None
    return CueCheck(
        cue="lying_down", holds=holds, confidence=0.0, measure=angle, landmarks=used, detail=detail
    )


def hands_behind_back(body: Body) -> CueCheck:
    used = [*_SHOULDERS, *_ELBOWS, *_WRISTS]
    seen = _visibility(body, [*_SHOULDERS, *_ELBOWS])
    if seen < VISIBLE:
        return _unclear("hands_behind_back", used, "the shoulders or elbows are not visible")
    middle = body.hips if body.hips is not None else _step(body.shoulders, body.down, 1.4 * body.scale)
    torso = _distance(body.shoulders, middle) / body.scale
    near = [_near_back(body, wrist, middle, torso) for wrist in _WRISTS]
    facing = body.facing
    wrists = [body.points[wrist] for wrist in _WRISTS]
    if facing:
        hip_depth = _hip_depth(body)
        behind = [w.visibility < VISIBLE or (w.z is not None and w.z > hip_depth) for w in wrists]
        hidden = sum(1 for w in wrists if w.visibility < VISIBLE)
        if all(near) and all(behind):
            strength = 0.5 + 0.25 * hidden
            detail = f"facing the camera, {hidden} wrist(s) hidden, the wrists estimated behind the body"
            return _holds("hands_behind_back", used, seen, strength, float(hidden), detail, cap=BEHIND_CAP)
        in_front = all(w.visibility >= VISIBLE and w.z is not None and w.z < hip_depth for w in wrists)
        clearly_not = in_front or _wrist_far(body)
        detail = "facing the camera; the wrists are in front of the body or away from the back"
        return _not_or_unclear("hands_behind_back", used, clearly_not, detail)
    visible = min(w.visibility for w in wrists) >= VISIBLE
    apart = _distance(body.at("left_wrist"), body.at("right_wrist")) / body.scale
    if visible and all(near) and apart <= BEHIND_WRISTS:
        strength = 1 - apart / BEHIND_WRISTS
        detail = f"back to the camera, wrists {round(apart, 3)} scales apart at the small of the back"
        return _holds("hands_behind_back", used, seen, strength, round(apart, 3), detail, cap=BEHIND_CAP)
    detail = "back to the camera; the wrists are not together at the back"
    return _not_or_unclear("hands_behind_back", used, visible and _wrist_far(body), detail)


# --- geometry ----------------------------------------------------------------------------------


def _body(points: Mapping[str, Landmark], facing: bool | None) -> Body | None:
    needed = (*_SHOULDERS, *_HIPS, *_WRISTS, *_ELBOWS)
    if any(name not in points for name in needed):
        return None
    left, right = points["left_shoulder"], points["right_shoulder"]
    if min(left.visibility, right.visibility) < VISIBLE:
        return None
    shoulders = ((left.x + right.x) / 2, (left.y + right.y) / 2)
    width = math.hypot(left.x - right.x, left.y - right.y)
    hips: Vec | None = None
    torso = 0.0
    if min(points[name].visibility for name in _HIPS) >= VISIBLE:
        hips = (
            (points["left_hip"].x + points["right_hip"].x) / 2,
            (points["left_hip"].y + points["right_hip"].y) / 2,
        )
        torso = _distance(shoulders, hips)
    scale = max(width, 0.6 * torso)
    if scale < 1.0:
        return None
    down = (0.0, 1.0)
    if hips is not None and torso >= 0.5 * width and torso > 0:
        down = ((hips[0] - shoulders[0]) / torso, (hips[1] - shoulders[1]) / torso)
    body = Body(points=points, shoulders=shoulders, hips=hips, scale=scale, down=down, facing=True)
    if facing is None:  # the person's left shoulder on the image's right: facing the camera
        facing = body.across("left_shoulder", shoulders) > 0
    return Body(points=points, shoulders=shoulders, hips=hips, scale=scale, down=down, facing=facing)


def _near_back(body: Body, wrist: str, middle: Vec, torso: float) -> bool:
    """The wrist lies near the midline, between mid-torso and a little below the hips."""
    across = abs(body.across(wrist, middle))
    along = body.along(wrist, body.shoulders)
    return across <= BEHIND_MIDLINE and 0.5 * torso <= along <= 1.3 * torso + 0.3


def _wrist_far(body: Body) -> bool:
    """A wrist far from the midline or above the shoulders: the hands are not at the back."""
    for wrist in _WRISTS:
        if body.points[wrist].visibility < VISIBLE:
            continue
        if (
            abs(body.across(wrist, body.shoulders)) > 2 * BEHIND_MIDLINE
            or body.along(wrist, body.shoulders) < 0
        ):
            return True
    return False


def _hip_depth(body: Body) -> float:
    depths = [body.points[name].z for name in _HIPS]
    known = [depth for depth in depths if depth is not None]
    return sum(known) / len(known) if known else 0.0


def _step(origin: Vec, direction: Vec, length: float) -> Vec:
    return (origin[0] + direction[0] * length, origin[1] + direction[1] * length)


def _distance(a: Vec, b: Vec) -> float:
    return math.hypot(a[0] - b[0], a[1] - b[1])


def _visibility(body: Body, names: list[str]) -> float:
    return min(body.points[name].visibility for name in names)


# --- outcomes ----------------------------------------------------------------------------------


def _holds(
    cue: Cue,
    used: list[str],
    seen: float,
    strength: float,
    measure: float,
    detail: str,
    *,
    cap: float = 1.0,
) -> CueCheck:
    confidence = min(cap, seen * (0.5 + 0.5 * max(0.0, min(1.0, strength))))
    return CueCheck(
        cue=cue, holds=True, confidence=round(confidence, 4), measure=measure, landmarks=used, detail=detail
    )


def _unclear(cue: Cue, used: list[str], detail: str) -> CueCheck:
    return CueCheck(cue=cue, holds=None, confidence=0.0, landmarks=used, detail=detail)


def _not_or_unclear(cue: Cue, used: list[str], clearly_not: bool, detail: str) -> CueCheck:
    return CueCheck(
        cue=cue, holds=False if clearly_not else None, confidence=0.0, landmarks=used, detail=detail
    )
