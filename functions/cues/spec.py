"""The cues function: every transcript version indexed for search and matched against the cue list."""

from __future__ import annotations

from aima.storage.findings import FindingRepository
from aima.storage.transcripts import TranscriptRepository
from events.catalogue import MediaFailed, PhrasesMatched, TranscriptCompleted
from functions.cues.core import CueCore
from functions.cues.cuelist import load_cue_list
from functions.runtime.deps import Deps
from functions.runtime.spec import FunctionSpec, Resources
from inference.tasks.text import TextEmbedder


def build(deps: Deps) -> CueCore:
    """A core on the process's stores and text embedder, with the cue list of ``AIMA_CUES_FILE`` (else
    the packaged one), read and checked now: a bad list stops the start with one line. Each tenant's
    lowest reported confidence is ``thresholds.indicator_min_confidence`` (runtime configuration)."""
    cues = load_cue_list()
    stores = deps.stores

    def min_confidence_for(tenant_id: str) -> float:
        return deps.config.effective(tenant_id).thresholds.indicator_min_confidence

    return CueCore(
        TranscriptRepository(stores.documents),
        stores.vectors,
        FindingRepository(stores.documents),
        embedder=lambda: deps.models.get(TextEmbedder),
        cues=cues,
        min_confidence_for=min_confidence_for,
    )


SPEC = FunctionSpec(
    name="cues",
    description="transcripts indexed for search by meaning; spoken distress and coercion cues for review",
    consumes=(TranscriptCompleted,),
    emits=(PhrasesMatched, MediaFailed),
    build=build,
    needs=("database", "documents", "vectors", "bus", "model:text_embedder"),
    resources=Resources(cpu="1", memory="1Gi", concurrency=2, timeout_s=900),
    port=8086,
    analysis=True,
)
