"""The speakers function as the runtime finds and builds it."""

from __future__ import annotations

from aima.settings import Settings
from events.catalogue import TranscriptCompleted
from functions.runtime.deps import Deps
from functions.runtime.spec import discover
from functions.speakers.core import SpeakersCore
from functions.speakers.spec import SPEC, tenant_rules


def test_the_spec_is_found_and_declares_what_it_needs() -> None:
    assert discover()["speakers"] is SPEC
    assert SPEC.consumes == (TranscriptCompleted,)
    assert (SPEC.port, SPEC.analysis) == (8085, True)
    assert {"documents", "objects", "vectors", "bus", "model:voice_embedder"} <= set(SPEC.needs)


def test_building_the_core_opens_no_vector_store_and_reads_the_tenants_rules(
    embedded_settings: Settings,
) -> None:
    deps = Deps(embedded_settings)
    try:
        assert SPEC.build is not None
        core = SPEC.build(deps)
        assert isinstance(core, SpeakersCore)
        assert deps.stores._vectors is None  # opened on the first event, not at start-up
        rules = tenant_rules(deps.config)("tenant-1")
        assert (rules.enabled, rules.speaker_match) == (True, 0.7)
    finally:
        deps.close()
