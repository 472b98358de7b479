"""Following faces across frames, on faces with chosen boxes and vectors."""

from __future__ import annotations

import math

from functions.faces.tracking import Tracker
from inference.tasks.common import Box
from inference.tasks.vision import Face


def unit(*values: float) -> list[float]:
    vector = [*values, *([0.0] * (128 - len(values)))]
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector]


def face(x: float, vector: list[float], *, quality: float = 0.9, height: float = 100) -> Face:
    box = Box(x=x, y=100, width=height, height=height)
    return Face(box=box, embedding=vector, score=0.9, quality=quality, detector="mediapipe")


A, B = unit(1.0, 0.0), unit(0.0, 1.0)
A_BLURRED = unit(1.0, 0.43)  # 0.92 similar to A


def test_a_face_moving_along_is_one_track_and_another_face_another() -> None:
    tracker = Tracker()
    for n in range(5):
        tracker.add(f"f{n}", 2.0 * n, [face(100 + 200 * n, A if n != 2 else A_BLURRED), face(900, B)])
    tracks = tracker.tracks
    assert [len(track.seen) for track in tracks] == [5, 5]
    assert tracks[0].seen[2].face.embedding == A_BLURRED


def test_a_similar_face_far_away_is_not_followed_unless_it_is_very_similar() -> None:
    tracker = Tracker()
    tracker.add("f0", 0.0, [face(0, A)])
    tracker.add("f1", 1.0, [face(1000, A_BLURRED)])  # 0.92 similar, 10 face heights away
    assert len(tracker.tracks) == 2
    tracker = Tracker()
    tracker.add("f0", 0.0, [face(0, A)])
    tracker.add("f1", 1.0, [face(1000, unit(1.0, 0.1))])  # 0.995 similar
    assert len(tracker.tracks) == 1


def test_a_track_closes_after_a_long_gap_and_its_best_face_is_the_sharpest() -> None:
    tracker = Tracker()
    tracker.add("f0", 0.0, [face(0, A, quality=0.4)])
    tracker.add("f1", 1.0, [face(0, A, quality=0.95)])
    for n in range(2, 6):
        tracker.add(f"f{n}", float(n), [])
    tracker.add("f6", 6.0, [face(0, A)])
    first, second = tracker.tracks
    assert (len(first.seen), first.best, len(second.seen)) == (2, 1, 1)


def test_a_frame_a_track_skipped_is_expected_with_the_face_before_it() -> None:
    tracker = Tracker()
    tracker.add("f0", 0.0, [face(0, A)])
    tracker.add("f1", 1.0, [])
    tracker.add("f2", 2.0, [face(10, A)])
    ((_track, before),) = tracker.expected(1)
    assert before.box.x == 0
    assert tracker.expected(2) == []
