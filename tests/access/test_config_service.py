"""The configuration service with the real Redis: versions, overrides, validation, audit records, and
reads and writes that carry on from the database while Redis is down."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from sqlalchemy import insert

from aima.config import SECTIONS, RuntimeConfig
from aima.config.service import ConfigChange, ConfigService, InvalidConfig
from aima.storage.audit import AuditLog
from aima.storage.cache_redis import RedisCache
from aima.storage.relational import Database
from aima.storage.schema import config_entries, utcnow
from tests.support import RedisServer, free_port

ADMIN = "admin-1"


@pytest.fixture
def db(sqlite_db: Database) -> Database:
    return sqlite_db


@pytest.fixture
def audit(db: Database) -> AuditLog:
    return AuditLog(db)


@pytest.fixture
def service(db: Database, audit: AuditLog, redis_url: str) -> Iterator[ConfigService]:
    cache = RedisCache(redis_url)
    yield ConfigService(db, cache, audit)
    cache.close()


def new_id() -> str:
    return str(uuid.uuid4())


def sneak_in(db: Database, key: str, value: dict[str, object], tenant_id: str | None = None) -> None:
    """Write a version behind the service's back: only a read that skips the cache can see it."""
    with db.session() as s:
        s.execute(
            insert(config_entries).values(
                tenant_id=tenant_id,
                key=key,
                version=999,
                value=value,
                changed_by="sneak",
                changed_at=utcnow(),
            )
        )


def thresholds(face_match: float) -> dict[str, float]:
    return {
        "face_match": face_match,
        "speaker_match": 0.7,
        "indicator_min_confidence": 0.5,
        "sensitive_blur": 0.8,
    }


def test_defaults_cover_every_section() -> None:
    config = RuntimeConfig()
    assert set(SECTIONS) == set(RuntimeConfig.model_fields)
    assert config.analysis.languages == ["de", "en"]
    assert config.retention.originals == "until_case_deleted"
    assert set(config.phrases.distress) == {"de", "en"}
    assert set(config.phrases.coercion) == {"de", "en"}
    assert all(profile.price_per_hour >= 0 for profile in config.gpu.profiles.values())


def test_set_changes_the_effective_configuration(service: ConfigService, audit: AuditLog) -> None:
    tenant = new_id()
    assert service.effective(tenant).thresholds.face_match == 0.6

    change = service.set("thresholds", thresholds(0.9), actor=ADMIN, tenant_id=None, audit_tenant_id=tenant)

    assert change == ConfigChange("thresholds", None, 1)
    assert service.effective(tenant).thresholds.face_match == 0.9
    assert service.effective(new_id()).thresholds.face_match == 0.9  # global: every tenant
    assert service.get("thresholds", None) == (thresholds(0.9), 1)


def test_a_tenant_override_beats_the_global_value(service: ConfigService) -> None:
    tenant, other = new_id(), new_id()
    service.set("thresholds", thresholds(0.9), actor=ADMIN, tenant_id=None, audit_tenant_id=tenant)
    service.set("limits", {"max_files_per_request": 5}, actor=ADMIN, tenant_id=tenant, audit_tenant_id=tenant)
    service.set("thresholds", thresholds(0.3), actor=ADMIN, tenant_id=tenant, audit_tenant_id=tenant)

    mine, theirs = service.effective(tenant), service.effective(other)
    assert (mine.thresholds.face_match, theirs.thresholds.face_match) == (0.3, 0.9)
    assert (mine.limits.max_files_per_request, theirs.limits.max_files_per_request) == (5, 20)
    assert mine.analysis == RuntimeConfig().analysis
    assert service.get("limits", other) == (RuntimeConfig().limits.model_dump(), 0)  # inherited: version 0
    assert service.get("thresholds", other) == (thresholds(0.9), 0)
    assert service.get("thresholds", tenant) == (thresholds(0.3), 1)


def test_history_lists_versions_newest_first(service: ConfigService) -> None:
    tenant = new_id()
    for face_match, actor in [(0.7, "alice"), (0.8, "bob"), (0.85, "alice")]:
        service.set(
            "thresholds", thresholds(face_match), actor=actor, tenant_id=tenant, audit_tenant_id=tenant
        )

    history = service.history("thresholds", tenant)

    assert [(h["version"], h["changed_by"], h["value"]["face_match"]) for h in history] == [
        (3, "alice", 0.85),
        (2, "bob", 0.8),
        (1, "alice", 0.7),
    ]
    assert history[0]["changed_at"] >= history[-1]["changed_at"]
    assert service.history("thresholds", None) == []
    assert service.get("thresholds", tenant)[1] == 3


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        ("thresholds", {"face_match": 1.5}, "thresholds.face_match"),
        ("analysis", {"max_frames_per_minute": 0}, "analysis.max_frames_per_minute"),
        ("analysis", {"steps": ["transcribe", "teleport"]}, "analysis.steps.1"),
        ("retention", {"intermediate_days": 0}, "retention.intermediate_days"),
        ("retention", {"originals": "forever"}, "retention.originals"),
        ("gpu", {"profiles": {"big": {"gpu": "h100", "count": 1, "price_per_hour": -1}}}, "price_per_hour"),
        ("phrases", {"distress": {"german": ["hilfe"]}}, "phrases.distress.german"),
        ("limits", {"max_uplod_bytes": 1}, "limits.max_uplod_bytes"),
        ("secrets", {"password": "x"}, "secrets"),
    ],
)
def test_an_invalid_value_is_refused_naming_the_field_and_nothing_is_stored(
    service: ConfigService, audit: AuditLog, key: str, value: dict[str, object], field: str
) -> None:
    tenant = new_id()
    with pytest.raises(InvalidConfig, match=field.replace(".", r"\.")) as caught:
        service.set(key, value, actor=ADMIN, tenant_id=tenant, audit_tenant_id=tenant)
    assert any(field in name for name in caught.value.fields)
    if key in SECTIONS:
        assert service.history(key, tenant) == []
    assert audit.query(tenant) == []
    assert service.effective(tenant) == RuntimeConfig()


