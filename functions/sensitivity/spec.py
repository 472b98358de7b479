"""The sensitivity function: an Open-NSFW score per frame and image, for blurred serving."""

from __future__ import annotations

from aima.storage.media import MediaRepository
from aima.storage.sensitivity import SensitivityRepository
from events.catalogue import FramesExtracted, SensitivityScored
from functions.runtime.deps import Deps
from functions.runtime.spec import FunctionSpec, Resources
from functions.sensitivity.core import SensitivityCore
from inference.tasks.vision import SensitivityScorer


def build(deps: Deps) -> SensitivityCore:
    """A core on the process's stores and sensitivity scorer; the threshold recorded with the scores
    is the tenant's ``thresholds.sensitive_blur`` (runtime configuration, read at each event)."""
    stores = deps.stores

    def threshold_for(tenant_id: str) -> float:
        return deps.config.effective(tenant_id).thresholds.sensitive_blur

    return SensitivityCore(
        stores.objects,
        SensitivityRepository(stores.documents),
        MediaRepository(stores.db),
        scorer=lambda: deps.models.get(SensitivityScorer),
        threshold_for=threshold_for,
    )


SPEC = FunctionSpec(
    name="sensitivity",
    description="an Open-NSFW score per frame and image; images above the threshold are served blurred",
    consumes=(FramesExtracted,),
    emits=(SensitivityScored,),
    build=build,
    needs=("database", "objects", "documents", "bus", "model:sensitivity_scorer"),
    resources=Resources(cpu="1", memory="1Gi", concurrency=1, timeout_s=1800, max_scale=4),
    port=8092,
    analysis=True,
    step="sensitivity",
    image="vision",
)
