"""Who speaks when in one file: the speech turns' voice vectors grouped without knowing how many voices.

Agglomerative clustering, average linkage on cosine distance, cut at ``similarity`` (two groups
merge while the mean similarity between their turns is at least that), in three passes:

1. **anchors**, the turns of at least ``anchor_s`` seconds, are clustered (if there are none, the
   turns of at least ``reliable_s``; if none of those either, all turns). Short turns carry less
   voice: on real speech they split clusters that the long ones hold together;
2. every other turn joins the cluster whose centroid it is most similar to, if at least
   ``attach_similarity`` (a turn against a centroid: a little lower than turn against turns);
3. the turns left over of at least ``reliable_s`` are clustered among themselves (a voice that
   only ever speaks briefly); the shorter ones stay unassigned (too short to tell who spoke).

The thresholds and how they were calibrated are in docs/speakers.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from inference.base import import_lazily

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Vectors = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ClusterOptions:
    similarity: float = 0.70
    """Average-linkage cut: mean cosine similarity between two groups' turns to be one voice."""
    attach_similarity: float = 0.65
    """A shorter turn joins the most similar cluster's centroid if at least this similar."""
    anchor_s: float = 2.0
    """Turns at least this long form the clusters; shorter ones join them."""
    reliable_s: float = 1.0
    """Shorter turns that join no cluster stay without a speaker."""


def cluster_turns(
    vectors: Vectors, durations: Vectors, options: ClusterOptions = ClusterOptions()
) -> list[int | None]:
    """A cluster number per turn (0, 1, ... in no particular order), or None for a turn too short
    to tell. ``vectors`` are unit rows, one per turn; ``durations`` in seconds."""
    import numpy as np

    count = len(vectors)
    if count == 0:
        return []
    labels: list[int | None] = [None] * count
    anchors = _first_nonempty(
        [i for i in range(count) if durations[i] >= options.anchor_s],
        [i for i in range(count) if durations[i] >= options.reliable_s],
        list(range(count)),
    )
    clusters = _agglomerate(vectors, anchors, options.similarity)
    rest = [i for i in range(count) if i not in set(anchors)]
    if rest:
        centroids = np.array([_unit(vectors[members].mean(axis=0)) for members in clusters])
        similarity = vectors[rest] @ centroids.T
        left = []
        for row, turn in enumerate(rest):
            best = int(np.argmax(similarity[row]))
            if similarity[row, best] >= options.attach_similarity:
                clusters[best].append(turn)
            else:
                left.append(turn)
        reliable = [i for i in left if durations[i] >= options.reliable_s]
        if reliable:
            clusters.extend(_agglomerate(vectors, reliable, options.similarity))
    for number, members in enumerate(clusters):
        for turn in members:
            labels[turn] = number
    return labels


def _agglomerate(vectors: Vectors, members: list[int], similarity: float) -> list[list[int]]:
    """Average-linkage clusters of the rows ``members``, cut at ``similarity``."""
    if len(members) == 1:
        return [list(members)]
    hierarchy = import_lazily("scipy.cluster.hierarchy")  # not while a model loads (inference.base)
    tree = hierarchy.linkage(vectors[members], method="average", metric="cosine")
    found = hierarchy.fcluster(tree, t=1.0 - similarity, criterion="distance")
    clusters: dict[int, list[int]] = {}
    for turn, cluster in zip(members, found, strict=True):
        clusters.setdefault(int(cluster), []).append(turn)
    return list(clusters.values())


def _unit(vector: Vectors) -> Vectors:
    import numpy as np

    norm = float(np.linalg.norm(vector))
    return vector / norm if norm else vector


def _first_nonempty(*candidates: list[int]) -> list[int]:
    return next(c for c in candidates if c)
