"""A tenant's own phrases (runtime configuration, section ``phrases``): each is an extra lexical cue on
segments of its language, beside the cue list; one tenant's phrases never reach another's findings,
and a change applies from the next event once the configuration cache is invalidated."""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Callable

import pytest

from aima.config.service import ConfigService
from aima.storage.audit import AuditLog
from aima.storage.cache import MemoryCache
from aima.storage.relational import Database
from events.catalogue import PhrasesMatched
from functions.cues.core import CueFinding
from functions.cues.cuelist import TenantPhrases, phrase_pattern
from functions.cues.spec import tenant_phrases
from tests.cues.conftest import Env

SAFE_WORDS = "Der Kuchen ist verbrannt"
"""A phrase that means nothing to the cue list: only the tenant's list can flag it."""
SAID = ("de", "Mama, der Kuchen ist verbrannt!", "Mom, the cake is burnt!")


def new_tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def config(sqlite_db: Database) -> ConfigService:
    return ConfigService(sqlite_db, MemoryCache(), AuditLog(sqlite_db))


def set_phrases(
    config: ConfigService,
    tenant_id: str | None,
    distress: dict[str, list[str]] | None = None,
    coercion: dict[str, list[str]] | None = None,
) -> int:
    value = {"distress": distress or {}, "coercion": coercion or {}}
    change = config.set(
        "phrases", value, actor="admin-1", tenant_id=tenant_id, audit_tenant_id=tenant_id or "t"
    )
    return change.version


def reading(config: ConfigService) -> Callable[[str], TenantPhrases]:
    """What the function's ``build`` hands the core: the phrases read through ``config`` at each event."""
    return lambda tenant_id: tenant_phrases(config, tenant_id)


def tenant_findings(env: Env, tenant_id: str, case_id: str) -> list[CueFinding]:
    return env.findings.list(tenant_id, case_id, model=CueFinding)


async def test_a_german_phrase_set_by_the_tenant_becomes_a_finding(env: Env, config: ConfigService) -> None:
    tenant = new_tenant()
    assert set_phrases(config, tenant, distress={"de": ["mir geht es gut", SAFE_WORDS]}) == 1
    case = env.new_case()
    transcript = env.store(case, [("en", "We baked all afternoon."), SAID], tenant_id=tenant)
    core = env.core(phrases_for=reading(config))

    [event] = await env.run(transcript, core)
    assert isinstance(event, PhrasesMatched)
    [finding] = tenant_findings(env, tenant, case)
    assert finding.cue_id == "tenant-phrase:distress:de:2"
    assert (finding.category, finding.matched_by, finding.similarity) == ("distress", "lexical", None)
    assert finding.confidence == env.cue_list.lexical_confidence  # like any pattern match alone
    assert (finding.phrase, finding.words, finding.language) == (SAFE_WORDS, "der kuchen ist verbrannt", "de")
    assert (finding.phrases_level, finding.phrases_version) == ("tenant", 1)
    assert finding.cue_list_version == env.cue_list.version
    segment = transcript.segments[1]
    [evidence] = finding.evidence
    assert (evidence.segment_id, evidence.start_s, evidence.end_s) == (segment.id, segment.start, segment.end)
    assert finding.label == "possibly a distress phrase"
    assert f'match the tenant\'s phrase "{SAFE_WORDS}" (de)' in finding.note
    assert "not a finding of fact" in finding.note
    assert (event.result_count, event.categories) == (1, {"distress": 1})

    await env.run(transcript, core)  # a redelivered event writes the same finding
    assert [f.id for f in tenant_findings(env, tenant, case)] == [finding.id]


async def test_phrases_add_to_the_cue_list_and_never_remove_a_cue(env: Env, config: ConfigService) -> None:
    tenant = new_tenant()
    set_phrases(config, tenant, coercion={"de": ["sag es niemandem"]})
    case = env.new_case()
    lines = [("de", "Hilfe! Hilfe!"), ("de", "Sag es niemandem, hörst du?")]
    transcript = env.store(case, lines, tenant_id=tenant)
    await env.run(transcript, env.core(phrases_for=reading(config)))
    found = {(f.segment_id, f.cue_id) for f in tenant_findings(env, tenant, case)}
    assert (transcript.segments[0].id, "call-for-help") in found  # the list's cue still matches
    assert (transcript.segments[1].id, "tenant-phrase:coercion:de:1") in found


