"""The speakers function: speech turns embedded, grouped into the file's speakers, linked to the case's."""

from __future__ import annotations

from collections.abc import Callable

from aima.config.service import ConfigService
from aima.domain import Step
from aima.storage.speakers import CaseSpeakerRepository
from aima.storage.transcripts import TranscriptRepository
from events.catalogue import MediaFailed, SpeakersCompleted, TranscriptCompleted
from functions.runtime.deps import Deps
from functions.runtime.spec import FunctionSpec, Resources
from functions.speakers.core import SpeakersCore, TenantRules
from inference.tasks.speech import VoiceEmbedder


def build(deps: Deps) -> SpeakersCore:
    """A core on the process's stores and voice model; whether the step runs and how close a voice
    must be to join a case speaker come from each tenant's runtime configuration."""
    stores = deps.stores
    transcripts = TranscriptRepository(stores.documents)
    speakers = CaseSpeakerRepository(
        stores.documents, transcripts=transcripts, vectors=lambda: stores.vectors, cache=stores.cache
    )
    return SpeakersCore(
        stores.objects,
        transcripts,
        speakers,
        lambda: stores.vectors,
        embedder=lambda: deps.models.get(VoiceEmbedder),
        rules_for=tenant_rules(deps.config),
    )


def tenant_rules(config: ConfigService) -> Callable[[str], TenantRules]:
    """``analysis.steps`` (is ``speakers`` on?) and ``thresholds.speaker_match`` of each tenant."""

    def rules_for(tenant_id: str) -> TenantRules:
        effective = config.effective(tenant_id)
        return TenantRules(
            enabled=Step.SPEAKERS in effective.analysis.steps,
            speaker_match=effective.thresholds.speaker_match,
        )

    return rules_for


SPEC = FunctionSpec(
    name="speakers",
    description="speech turns embedded and grouped into speakers, linked to the case's voices",
    consumes=(TranscriptCompleted,),
    emits=(SpeakersCompleted, MediaFailed),
    build=build,
    needs=("database", "documents", "objects", "vectors", "cache", "bus", "model:voice_embedder"),
    resources=Resources(cpu="1", memory="1536Mi", concurrency=2, timeout_s=1800, max_scale=4),
    port=8085,
    analysis=True,
    step="speakers",
    image="speech",
)
