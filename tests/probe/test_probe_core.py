"""The probe core on real stores (SQLite, a local object folder, litemongo) and its HTTP adapter."""

from __future__ import annotations

import io
import os
import time
import uuid
import wave
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

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
from aima.telemetry.health import HealthRegistry
from events.catalogue import (
    AudioExtracted,
    FramesExtracted,
    MediaFailed,
    MediaProbed,
    MediaUploaded,
    make_event,
    parse_data,
)
from events.envelope import CloudEvent, derived_event_id
from events.http import to_binary
from functions.probe.core import PROBES, ProbeCore, ProbeLimits
from functions.probe.ffmpeg import header_dimensions
from functions.probe.spec import SPEC, tenant_limits
from functions.runtime.app import create_function_app
from functions.runtime.dispatch import Dispatcher

from .conftest import CUT_S, DURATION_S, LATITUDE, LONGITUDE, Media

LIMITS = ProbeLimits(timeout_s=20.0, max_frames_per_minute=60)
STORE_FILES = ("aima.db", "aima.db-wal", "aima.db-shm")


@dataclass
class Env:
    root: Path
    db: Database
    objects: LocalObjectStore
    documents: DocumentStore
    media: MediaRepository
    core: ProbeCore
    workdir: Path
    tenant_id: str
    case_id: str

    @property
    def scope(self) -> Scope:
        return Scope.for_case(self.tenant_id, self.case_id, "test")

    def upload(
        self, path: Path, *, filename: str | None = None, content_type: str = "video/mp4"
    ) -> CloudEvent:
        """Store ``path`` the way ingest does (object, then media row) and return its MediaUploaded."""
        media_id = str(uuid.uuid4())
        key = f"cases/{self.case_id}/media/{media_id}/original"
        stored = self.objects.put(key, io.BytesIO(path.read_bytes()), content_type=content_type)
        assert stored.sha256 is not None
        row, created = self.media.add(
            self.scope,
            case_id=self.case_id,
            media_id=media_id,
            sha256=stored.sha256,
            size=stored.size,
            content_type=content_type,
            kind=None,
            filename=filename or path.name,
            object_key=key,
        )
        assert created
        assert row.status == "stored"
        data = MediaUploaded(
            tenant_id=self.tenant_id,
            case_id=self.case_id,
            media_id=media_id,
            job_id="job-1",
            object_key=key,
            sha256=stored.sha256,
            size=stored.size,
            content_type=content_type,
            filename=filename or path.name,
        )
        return make_event(data, source="/aima/test/ingest")

    def derived_keys(self, event: CloudEvent) -> list[str]:
        media_id = (event.data or {})["media_id"]
        prefix = f"cases/{self.case_id}/media/{media_id}/"
        return [
            info.key.removeprefix(prefix)
            for info in self.objects.list(prefix)
            if not info.key.endswith("original")
        ]

    def read_object(self, key: str) -> bytes:
        return b"".join(self.objects.get(key))


def new_case(db: Database) -> tuple[str, str]:
    """A tenant with an owner and one case, made through the identity and case repositories."""
    directory = UserDirectory(db)
    suffix = uuid.uuid4().hex[:8]
    tenant_id = directory.ensure_tenant(f"probe-{suffix}")
    owner = directory.create_user(tenant_id, f"owner-{suffix}", None, "user")
    case = CaseRepository(db).create(Scope.for_tenant(tenant_id, owner.id), "Probe case", owner.id)
    return tenant_id, str(case["id"])


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    db = Database(f"sqlite:///{tmp_path / 'aima.db'}")
    db.migrate()
    objects = LocalObjectStore(
        tmp_path / "objects", presign_secret=b"s" * 32, public_base_url="http://aima.test"
    )
    documents = DocumentStore.from_uri(f"litemongo://{tmp_path / 'documents'}", "aima")
    tenant_id, case_id = new_case(db)
    workdir = tmp_path / "work"
    workdir.mkdir()
    media = MediaRepository(db)
    core = ProbeCore(objects, documents, media, limits=LIMITS, workdir=workdir)
    env = Env(tmp_path, db, objects, documents, media, core, workdir, tenant_id, case_id)
    yield env
    env.documents.close()  # a test may have swapped it
    db.dispose()


def handle(core: ProbeCore) -> Callable[[CloudEvent], Awaitable[list[CloudEvent]]]:
    """The core as the runtime runs it (ids derived, envelopes built), without a ledger or a bus."""
    return Dispatcher(SPEC, core, outbox=None, relay=None).dispatch


def by_type(events: Sequence[CloudEvent]) -> dict[str, CloudEvent]:
    assert len({e.type for e in events}) == len(events)
    return {e.type: e for e in events}