def test_each_change_writes_exactly_one_audit_record(service: ConfigService, audit: AuditLog) -> None:
    admins_tenant, customer = new_id(), new_id()
    service.set("limits", {"max_duration_s": 60}, actor=ADMIN, tenant_id=None, audit_tenant_id=admins_tenant)
    service.set(
        "limits",
        {"max_duration_s": 90},
        actor=ADMIN,
        tenant_id=customer,
        audit_tenant_id=customer,
        request_id="r-9",
    )
    service.set("limits", {"max_duration_s": 120}, actor=ADMIN, tenant_id=customer, audit_tenant_id=customer)

    (global_record,) = audit.query(admins_tenant)
    assert (global_record["action"], global_record["outcome"], global_record["actor"]) == (
        "config.write",
        "allowed",
        ADMIN,
    )
    assert global_record["detail"]["tenant_id"] is None
    records = audit.query(customer)
    assert [(r["detail"]["version"], r["object"], r["request_id"]) for r in records] == [
        (2, "config/limits", None),
        (1, "config/limits", "r-9"),
    ]
    assert records[0]["detail"]["value_sha256"] != records[1]["detail"]["value_sha256"]
    assert audit.verify(customer) == audit.verify(admins_tenant) == []


def test_reads_come_from_the_cache_until_a_change(
    service: ConfigService, db: Database, redis_url: str
) -> None:
    tenant = new_id()
    assert service.effective(tenant).limits.max_files_per_request == 20
    sneak_in(db, "limits", {"max_files_per_request": 7})
    assert service.effective(tenant).limits.max_files_per_request == 20  # cached
    assert redis.Redis.from_url(redis_url).keys("aima:k:config:*")

    service.set("limits", {"max_files_per_request": 9}, actor=ADMIN, tenant_id=tenant, audit_tenant_id=tenant)
    assert service.effective(tenant).limits.max_files_per_request == 9  # invalidated, tenant beats global


def test_a_dead_cache_falls_back_to_the_database_and_recovers(
    db: Database, audit: AuditLog, own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    tenant = new_id()
    cache = RedisCache(f"redis://127.0.0.1:{own_redis.port}/0", socket_timeout=0.5)
    service = ConfigService(db, cache, audit, cache_retry=0.2)
    service.set("limits", {"max_files_per_request": 3}, actor=ADMIN, tenant_id=tenant, audit_tenant_id=tenant)
    assert service.effective(tenant).limits.max_files_per_request == 3

    own_redis.stop()
    caplog.set_level(logging.INFO, logger="aima.config.service")
    for _ in range(3):  # from the database, without an exception
        assert service.effective(tenant).limits.max_files_per_request == 3
        time.sleep(0.25)  # past the retry interval: each read tries Redis again
    change = service.set(
        "limits", {"max_files_per_request": 4}, actor=ADMIN, tenant_id=tenant, audit_tenant_id=tenant
    )
    assert change.version == 2
    assert service.effective(tenant).limits.max_files_per_request == 4
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # one warning per outage
    assert "unavailable" in warnings[0].getMessage()

    own_redis.start()  # same port, empty
    time.sleep(0.25)
    assert service.effective(tenant).limits.max_files_per_request == 4  # read through, cached again
    assert any("available again" in r.getMessage() for r in caplog.records)
    sneak_in(db, "limits", {"max_files_per_request": 11}, tenant_id=tenant)
    assert service.effective(tenant).limits.max_files_per_request == 4  # from the cache
    assert redis.Redis(port=own_redis.port).keys("aima:k:config:*")
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    cache.close()


def test_a_change_another_process_could_not_announce_shows_within_the_ttl(
    db: Database, audit: AuditLog, own_redis: RedisServer
) -> None:
    tenant = new_id()
    cache = RedisCache(f"redis://127.0.0.1:{own_redis.port}/0", socket_timeout=0.5)
    service = ConfigService(db, cache, audit, cache_ttl=0.5)
    assert service.effective(tenant).limits.max_files_per_request == 20  # cached
    cut_off_cache = RedisCache(f"redis://127.0.0.1:{free_port()}/0", socket_timeout=0.5)  # nobody listens
    cut_off = ConfigService(db, cut_off_cache, audit)

    cut_off.set("limits", {"max_files_per_request": 6}, actor=ADMIN, tenant_id=tenant, audit_tenant_id=tenant)

    assert service.effective(tenant).limits.max_files_per_request == 20  # not invalidated: stale, but bounded
    time.sleep(0.6)
    assert service.effective(tenant).limits.max_files_per_request == 6
    cache.close()
    cut_off_cache.close()
