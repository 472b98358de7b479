"""The retention sweep on real stores (SQLite, a local object folder, litemongo, the configuration
service) and the retention function that runs it."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update

from aima.access.scope import Scope
from aima.config.service import ConfigService
from aima.identity.users import UserDirectory
from aima.storage.audit import AuditLog
from aima.storage.cache import MemoryCache
from aima.storage.cases import CaseRepository
from aima.storage.documents import DocumentStore
from aima.storage.media import MediaRepository
from aima.storage.objects_local import LocalObjectStore
from aima.storage.relational import Database
from aima.storage.retention import ACTION, ACTOR, PURGED_AT, RetentionSweeper
from aima.storage.schema import media, utcnow
from aima.storage.scoped import scoped_session
from aima.telemetry.health import HealthRegistry
from events.catalogue import RetentionSweepRequested, RetentionSwept, make_event, parse_data
from events.envelope import CloudEvent, derived_event_id
from functions.retention.core import RetentionCore
from functions.retention.spec import SPEC
from functions.runtime.app import create_function_app
from functions.runtime.dispatch import Dispatcher

PROBES = "probes"
FRAMES = ("frames/0000000000.jpg", "frames/0000001000.jpg", "frames/0000002400.jpg")
INTERMEDIATES = (*FRAMES, "audio.wav")
KEPT = ("original", "preview.jpg", "thumb.jpg")


@dataclass
class Env:
    db: Database
    objects: LocalObjectStore
    documents: DocumentStore
    config: ConfigService
    audit: AuditLog
    sweeper: RetentionSweeper

    def tenant(self) -> tuple[str, str]:
        """A new tenant and its owner user."""
        directory = UserDirectory(self.db)
        suffix = uuid.uuid4().hex[:8]
        tenant_id = directory.ensure_tenant(f"retention-{suffix}")
        return tenant_id, directory.create_user(tenant_id, f"owner-{suffix}", None, "user").id

    def case(self, tenant: tuple[str, str], retention_days: int | None = None) -> str:
        tenant_id, owner = tenant
        row = CaseRepository(self.db).create(
            Scope.for_tenant(tenant_id, owner), "Case", owner, retention_days=retention_days
        )
        return str(row["id"])

    def media(self, tenant_id: str, case_id: str, *, age_days: float, probed: bool = True) -> str:
        """A file uploaded ``age_days`` ago with what the probe stores next to it (frames, audio,
        thumbnail, preview) and its ``probes`` document."""
        media_id = str(uuid.uuid4())
        base = f"cases/{case_id}/media/{media_id}"
        original = self.objects.put(f"{base}/original", io.BytesIO(b"original " + media_id.encode()))
        assert original.sha256 is not None
        scope = Scope.for_case(tenant_id, case_id, "test")
        repo = MediaRepository(self.db)
        repo.add(
            scope,
            case_id=case_id,
            media_id=media_id,
            sha256=original.sha256,
            size=original.size,
            content_type="video/mp4",
            kind=None,
            filename="clip.mp4",
            object_key=original.key,
        )
        with scoped_session(self.db, scope) as session:  # backdate the upload
            created = utcnow() - timedelta(days=age_days)
            session.execute(update(media).where(media.c.id == media_id).values(created_at=created))
        for name in (*INTERMEDIATES, "thumb.jpg", "preview.jpg"):
            self.objects.put(f"{base}/{name}", io.BytesIO(name.encode() * 100))
        if probed:
            assert repo.set_probed(scope, media_id, kind="video", metadata={"fps": 25.0})
            self.probe_document(tenant_id, case_id, media_id)
        return media_id

    def probe_document(self, tenant_id: str, case_id: str, media_id: str) -> None:
        """The ``probes`` document as the probe upserts it (again on a re-probe)."""
        base = f"cases/{case_id}/media/{media_id}"
        doc = {
            "media_id": media_id,
            "kind": "video",
            "frames": [{"frame_id": name, "object_key": f"{base}/{name}"} for name in FRAMES],
            "thumbnail": f"{base}/thumb.jpg",
            "preview": f"{base}/preview.jpg",
            "audio": {"object_key": f"{base}/audio.wav", "sample_rate": 16000, "duration_s": 6.0},
            "probed_at": utcnow(),
        }
        where = {"_id": media_id, "tenant_id": tenant_id, "case_id": case_id}
        self.documents.update_one(PROBES, where, {"$set": doc}, upsert=True)

    def keys(self, case_id: str, media_id: str) -> set[str]:
        prefix = f"cases/{case_id}/media/{media_id}/"
        return {info.key.removeprefix(prefix) for info in self.objects.list(prefix)}

    def probe_doc(self, tenant_id: str, case_id: str, media_id: str) -> dict[str, object]:
        doc = self.documents.find_one(PROBES, {"_id": media_id, "tenant_id": tenant_id, "case_id": case_id})
        assert doc is not None
        return doc

    def purges(self, tenant_id: str) -> list[dict[str, object]]:
        return self.audit.query(tenant_id, action=ACTION)


def intermediate_bytes() -> int:
    return sum(len(name.encode() * 100) for name in INTERMEDIATES)


class FailingObjects(LocalObjectStore):
    """A local store whose disk refuses to delete one key."""

    doomed = ""

    def delete(self, key: str) -> None:
        if key == self.doomed:
            raise OSError("input/output error")
        super().delete(key)


@pytest.fixture(params=["sqlite"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    """The stores; ``postgresql`` (by indirect parametrisation) swaps SQLite for a private database."""
    sqlite = f"sqlite:///{tmp_path / 'aima.db'}"
    db = Database(sqlite if request.param == "sqlite" else request.getfixturevalue("private_pg_database"))
    db.migrate()
    objects = FailingObjects(
        tmp_path / "objects", presign_secret=b"s" * 32, public_base_url="http://aima.test"
    )
    documents = DocumentStore.from_uri(f"litemongo://{tmp_path / 'documents'}", "aima")
    audit = AuditLog(db)
    config = ConfigService(db, MemoryCache(), audit)
    sweeper = RetentionSweeper(db, objects, documents, config, audit, probe_workdir=tmp_path / "probe-work")
    yield Env(db, objects, documents, config, audit, sweeper)
    documents.close()
    db.dispose()


@pytest.mark.parametrize("env", ["sqlite", "postgresql"], indirect=True)
def test_expired_intermediates_go_originals_and_longer_retention_stay(env: Env) -> None:
    a, b = env.tenant(), env.tenant()
    (tenant_a, _), (tenant_b, _) = a, b
    env.config.set(
        "retention", {"intermediate_days": 60}, actor="admin", tenant_id=tenant_b, audit_tenant_id=tenant_b
    )
    expiring, long_kept, other = env.case(a), env.case(a, retention_days=90), env.case(b)
    old = env.media(tenant_a, expiring, age_days=40)
    recent = env.media(tenant_a, expiring, age_days=5)
    unprobed = env.media(tenant_a, expiring, age_days=40, probed=False)
    kept_by_case = env.media(tenant_a, long_kept, age_days=40)
    kept_by_tenant = env.media(tenant_b, other, age_days=40)
    everything = {*INTERMEDIATES, *KEPT}
    original = b"".join(env.objects.get(f"cases/{expiring}/media/{old}/original"))

    results = env.sweeper.sweep(utcnow())

    assert [(r.tenant_id, r.case_id, r.retention_days, r.media_ids) for r in results] == [
        (tenant_a, expiring, 30, (old,))
    ]
    assert (results[0].media_count, results[0].objects_deleted) == (1, len(INTERMEDIATES))
    assert results[0].bytes_freed == intermediate_bytes()
    assert env.keys(expiring, old) == set(KEPT)
    assert b"".join(env.objects.get(f"cases/{expiring}/media/{old}/original")) == original
    for case_id, media_id in ((expiring, recent), (expiring, unprobed), (long_kept, kept_by_case)):
        assert env.keys(case_id, media_id) == everything
    assert env.keys(other, kept_by_tenant) == everything
    assert isinstance(env.probe_doc(tenant_a, expiring, old)[PURGED_AT], datetime)
    assert PURGED_AT not in env.probe_doc(tenant_a, expiring, recent)

    [record] = env.purges(tenant_a)
    assert (record["actor"], record["case_id"], record["outcome"]) == (ACTOR, expiring, "allowed")
    assert record["detail"] == {
        "retention_days": 30,
        "cutoff": record["detail"]["cutoff"],  # type: ignore[index]
        "media_count": 1,
        "objects_deleted": len(INTERMEDIATES),
        "bytes_freed": intermediate_bytes(),
    }
    assert env.purges(tenant_b) == []

    assert env.sweeper.sweep(utcnow()) == []  # nothing left: no deletions, no records
    assert len(env.purges(tenant_a)) == 1

    later = env.sweeper.sweep(utcnow() + timedelta(days=21))  # 61 days: past the tenant's 60
    assert [(r.tenant_id, r.case_id, r.retention_days, r.media_ids) for r in later] == [
        (tenant_b, other, 60, (kept_by_tenant,))
    ]
    assert env.keys(other, kept_by_tenant) == set(KEPT)
    assert env.keys(long_kept, kept_by_case) == everything
    assert [r["case_id"] for r in env.purges(tenant_b)] == [other]
    assert env.audit.verify(tenant_a) == []
    assert env.audit.verify(tenant_b) == []


def test_a_file_probed_again_after_its_purge_is_purged_again(env: Env) -> None:
    tenant = env.tenant()
    case_id = env.case(tenant)
    media_id = env.media(tenant[0], case_id, age_days=31)
    assert len(env.sweeper.sweep(utcnow())) == 1

    for name in INTERMEDIATES:  # a redelivered upload made the probe store them again
        env.objects.put(f"cases/{case_id}/media/{media_id}/{name}", io.BytesIO(b"again"))
    env.probe_document(tenant[0], case_id, media_id)
    [result] = env.sweeper.sweep(utcnow())

    assert (result.media_ids, result.objects_deleted) == ((media_id,), len(INTERMEDIATES))
    assert env.keys(case_id, media_id) == set(KEPT)
    assert len(env.purges(tenant[0])) == 2


def test_a_failed_deletion_is_audited_with_what_was_deleted_and_raises(env: Env) -> None:
    tenant = env.tenant()
    case_id = env.case(tenant)
    first = env.media(tenant[0], case_id, age_days=50)
    second = env.media(tenant[0], case_id, age_days=40)
    assert isinstance(env.objects, FailingObjects)
    env.objects.doomed = f"cases/{case_id}/media/{second}/{FRAMES[1]}"  # after audio.wav and FRAMES[0]

    with pytest.raises(OSError, match="input/output"):
        env.sweeper.sweep(utcnow())

    [failed] = env.purges(tenant[0])
    assert failed["outcome"] == "failed"
    assert failed["detail"]["media_count"] == 2  # type: ignore[index]
    assert failed["detail"]["objects_deleted"] == len(INTERMEDIATES) + 2  # type: ignore[index]
    assert env.keys(case_id, first) == set(KEPT)
    assert env.keys(case_id, second) == {*FRAMES[1:], *KEPT}

    env.objects.doomed = ""
    [result] = env.sweeper.sweep(utcnow())
    assert (result.media_ids, result.objects_deleted) == ((second,), 2)
    assert env.keys(case_id, second) == set(KEPT)
    assert [r["outcome"] for r in env.purges(tenant[0])] == ["allowed", "failed"]
    assert env.audit.verify(tenant[0]) == []


def test_the_sweeper_refuses_a_naive_time(env: Env) -> None:
    with pytest.raises(ValueError, match="timezone"):
        env.sweeper.sweep(datetime(2030, 1, 1))


def sweep_request(now: datetime | None = None) -> CloudEvent:
    return make_event(RetentionSweepRequested(now=now), source="/aima/test/schedule")


async def test_the_function_emits_one_retention_swept_per_case_with_derived_ids(env: Env) -> None:
    tenant = env.tenant()
    first, second, untouched = env.case(tenant), env.case(tenant), env.case(tenant, retention_days=365)
    env.media(tenant[0], first, age_days=40)
    env.media(tenant[0], first, age_days=35)
    env.media(tenant[0], second, age_days=31)
    env.media(tenant[0], untouched, age_days=40)
    handle = Dispatcher(SPEC, RetentionCore(env.sweeper), outbox=None, relay=None).dispatch
    request = sweep_request(utcnow())

    emitted = await handle(request)

    assert {e.caseid for e in emitted} == {first, second}
    keys = (RetentionSwept.TYPE, f"{RetentionSwept.TYPE}#1")
    assert [e.id for e in emitted] == [derived_event_id(request.id, "retention", key) for key in keys]
    for event in emitted:
        assert event.type == RetentionSwept.TYPE
        assert (event.tenantid, event.subject) == (tenant[0], event.caseid)
    counts = {e.caseid: parse_data(e, RetentionSwept) for e in emitted}
    assert counts[first] == RetentionSwept(
        tenant_id=tenant[0],
        case_id=first,
        media_count=2,
        objects_deleted=2 * len(INTERMEDIATES),
        bytes_freed=2 * intermediate_bytes(),
    )
    assert counts[second] == RetentionSwept(
        tenant_id=tenant[0],
        case_id=second,
        media_count=1,
        objects_deleted=len(INTERMEDIATES),
        bytes_freed=intermediate_bytes(),
    )
    assert await handle(request) == []  # a redelivery finds nothing left


async def test_the_http_adapter_takes_a_sweep_request_and_answers_with_the_emitted_ids(env: Env) -> None:
    tenant = env.tenant()
    case_id = env.case(tenant)
    media_id = env.media(tenant[0], case_id, age_days=10)
    dispatcher = Dispatcher(SPEC, RetentionCore(env.sweeper), outbox=None, relay=None)
    app = create_function_app(dispatcher, signer=None, audit=None, health=HealthRegistry(timeout=1.0))
    request = sweep_request(utcnow() + timedelta(days=25))  # 35 days after the upload
    headers = {"content-type": "application/cloudevents+json"}
    assert SPEC.types == (RetentionSweepRequested.TYPE,)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ret") as client:
        response = await client.post("/", headers=headers, content=request.to_json())

    assert response.status_code == 202
    assert response.headers["X-Emitted-Event-Ids"] == derived_event_id(
        request.id, "retention", RetentionSwept.TYPE
    )
    assert env.keys(case_id, media_id) == set(KEPT)
