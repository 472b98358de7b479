"""The transcribe function: voice activity first, text and language per speech segment, an English
translation beside every non-English segment, checkpoints per chunk."""

from __future__ import annotations

from aima.access.scope import Scope
from aima.storage.cases import CaseRepository
from aima.storage.media import MediaRepository
from aima.storage.transcripts import TranscriptRepository
from events.catalogue import AudioExtracted, MediaFailed, TranscriptCompleted
from functions.runtime.deps import Deps
from functions.runtime.spec import FunctionSpec, Resources
from functions.transcribe.core import TranscribeCore
from inference.tasks.speech import SpeechDetector, Transcriber


def build(deps: Deps) -> TranscribeCore:
    """A core on the process's stores and models; a forced language comes from the case (its
    ``language``) or the tenant's runtime configuration (``analysis.force_language``)."""
    stores = deps.stores
    cases = CaseRepository(stores.db)

    def language_for(tenant_id: str, case_id: str) -> str | None:
        case = cases.get(Scope.for_case(tenant_id, case_id, "function:transcribe"), case_id)
        language = case.get("language") if case is not None else None
        return str(language) if language else deps.config.effective(tenant_id).analysis.force_language

    return TranscribeCore(
        stores.objects,
        TranscriptRepository(stores.documents),
        MediaRepository(stores.db),
        detector=lambda: deps.models.get(SpeechDetector),
        transcriber=lambda: deps.models.get(Transcriber),
        language_for=language_for,
    )


SPEC = FunctionSpec(
    name="transcribe",
    description="speech regions, text with word times and a language per segment, English translations",
    consumes=(AudioExtracted,),
    emits=(TranscriptCompleted, MediaFailed),
    build=build,
    needs=("database", "objects", "documents", "bus", "model:speech_detector", "model:transcriber"),
    resources=Resources(cpu="2", memory="2Gi", concurrency=1, timeout_s=3600, max_scale=4),
    port=8084,
    analysis=True,
    step="transcribe",
    image="speech",
)
