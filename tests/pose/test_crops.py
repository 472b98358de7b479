"""Person crops from face boxes: proportions, the body's direction from the five landmarks,
trimming towards a neighbour beside the person, the overlap rule and the head match."""

from __future__ import annotations

import pytest

from aima.storage.faces import FaceBox
from functions.pose.crops import MAX_OVERLAP, Person, Rect, body_direction, matches, plan

FRAME = Rect(0, 0, 4000, 4000)
UPRIGHT = [(80.0, 40.0), (90.0, 40.0), (110.0, 40.0), (120.0, 40.0), (100.0, 60.0)]


def person(key: str, x: float, y: float, size: float = 100, down: tuple[int, int] = (0, 1)) -> Person:
    """A face of ``size`` centred at (x, y)."""
    box = FaceBox(x=x - size / 2, y=y - size / 2, width=size, height=size)
    return Person(key, box, down)


def test_the_crop_spans_outstretched_arms_raised_hands_and_the_feet() -> None:
    alone = plan(person("a", 1000, 1000), [], FRAME)
    assert alone.rect == Rect(550, 600, 1450, 1900)  # ±4.5 s across, 4 s above to 9 s below
    assert (alone.trimmed, alone.overlap, alone.neighbours, alone.confidence, alone.skip) == (
        False,
        0.0,
        0,
        1.0,
        False,
    )
    clipped = plan(person("a", 100, 100), [], Rect(0, 0, 640, 480))
    assert clipped.rect == Rect(0, 0, 550, 480)


def test_the_body_runs_from_the_eyes_to_the_nose() -> None:
    assert body_direction(UPRIGHT) == (0, 1)
    assert body_direction([]) == (0, 1)  # no landmarks: upright
    sideways = [(y, 200 - x) for x, y in UPRIGHT]  # the face turned 90 degrees anticlockwise
    assert body_direction(sideways) == (1, 0)
    lying = plan(person("a", 1000, 1000, down=(1, 0)), [], FRAME)
    assert lying.rect == Rect(600, 550, 1900, 1450)  # the crop runs sideways with the body
    assert body_direction([(x, 200 - y) for x, y in UPRIGHT]) == (0, -1)  # upside down


def test_a_neighbour_beside_the_person_trims_the_crop_and_lowers_its_confidence() -> None:
    a, b = person("a", 1000, 1000), person("b", 1300, 1020)  # 3 face sizes apart
    made = plan(a, [b], FRAME)
    assert made.trimmed
    assert made.rect.x1 == 1150  # halfway, but never nearer than 1.5 s to the person's own face
    assert made.rect.x0 == 550
    assert made.overlap == 0.0  # the neighbour's torso starts where the crop ends
    closer = plan(a, [person("b", 1200, 1000)], FRAME)  # 2 s apart: a third of its torso inside
    assert closer.overlap == pytest.approx(1 / 3, abs=1e-3)
    assert closer.confidence == pytest.approx(2 / 3, abs=1e-3)
    assert (closer.neighbours, closer.skip) == (1, False)


def test_a_neighbour_in_front_of_the_person_is_not_trimmed_away_and_skips_the_crop() -> None:
    a = person("a", 1000, 1000)
    child = person("child", 1000, 1400, size=60)  # a face at the person's chest
    made = plan(a, [child], FRAME)
    assert not made.trimmed
    assert made.overlap > MAX_OVERLAP
    assert made.skip
    far = plan(a, [person("far", 3000, 1000)], FRAME)  # outside the crop: no effect
    assert (far.overlap, far.neighbours, far.skip) == (0.0, 0, False)


def test_the_skeleton_must_belong_to_the_face() -> None:
    a = person("a", 1000, 1000)
    assert matches(a, (1010, 1020))
    assert not matches(a, (1100, 1000))
    assert not matches(a, (1300, 1000))