async def test_a_video_is_probed_sampled_and_its_audio_extracted(env: Env, media: Media) -> None:
    uploaded = env.upload(media.video)
    media_id = (uploaded.data or {})["media_id"]

    events = by_type(await handle(env.core)(uploaded))

    assert set(events) == {MediaProbed.TYPE, FramesExtracted.TYPE, AudioExtracted.TYPE}
    for event in events.values():
        assert event.id == derived_event_id(uploaded.id, "probe", event.type)
        assert (event.tenantid, event.caseid, event.subject) == (env.tenant_id, env.case_id, media_id)
    probed = parse_data(events[MediaProbed.TYPE])
    assert isinstance(probed, MediaProbed)
    assert (probed.kind, probed.width, probed.height, probed.job_id) == ("video", 320, 240, "job-1")
    assert probed.duration_s == pytest.approx(DURATION_S, abs=0.05)

    frames = parse_data(events[FramesExtracted.TYPE])
    assert isinstance(frames, FramesExtracted)
    times = [frame.timestamp_s for frame in frames.frames]
    assert times == pytest.approx(
        [0.0, 1.0, CUT_S, 3.0, 4.0, 5.0], abs=1e-6
    )  # one a second; the cut replaces 2.0
    assert [frame.object_key.rsplit("/", 1)[1] for frame in frames.frames] == [
        f"{round(t * 1000):010d}.jpg" for t in times
    ]
    assert header_dimensions(env.root / "objects" / frames.frames[2].object_key) == (320, 240)

    audio = parse_data(events[AudioExtracted.TYPE])
    assert isinstance(audio, AudioExtracted)
    with wave.open(io.BytesIO(env.read_object(audio.object_key))) as wav:
        assert (wav.getframerate(), wav.getnchannels()) == (16000, 1)
        assert wav.getnframes() / 16000 == pytest.approx(DURATION_S, abs=0.1)
    assert audio.duration_s == pytest.approx(DURATION_S, abs=0.1)

    assert sorted(env.derived_keys(uploaded)) == sorted(
        ["audio.wav", "preview.jpg", "thumb.jpg", *(f.object_key.split("/", 4)[4] for f in frames.frames)]
    )
    row = env.media.get(env.scope, media_id)
    assert row is not None
    assert (row.status, row.kind, row.failure_reason) == ("probed", "video", None)
    assert row.metadata is not None
    assert row.metadata["fps"] == 25
    assert row.metadata["location"] == {"latitude": LATITUDE, "longitude": LONGITUDE, "altitude": None}
    doc = env.documents.find_one(
        PROBES, {"_id": media_id, "tenant_id": env.tenant_id, "case_id": env.case_id}
    )
    assert doc is not None
    assert doc["source_event"] == uploaded.id
    assert [f["timestamp_s"] for f in doc["frames"]] == times
    assert list(env.workdir.iterdir()) == []


async def test_an_image_is_one_frame_at_zero_with_a_thumbnail_and_exif(env: Env, media: Media) -> None:
    uploaded = env.upload(media.photo, content_type="image/jpeg")

    events = by_type(await handle(env.core)(uploaded))

    assert set(events) == {MediaProbed.TYPE, FramesExtracted.TYPE}
    frames = parse_data(events[FramesExtracted.TYPE])
    assert isinstance(frames, FramesExtracted)
    assert [(f.timestamp_s, f.object_key.rsplit("/", 1)[1]) for f in frames.frames] == [
        (0.0, "0000000000.jpg")
    ]
    assert sorted(env.derived_keys(uploaded)) == ["frames/0000000000.jpg", "thumb.jpg"]
    assert header_dimensions(env.root / "objects" / frames.frames[0].object_key) == (640, 480)
    row = env.media.get(env.scope, (uploaded.data or {})["media_id"])
    assert row is not None
    assert row.metadata is not None
    assert (row.kind, row.metadata["make"], row.metadata["model"]) == (
        "image",
        "AIMA Cam",
        "Probe One",
    )
    assert row.metadata["location"]["latitude"] == pytest.approx(LATITUDE)


async def test_speech_audio_becomes_16_khz_mono(env: Env, media: Media) -> None:
    uploaded = env.upload(media.speech, content_type="audio/wav")

    events = by_type(await handle(env.core)(uploaded))

    assert set(events) == {MediaProbed.TYPE, AudioExtracted.TYPE}
    audio = parse_data(events[AudioExtracted.TYPE])
    assert isinstance(audio, AudioExtracted)
    with wave.open(str(media.speech)) as original:
        expected = original.getnframes() / original.getframerate()
    with wave.open(io.BytesIO(env.read_object(audio.object_key))) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2)
        assert wav.getnframes() / 16000 == pytest.approx(expected, abs=0.01)
    assert env.derived_keys(uploaded) == ["audio.wav"]


