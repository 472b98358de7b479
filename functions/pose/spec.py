"""The pose function: MediaPipe body landmarks on person crops; posture cues as findings for review."""

from __future__ import annotations

from aima.storage.media import MediaRepository
from events.catalogue import FacesDetected, PoseEstimated
from functions.pose.core import PoseCore
from functions.runtime.deps import Deps
from functions.runtime.spec import FunctionSpec, Resources
from inference.tasks.vision import PoseEstimator


def build(deps: Deps) -> PoseCore:
    """A core on the process's stores and pose model; the lowest reported confidence is the
    tenant's ``thresholds.indicator_min_confidence`` (runtime configuration, read at each event)."""
    stores = deps.stores

    def min_confidence_for(tenant_id: str) -> float:
        return deps.config.effective(tenant_id).thresholds.indicator_min_confidence

    return PoseCore(
        stores.objects,
        stores.documents,
        MediaRepository(stores.db),
        estimator=lambda: deps.models.get(PoseEstimator),
        min_confidence_for=min_confidence_for,
    )


SPEC = FunctionSpec(
    name="pose",
    description="body landmarks on a crop around each person; posture cues as findings for review",
    consumes=(FacesDetected,),
    emits=(PoseEstimated,),
    build=build,
    needs=("database", "objects", "documents", "bus", "model:pose_estimator"),
    resources=Resources(cpu="1", memory="1Gi", concurrency=1, timeout_s=1800, max_scale=4),
    port=8091,
    analysis=True,
    step="pose",
    image="vision",
)
