"""The posture cue rules on landmark sets drawn by hand: each cue seen, clearly not seen, and not
told when its landmarks are hidden."""

from __future__ import annotations

import math

import pytest
from mediapipe.python.solutions.pose import PoseLandmark

from aima.storage.poses import CueCheck, Landmark
from functions.pose.cues import read_cues

NAMES = [landmark.name.lower() for landmark in PoseLandmark]

Point = tuple[float, float] | tuple[float, float, float, float]


def body(**points: Point) -> dict[str, Landmark]:
    """An upright body facing the camera (its left shoulder on the image's right), shoulders 80 px
    apart, torso 160 px, arms hanging; ``points`` override landmarks as (x, y) or (x, y, z, visibility)."""
    base: dict[str, Point] = {
        "nose": (100, 40),
        "left_eye": (110, 30),
        "right_eye": (90, 30),
        "left_shoulder": (140, 100),
        "right_shoulder": (60, 100),
        "left_elbow": (150, 170),
        "right_elbow": (50, 170),
        "left_wrist": (155, 240, -20, 0.95),
        "right_wrist": (45, 240, -20, 0.95),
        "left_hip": (125, 260, 0, 0.9),
        "right_hip": (75, 260, 0, 0.9),
        "left_knee": (125, 360),
        "right_knee": (75, 360),
    }
    base.update(points)
    made: dict[str, Landmark] = {}
    for name in NAMES:
        x, y, z, seen = _full(base.get(name, (100, 300, 0, 0.2)))
        made[name] = Landmark(name=name, x=x, y=y, z=z, visibility=seen)
    return made


def _full(point: Point) -> tuple[float, float, float, float]:
    if len(point) == 2:
        return (point[0], point[1], 0.0, 0.95)
    return point


def turned(points: dict[str, Landmark], degrees: float) -> dict[str, Landmark]:
    """The body turned about (100, 150) by ``degrees`` (clockwise on screen)."""
    angle = math.radians(degrees)
    cos, sin = math.cos(angle), math.sin(angle)

    def move(p: Landmark) -> Landmark:
        x, y = p.x - 100, p.y - 150
        return p.model_copy(update={"x": 100 + x * cos - y * sin, "y": 150 + x * sin + y * cos})

    return {name: move(point) for name, point in points.items()}


def cue(points: dict[str, Landmark], name: str, facing: bool | None = True) -> CueCheck:
    return next(check for check in read_cues(points, facing=facing) if check.cue == name)


def test_an_upright_body_with_hanging_arms_shows_none_of_the_cues_clearly() -> None:
    checks = {check.cue: check for check in read_cues(body(), facing=True)}
    assert {name: check.holds for name, check in checks.items()} == {
        "wrists_together": False,
        "hands_behind_back": False,
        "arms_raised": False,
        "lying_down": False,
    }
    assert all(check.confidence == 0 for check in checks.values())
    assert checks["lying_down"].measure == 0.0
    assert set(checks["wrists_together"].landmarks) == {
        "left_wrist",
        "right_wrist",
        "left_shoulder",
        "right_shoulder",
    }


def test_wrists_together() -> None:
    together = cue(body(left_wrist=(104, 230), right_wrist=(96, 232)), "wrists_together")
    assert together.holds is True
    assert together.measure is not None
    assert together.measure < 0.1
    assert together.confidence == pytest.approx(0.95 * (0.5 + 0.5 * (1 - together.measure / 0.25)), abs=1e-3)
    # crossed arms in the three portraits measure 0.32 to 0.73: told apart, or not told
    assert cue(body(left_wrist=(75, 200), right_wrist=(125, 205)), "wrists_together").holds is None
    hidden = cue(body(left_wrist=(104, 230, 0, 0.2), right_wrist=(96, 232)), "wrists_together")
    assert (hidden.holds, hidden.confidence) == (None, 0.0)
    assert "not visible" in hidden.detail


def test_arms_raised_along_the_body_even_when_lying() -> None:
    up = body(left_wrist=(150, 10), right_wrist=(50, 12), left_elbow=(150, 60), right_elbow=(50, 60))
    raised = cue(up, "arms_raised")
    assert raised.holds is True
    assert raised.confidence > 0.85
    one = cue(body(left_wrist=(150, 10), left_elbow=(150, 60)), "arms_raised")
    assert one.holds is False  # one arm up (a wave) is not both arms raised
    assert cue(turned(up, 90), "arms_raised").holds is True  # measured along the body, not the image


def test_lying_down_from_the_torso_axis() -> None:
    for degrees in (90, -90, 70):
        lying = cue(turned(body(), degrees), "lying_down")
        assert lying.holds is True, degrees
        assert lying.measure is not None
        assert lying.measure >= 50
    assert cue(turned(body(), 90), "lying_down").confidence > cue(turned(body(), 60), "lying_down").confidence
    assert cue(turned(body(), 42), "lying_down").holds is None  # the margin around 45 degrees
    assert cue(turned(body(), 20), "lying_down").holds is False
    towards = body(left_hip=(125, 130, 0, 0.9), right_hip=(75, 130, 0, 0.9))  # torso foreshortened
    assert cue(towards, "lying_down").holds is None
    assert cue(body(left_hip=(125, 260, 0, 0.1)), "lying_down").holds is None


def test_hands_behind_the_back_facing_the_camera_is_weak_evidence() -> None:
    behind = body(
        left_elbow=(160, 180),
        right_elbow=(40, 180),
        left_wrist=(112, 250, 30, 0.15),
        right_wrist=(88, 252, 35, 0.2),
    )
    check = cue(behind, "hands_behind_back")
    assert check.holds is True
    assert 0.4 < check.confidence <= 0.6  # capped: 2D landmarks show this only weakly
    in_front = body(left_wrist=(112, 250, -40, 0.9), right_wrist=(88, 252, -40, 0.9))
    assert cue(in_front, "hands_behind_back").holds is False
    hidden_elbows = body(left_elbow=(160, 180, 0, 0.2))
    assert cue(hidden_elbows, "hands_behind_back").holds is None


def test_hands_behind_the_back_seen_from_behind() -> None:
    # the back to the camera: the person's left shoulder on the image's left
    back = body(
        left_shoulder=(60, 100),
        right_shoulder=(140, 100),
        left_elbow=(45, 180),
        right_elbow=(155, 180),
        left_hip=(75, 260, 0, 0.9),
        right_hip=(125, 260, 0, 0.9),
        left_wrist=(96, 240),
        right_wrist=(106, 242),
    )
    check = cue(back, "hands_behind_back", facing=None)
    assert check.holds is True
    assert check.confidence <= 0.6
    assert "back to the camera" in check.detail
    spread = body(left_wrist=(-60, 240), right_wrist=(260, 240))
    apart = back | {name: spread[name] for name in ("left_wrist", "right_wrist")}
    assert cue(apart, "hands_behind_back", facing=None).holds is False


def test_without_visible_shoulders_nothing_is_told() -> None:
    checks = read_cues(body(left_shoulder=(140, 100, 0, 0.3)))
    assert [check.holds for check in checks] == [None] * 4
    assert all("shoulders" in check.detail for check in checks)


@pytest.mark.parametrize("degrees", [0, 90, 180, 270])
def test_wrists_together_does_not_depend_on_how_the_body_lies(degrees: int) -> None:
    points = turned(body(left_wrist=(104, 230), right_wrist=(96, 232)), degrees)
    assert cue(points, "wrists_together").holds is True