@pytest.mark.parametrize(
    ("name", "filename", "reason"),
    [
        ("truncated", "clip.mp4", "not a readable audio, video or image file (moov atom not found"),
        ("lying_png", "photo.png", "the picture size could not be read"),
        ("empty", "empty.mp4", "the file is empty (0 bytes)"),
        ("bomb", "huge.png", "30000x30000 pixels (900 megapixels), over the limit of 100 megapixels"),
        ("passwd", "../../etc/passwd", "not a readable audio, video or image file"),
    ],
)
async def test_hostile_files_end_failed_with_a_reason(
    env: Env, media: Media, name: str, filename: str, reason: str
) -> None:
    uploaded = env.upload(getattr(media, name), filename=filename)
    media_id = (uploaded.data or {})["media_id"]

    started = time.monotonic()
    events = await handle(env.core)(uploaded)

    assert time.monotonic() - started < LIMITS.timeout_s
    assert [e.type for e in events] == [MediaFailed.TYPE]
    assert events[0].id == derived_event_id(uploaded.id, "probe", MediaFailed.TYPE)
    failed = parse_data(events[0])
    assert isinstance(failed, MediaFailed)
    assert (failed.step, failed.media_id) == ("probe", media_id)
    assert reason in failed.reason
    row = env.media.get(env.scope, media_id)
    assert row is not None
    assert (row.status, row.failure_reason, row.filename) == ("failed", failed.reason, filename)
    assert env.derived_keys(uploaded) == []
    assert list(env.workdir.iterdir()) == []  # no temporary file left
    # the name is metadata only: nothing was written anywhere but the stores
    assert {p.name for p in env.root.iterdir()} <= {"objects", "documents", "work", *STORE_FILES}
    assert not any(p.name == "passwd" for p in env.root.rglob("*"))


async def test_a_file_over_the_duration_limit_or_a_timeout_fails_cleanly(env: Env, media: Media) -> None:
    for source, limits, reason in (
        (media.video, ProbeLimits(max_duration_s=3.0), "the video lasts 6 s, longer than the limit of 3 s"),
        (media.rotated, ProbeLimits(timeout_s=0.001), "took longer than 0.001 s and was stopped"),
    ):
        core = ProbeCore(env.objects, env.documents, env.media, limits=limits, workdir=env.workdir)
        events = await handle(core)(env.upload(source))
        failed = parse_data(events[0])
        assert isinstance(failed, MediaFailed)
        assert reason in failed.reason
        assert list(env.workdir.iterdir()) == []


async def test_redelivery_emits_the_same_ids_and_no_duplicate_frames(env: Env, media: Media) -> None:
    uploaded = env.upload(media.video)

    first = await handle(env.core)(uploaded)
    keys = env.derived_keys(uploaded)
    second = await handle(env.core)(uploaded)

    assert [e.id for e in second] == [e.id for e in first]
    assert [e.data for e in second] == [e.data for e in first]
    assert env.derived_keys(uploaded) == keys
    assert env.documents.count(PROBES, {"case_id": env.case_id}) == 1
    assert len(env.media.list(env.scope, env.case_id)) == 1


async def test_a_store_that_is_down_raises_so_the_bus_retries(env: Env, media: Media) -> None:
    uploaded = env.upload(media.png, content_type="image/png")
    env.documents.close()

    with pytest.raises(RuntimeError):
        await handle(env.core)(uploaded)

    row = env.media.get(env.scope, (uploaded.data or {})["media_id"])
    assert row is not None
    assert row.status == "stored"  # not failed: the file is fine, the store was not
    assert list(env.workdir.iterdir()) == []
    env.documents = DocumentStore.from_uri(f"litemongo://{env.root / 'documents'}", "aima")


