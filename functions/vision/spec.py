"""The vision function: every sampled frame described by a vision-language model over an
OpenAI-compatible chat endpoint; restraint indicators and visible distress cues for review."""

from __future__ import annotations

from aima.access.scope import Scope
from aima.storage.cases import CaseRepository
from aima.storage.corroboration import corroborate
from aima.storage.findings import FindingRepository
from aima.storage.media import MediaRepository
from aima.storage.vision import VisionRepository
from events.catalogue import FramesExtracted, VisionDescribed
from functions.runtime.deps import Deps
from functions.runtime.spec import FunctionSpec, Resources
from functions.vision.core import VisionCore
from inference.tasks.vision import VisionDescriber


def build(deps: Deps) -> VisionCore:
    """A core on the process's stores and vision describer. The context prompt is the case's own
    ``context`` where the analyst gave one, else the tenant's ``analysis.context_prompt`` (runtime
    configuration, read at each event), and the lowest reported confidence its
    ``thresholds.indicator_min_confidence``. Its restraint indicators are weighed against the
    file's postures from the pose step (`aima.storage.corroboration`), whichever step ends last."""
    stores = deps.stores

    cases = CaseRepository(stores.db)

    def context_for(tenant_id: str, case_id: str) -> str | None:
        case = cases.get(Scope.for_case(tenant_id, case_id, "function:vision"), case_id)
        own = case.get("context") if case is not None else None
        return own or deps.config.effective(tenant_id).analysis.context_prompt

    def min_confidence_for(tenant_id: str) -> float:
        return deps.config.effective(tenant_id).thresholds.indicator_min_confidence

    return VisionCore(
        stores.objects,
        VisionRepository(stores.documents),
        FindingRepository(stores.documents),
        MediaRepository(stores.db),
        describer=lambda: deps.models.get(VisionDescriber),
        context_for=context_for,
        min_confidence_for=min_confidence_for,
        corroborate=lambda tenant_id, case_id, media_id: corroborate(
            stores.documents, tenant_id, case_id, media_id
        ),
    )


SPEC = FunctionSpec(
    name="vision",
    description="frames described by a vision-language model; restraint and distress indicators for review",
    consumes=(FramesExtracted,),
    emits=(VisionDescribed,),
    build=build,
    needs=("database", "objects", "documents", "bus", "model:vision_describer"),
    resources=Resources(cpu="500m", memory="512Mi", concurrency=4, timeout_s=1800),
    port=8088,
    analysis=True,
    step="vision",
)