async def test_another_tenants_phrases_do_not_affect_this_tenant(env: Env, config: ConfigService) -> None:
    mine, theirs = new_tenant(), new_tenant()
    set_phrases(config, theirs, distress={"de": [SAFE_WORDS]})
    case = env.new_case()
    transcript = env.store(case, [SAID], tenant_id=mine)
    [event] = await env.run(transcript, env.core(phrases_for=reading(config)))
    assert isinstance(event, PhrasesMatched)
    assert event.result_count == 0
    assert tenant_findings(env, mine, case) == []

    set_phrases(config, None, distress={"de": [SAFE_WORDS]})  # a global list reaches every tenant
    await env.run(transcript, env.core(phrases_for=reading(config)))
    [finding] = tenant_findings(env, mine, case)
    assert (finding.phrases_level, finding.phrases_version) == ("global", 1)


async def test_a_phrase_matches_segments_of_its_own_language_only(env: Env, config: ConfigService) -> None:
    tenant = new_tenant()
    set_phrases(config, tenant, distress={"de": [SAFE_WORDS], "en": ["the cake is burnt"]})
    case = env.new_case()
    lines = [
        ("en", "He shouted der Kuchen ist verbrannt and ran."),  # German words in an English segment
        ("fr", "Il a dit: der Kuchen ist verbrannt."),
        SAID,  # the English phrase is in its translation, not in its words
    ]
    transcript = env.store(case, lines, tenant_id=tenant)
    await env.run(transcript, env.core(phrases_for=reading(config)))
    [finding] = tenant_findings(env, tenant, case)
    assert (finding.segment_id, finding.cue_id) == (transcript.segments[2].id, "tenant-phrase:distress:de:1")


async def test_a_change_applies_from_the_next_event_once_the_cache_is_invalidated(
    env: Env, sqlite_db: Database
) -> None:
    tenant = new_tenant()
    here = ConfigService(sqlite_db, MemoryCache(), AuditLog(sqlite_db))  # the cues function's process
    gateway = ConfigService(sqlite_db, MemoryCache(), AuditLog(sqlite_db))  # where admins change it
    set_phrases(gateway, tenant, distress={"de": [SAFE_WORDS]})
    case = env.new_case()
    transcript = env.store(case, [SAID, ("de", "Ich habe den Schlüssel verloren.")], tenant_id=tenant)
    core = env.core(phrases_for=reading(here))
    await env.run(transcript, core)
    assert [f.phrase for f in tenant_findings(env, tenant, case)] == [SAFE_WORDS]

    assert set_phrases(gateway, tenant, distress={"de": ["den Schlüssel verloren"]}) == 2
    await env.run(transcript, core)  # this process still has the old section cached (for cache_ttl)
    [stale] = tenant_findings(env, tenant, case)
    assert (stale.phrase, stale.phrases_version) == (SAFE_WORDS, None)  # not the stored version 2

    here.invalidate()  # what io.aima.config.changed.v1 does in every process
    await env.run(transcript, core)
    [finding] = tenant_findings(env, tenant, case)
    assert (finding.segment_id, finding.phrase) == (transcript.segments[1].id, "den Schlüssel verloren")
    assert (finding.phrases_level, finding.phrases_version) == ("tenant", 2)


async def test_without_stored_phrases_only_the_cue_list_matches(env: Env, config: ConfigService) -> None:
    tenant = new_tenant()
    assert tenant_phrases(config, tenant) == TenantPhrases({"de": [], "en": []}, {"de": [], "en": []})
    case = env.new_case()
    transcript = env.store(
        case, [("en", "Can you help me with my homework tonight?"), SAID], tenant_id=tenant
    )
    [event] = await env.run(transcript, env.core(phrases_for=reading(config)))
    assert isinstance(event, PhrasesMatched)
    assert event.result_count == 0


@pytest.mark.parametrize(
    ("phrase", "text", "matches"),
    [
        ("Grüne Tür", "Hinter der GRÜNEN Tür.", False),  # whole words only
        ("Grüne Tür", "Die grüne  Tür ist zu.", True),  # any case, any spaces
        (unicodedata.normalize("NFD", "grüne tür"), "die grüne tür", True),  # composed or not
        ("bitte hilf mir", "Bitte, hilf mir!", True),  # punctuation between the words
        ("don't tell", "Don\u2019t tell them.", True),  # typographic apostrophe
        ("ruf an", "Rufan", False),
        ("ruf an", "Ruf an.", True),
    ],
)
def test_a_phrase_matches_whole_words_after_normalisation(phrase: str, text: str, matches: bool) -> None:
    [cue] = TenantPhrases(distress={"de": [phrase]}).cues()
    assert (cue.match_text(text, "de") is not None) is matches


def test_phrases_without_words_or_repeated_are_skipped_and_ids_stay() -> None:
    phrases = TenantPhrases(
        distress={"de": ["hilfe", "...", "HILFE", "lass los"]}, coercion={"en": ["or else"]}
    )
    assert [cue.id for cue in phrases.cues()] == [
        "tenant-phrase:distress:de:1",
        "tenant-phrase:distress:de:4",
        "tenant-phrase:coercion:en:1",
    ]
    assert phrase_pattern("...") is None