async def test_media_outside_the_scope_or_deleted_is_skipped(env: Env, media: Media) -> None:
    uploaded = env.upload(media.png, content_type="image/png")
    media_id = (uploaded.data or {})["media_id"]
    other_case = uploaded.model_copy(update={"data": {**(uploaded.data or {}), "case_id": str(uuid.uuid4())}})

    assert await handle(env.core)(other_case) == []
    assert env.media.delete(env.scope, media_id)
    assert await handle(env.core)(uploaded) == []
    assert env.derived_keys(uploaded) == []


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_repository_keeps_one_row_per_file_and_case(
    backend: str, tmp_path: Path, pg_database: str
) -> None:
    db = Database(f"sqlite:///{tmp_path / 'aima.db'}" if backend == "sqlite" else pg_database)
    db.migrate()
    tenant_id, case_id = new_case(db)
    scope, repo = Scope.for_case(tenant_id, case_id, "test"), MediaRepository(db)
    m1, m2 = str(uuid.uuid4()), str(uuid.uuid4())
    fields = {"sha256": "a" * 64, "size": 3, "content_type": "video/mp4", "kind": None, "filename": "a.mp4"}

    row, created = repo.add(scope, case_id=case_id, media_id=m1, object_key="k1", **fields)
    again, created_again = repo.add(scope, case_id=case_id, media_id=m2, object_key="k2", **fields)

    assert (created, created_again) == (True, False)
    assert again == row
    assert [r.id for r in repo.list(scope, case_id)] == [m1]
    other = Scope.for_case(tenant_id, str(uuid.uuid4()), "test")
    assert repo.get(other, m1) is None
    assert not repo.mark_failed(other, m1, "nope")
    assert repo.mark_failed(scope, m1, "damaged")
    assert repo.get(scope, m1) == row.model_copy(update={"status": "failed", "failure_reason": "damaged"})
    assert repo.set_probed(scope, m1, kind="video", metadata={"fps": 25.0})
    probed = repo.get(scope, m1)
    assert probed is not None
    assert (probed.status, probed.kind, probed.metadata, probed.failure_reason) == (
        "probed",
        "video",
        {"fps": 25.0},
        None,
    )
    assert not repo.delete(other, m1)
    assert repo.delete(scope, m1)
    assert repo.get(scope, m1) is None
    db.dispose()


async def test_the_http_adapter_takes_a_binary_cloudevent_and_answers_with_the_emitted_ids(
    env: Env, media: Media
) -> None:
    dispatcher = Dispatcher(SPEC, env.core, outbox=None, relay=None)
    app = create_function_app(dispatcher, signer=None, audit=None, health=HealthRegistry(timeout=1.0))
    uploaded = env.upload(media.speech, content_type="audio/wav")
    headers, body = to_binary(uploaded)
    assert SPEC.types == (MediaUploaded.TYPE,)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://probe") as client:
        response = await client.post("/", headers=headers, content=body)
        rejected = await client.post("/", headers={**headers, "ce-type": MediaProbed.TYPE}, content=body)

    assert response.status_code == 202
    assert rejected.status_code == 400
    assert response.headers["X-Emitted-Event-Ids"].split(",") == [
        derived_event_id(uploaded.id, "probe", name) for name in (MediaProbed.TYPE, AudioExtracted.TYPE)
    ]


async def test_the_duration_limit_and_frame_density_come_from_the_tenants_configuration(
    env: Env, media: Media
) -> None:
    config = ConfigService(env.db, MemoryCache(), AuditLog(env.db))
    limits_for = tenant_limits(config, LIMITS)
    core = ProbeCore(env.objects, env.documents, env.media, limits_for=limits_for, workdir=env.workdir)

    def configure(key: str, value: dict[str, int]) -> None:
        config.set(key, value, actor="t", tenant_id=env.tenant_id, audit_tenant_id=env.tenant_id)

    configure("limits", {"max_duration_s": 3})
    failed = parse_data((await handle(core)(env.upload(media.rotated)))[0])  # the same 6 s video, rotated
    assert isinstance(failed, MediaFailed)
    assert "longer than the limit of 3 s" in failed.reason

    configure("limits", {"max_duration_s": 60})
    configure("analysis", {"max_frames_per_minute": 60})
    events = by_type(await handle(core)(env.upload(media.video, filename="again.mp4")))
    frames = parse_data(events[FramesExtracted.TYPE])
    assert isinstance(frames, FramesExtracted)
    assert len(frames.frames) >= 6  # at least one a second over the 6 s video


def test_a_starting_probe_removes_the_folders_a_killed_one_left_and_keeps_fresh_ones(env: Env) -> None:
    stale = env.workdir / "aima-probe-killed"
    (stale / "frames").mkdir(parents=True)
    (stale / "frames" / "0000000000.jpg").write_bytes(b"x" * 1000)
    old = time.time() - 7 * 3600
    for path in (stale / "frames" / "0000000000.jpg", stale / "frames", stale):
        os.utime(path, (old, old))
    fresh = env.workdir / "aima-probe-running"
    fresh.mkdir()

    removed = env.core.remove_stale_folders()

    assert removed == [("aima-probe-killed", 1000)]
    assert not stale.exists()
    assert fresh.exists()
