"""The cues function: every transcript version indexed for search and matched against the cue list."""

from __future__ import annotations

from typing import Literal

from pydantic import ValidationError

from aima.config.schema import Phrases
from aima.config.service import ConfigService
from aima.storage.findings import FindingRepository
from aima.storage.transcripts import TranscriptRepository
from events.catalogue import MediaFailed, PhrasesMatched, TranscriptCompleted
from functions.cues.core import CueCore
from functions.cues.cuelist import TenantPhrases, load_cue_list
from functions.runtime.deps import Deps
from functions.runtime.spec import FunctionSpec, Resources
from inference.tasks.text import TextEmbedder


def build(deps: Deps) -> CueCore:
    """A core on the process's stores and text embedder, with the cue list of ``AIMA_CUES_FILE`` (else
    the packaged one), read and checked now: a bad list stops the start with one line. Each tenant's
    lowest reported confidence is ``thresholds.indicator_min_confidence`` and its own phrases, added
    to the list as lexical cues, are the ``phrases`` section (runtime configuration, read at each
    event: cached, and invalidated by ``config.changed``)."""
    cues = load_cue_list()
    stores = deps.stores

    def min_confidence_for(tenant_id: str) -> float:
        return deps.config.effective(tenant_id).thresholds.indicator_min_confidence

    def phrases_for(tenant_id: str) -> TenantPhrases:
        return tenant_phrases(deps.config, tenant_id)

    return CueCore(
        TranscriptRepository(stores.documents),
        stores.vectors,
        FindingRepository(stores.documents),
        embedder=lambda: deps.models.get(TextEmbedder),
        cues=cues,
        min_confidence_for=min_confidence_for,
        phrases_for=phrases_for,
    )


def tenant_phrases(config: ConfigService, tenant_id: str) -> TenantPhrases:
    """The tenant's effective ``phrases`` section and the stored version it is: the tenant's own, else
    the global one (``level``, ``version``); both None for the defaults, and when the stored version
    read does not equal the effective section (a change in flight, or a version that no longer
    validates and was passed over)."""
    phrases = config.effective(tenant_id).phrases
    level: Literal["tenant", "global"] | None = None
    version: int | None = None
    levels: tuple[tuple[Literal["tenant", "global"], str | None], ...] = (
        ("tenant", tenant_id),
        ("global", None),
    )
    for at, where in levels:
        value, number = config.get("phrases", where)
        if number == 0:  # nothing stored at this level
            continue
        try:
            stored = Phrases.model_validate(value)
        except ValidationError:  # written under an older schema: the effective section skipped it
            continue
        if stored == phrases:
            level, version = at, number
        break
    return TenantPhrases(phrases.distress, phrases.coercion, level=level, version=version)


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
    step="cues",
    image="text",
)
