"""The clustering rules on vectors made to measure: anchors first, short turns attached or left out."""

from __future__ import annotations

import numpy as np

from functions.speakers.clustering import ClusterOptions, cluster_turns


def voices(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three unrelated voice directions in 256 dimensions."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(256, 3)))[0].T
    return basis[0], basis[1], basis[2]


def turn(voice: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    vector: np.ndarray = voice + noise * rng.normal(size=voice.shape) / np.sqrt(voice.size)
    unit: np.ndarray = vector / np.linalg.norm(vector)
    return unit


def test_two_voices_two_clusters_and_short_turns_follow_or_stay_out() -> None:
    a, b, c = voices()
    rng = np.random.default_rng(1)
    vectors = np.array(
        [
            *(turn(a, 0.3, rng), turn(b, 0.3, rng), turn(a, 0.3, rng), turn(b, 0.3, rng)),
            turn(a, 0.5, rng),  # short, close to a: attached
            turn(c, 0.3, rng),  # short and like nobody: too short to tell
            *(turn(c, 0.3, rng), turn(c, 0.3, rng)),  # 1.5 s each, like nobody: a voice of its own
        ]
    )
    durations = np.array([3.0, 3.0, 2.5, 4.0, 0.8, 0.7, 1.5, 1.5])
    labels = cluster_turns(vectors, durations)
    assert labels[0] == labels[2] == labels[4]
    assert labels[1] == labels[3]
    assert labels[0] != labels[1]
    assert labels[5] is None
    assert labels[6] == labels[7] is not None
    assert len({labels[0], labels[1], labels[6]}) == 3


def test_the_cut_decides_how_many_voices() -> None:
    a, b, _ = voices()
    mixed = (a + b) / np.linalg.norm(a + b)  # 0.71 similar to both
    vectors = np.array([a, mixed])
    durations = np.array([3.0, 3.0])
    assert len(set(cluster_turns(vectors, durations, ClusterOptions(similarity=0.7)))) == 1
    assert len(set(cluster_turns(vectors, durations, ClusterOptions(similarity=0.75)))) == 2


def test_no_turns_one_turn_and_only_short_turns() -> None:
    a, b, _ = voices()
    assert cluster_turns(np.zeros((0, 256)), np.zeros(0)) == []
    assert cluster_turns(np.array([a]), np.array([0.4])) == [0]
    labels = cluster_turns(np.array([a, b, a]), np.array([0.5, 0.6, 0.5]))
    assert labels[0] == labels[2] != labels[1]
