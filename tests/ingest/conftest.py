"""Ingest fixtures: real stores (SQLite, a local folder and moto's S3 server, litemongo), a MemoryBus
that records what is published, a real TokenService with a service account, and media made by ffmpeg."""

from __future__ import annotations

import builtins
import contextlib
import io
import subprocess
import threading
import uuid
import zipfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from aima.access.scope import Scope
from aima.config.service import ConfigService
from aima.identity.keys import KeyRing
from aima.identity.tokens import TokenService
from aima.identity.users import UserDirectory
from aima.storage.audit import AuditLog
from aima.storage.cache import MemoryCache
from aima.storage.cases import CaseRepository
from aima.storage.documents import DocumentStore
from aima.storage.jobs import JobRepository
from aima.storage.media import MediaRepository
from aima.storage.objects import ObjectInfo, ObjectStore, PartInfo
from aima.storage.objects_local import LocalObjectStore
from aima.storage.objects_s3 import S3ObjectStore
from aima.storage.relational import Database
from events.bus import Subscription
from events.bus_memory import MemoryBus
from events.envelope import CloudEvent
from functions.ingest.core import IngestCore, Publish
from tests.storage.conftest import s3_server  # noqa: F401 - the session's moto server, re-declared here

MiB = 1024 * 1024


@dataclass
class World:
    """A tenant with an owner, two cases, a service account and tokens for both accounts."""

    db: Database
    tokens: TokenService
    tenant_id: str
    owner_id: str
    case_id: str
    other_case_id: str
    service_token: str
    user_token: str

    def scope(self, case_id: str | None = None) -> Scope:
        return Scope.for_case(self.tenant_id, case_id or self.case_id, self.owner_id)


@dataclass
class Recorder:
    """A MemoryBus and every event published on it."""

    bus: MemoryBus
    events: list[CloudEvent]

    async def settled(self) -> list[CloudEvent]:
        await self.bus.drain()
        return list(self.events)

    async def of_type(self, event_type: str) -> list[CloudEvent]:
        return [event for event in await self.settled() if event.type == event_type]


@pytest.fixture
def db(sqlite_db: Database) -> Database:
    return sqlite_db


@pytest.fixture
def world(db: Database) -> World:
    directory = UserDirectory(db)
    suffix = uuid.uuid4().hex[:8]
    tenant_id = directory.ensure_tenant(f"ingest-{suffix}")
    owner = directory.create_user(tenant_id, f"owner-{suffix}", None, "user")
    service = directory.create_user(tenant_id, f"gateway-{suffix}", None, "user", kind="service")
    cases = CaseRepository(db)
    tenant_scope = Scope.for_tenant(tenant_id, owner.id)
    case_id = str(cases.create(tenant_scope, "Ingest case", owner.id)["id"])
    other_case_id = str(cases.create(tenant_scope, "Other case", owner.id)["id"])
    keyring = KeyRing(db, encryption_secret="ingest-test-secret", lifetime_s=86400, retain_s=3600)
    tokens = TokenService(
        db, keyring, issuer="aima", audience="aima-api", access_ttl=300, refresh_ttl=3600, directory=directory
    )
    return World(
        db=db,
        tokens=tokens,
        tenant_id=tenant_id,
        owner_id=owner.id,
        case_id=case_id,
        other_case_id=other_case_id,
        service_token=tokens.issue_service_token(directory.principal(service.id), 600),
        user_token=tokens.issue_access(directory.principal(owner.id)),
    )


@pytest.fixture
def config(db: Database) -> ConfigService:
    return ConfigService(db, MemoryCache(), AuditLog(db))


def set_limits(config: ConfigService, world: World, **limits: int) -> None:
    """Change the tenant's upload limits through the configuration service."""
    current = config.effective(world.tenant_id).limits.model_dump()
    config.set(
        "limits",
        {**current, **limits},
        actor="test",
        tenant_id=world.tenant_id,
        audit_tenant_id=world.tenant_id,
    )


@pytest.fixture
def documents_path(tmp_path: Path) -> Path:
    return tmp_path / "documents"


@pytest.fixture
def documents(documents_path: Path) -> Iterator[DocumentStore]:
    store = DocumentStore.from_uri(f"litemongo://{documents_path}", "aima")
    yield store
    store.close()


def new_local_store(root: Path) -> LocalObjectStore:
    return LocalObjectStore(root, presign_secret=b"ingest-test", public_base_url="http://127.0.0.1:8080")


def new_s3_store(endpoint: str, bucket: str) -> S3ObjectStore:
    return S3ObjectStore(
        endpoint_url=endpoint,
        bucket=bucket,
        region="us-east-1",
        access_key_id="testing",
        secret_access_key="testing",
        part_size=5 * MiB,
    )


@pytest.fixture
def s3_bucket(s3_server: str) -> str:  # noqa: F811 - the imported fixture
    """A fresh bucket on the session's moto server."""
    bucket = f"ingest-{uuid.uuid4().hex[:12]}"
    new_s3_store(s3_server, bucket).ensure_bucket()
    return bucket


@pytest.fixture
def local_objects(tmp_path: Path) -> LocalObjectStore:
    return new_local_store(tmp_path / "objects")


@pytest.fixture(params=["local", "s3"])
def open_objects(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], ObjectStore]:
    """Each object-store adapter in turn, as a factory: every call opens another client of the same
    storage (as another replica would)."""
    if request.param == "local":
        return lambda: new_local_store(tmp_path / "objects")
    endpoint: str = request.getfixturevalue("s3_server")
    bucket: str = request.getfixturevalue("s3_bucket")
    return lambda: new_s3_store(endpoint, bucket)


@pytest.fixture
def objects(open_objects: Callable[[], ObjectStore]) -> ObjectStore:
    return open_objects()


def leftovers(request: pytest.FixtureRequest, objects: ObjectStore) -> list[str]:
    """Temporary files and open multipart sessions the store still holds."""
    if isinstance(objects, LocalObjectStore):
        root = request.getfixturevalue("tmp_path") / "objects"
        return sorted(str(p) for folder in (".tmp", ".uploads") for p in (root / folder).rglob("*"))
    client = boto3.client(
        "s3",
        endpoint_url=request.getfixturevalue("s3_server"),
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    uploads = client.list_multipart_uploads(Bucket=request.getfixturevalue("s3_bucket")).get("Uploads", [])
    return [f"{upload['Key']} ({upload['UploadId']})" for upload in uploads]


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    bus = MemoryBus()
    events: list[CloudEvent] = []

    async def record(event: CloudEvent) -> list[CloudEvent]:
        events.append(event)
        return []

    await bus.subscribe(Subscription(consumer="recorder", types=("io.aima.*",), handler=record))
    yield Recorder(bus, events)
    await bus.close()


CoreFactory = Callable[..., IngestCore]


@pytest.fixture
def make_core(
    world: World, config: ConfigService, documents: DocumentStore, recorder: Recorder
) -> CoreFactory:
    """A new core over the same stores (as a second replica would have)."""

    def make(
        objects: ObjectStore, *, documents_store: DocumentStore | None = None, publish: Publish | None = None
    ) -> IngestCore:
        return IngestCore(
            objects,
            MediaRepository(world.db),
            JobRepository(world.db),
            config,
            bus_publish=publish or recorder.bus.publish,
            documents=documents_store or documents,
            cases=CaseRepository(world.db),
            audit=AuditLog(world.db),
        )

    return make


# --- media ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Media:
    """Small files made by ffmpeg (each on first use) and hostile ones made here, by name."""

    root: Path

    def path(self, name: str) -> Path:
        path = self.root / f"{name}.bin"  # no extension: only the content may decide the format
        if not path.exists():
            if name in FFMPEG_OUTPUTS:
                ffmpeg(*FFMPEG_OUTPUTS[name], str(path))
            else:
                path.write_bytes(HANDMADE[name])
        return path

    def __getitem__(self, name: str) -> bytes:
        return self.path(name).read_bytes()


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


VIDEO = ("-f", "lavfi", "-i", "testsrc2=size=176x144:rate=25:duration=0.4")
TONE = ("-f", "lavfi", "-i", "sine=frequency=440:duration=0.4")
STILL = ("-f", "lavfi", "-i", "testsrc2=size=64x48", "-frames:v", "1")

FFMPEG_OUTPUTS: dict[str, tuple[str, ...]] = {
    "mp4": (*VIDEO, *TONE, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-f", "mp4"),
    "mov": (*VIDEO, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-f", "mov"),
    "3gp": (*VIDEO, "-c:v", "h263", "-f", "3gp"),
    "mkv": (*VIDEO, "-c:v", "mjpeg", "-f", "matroska"),
    "webm": (*VIDEO, *TONE, "-c:v", "libvpx", "-c:a", "libopus", "-f", "webm"),
    "avi": (*VIDEO, "-c:v", "mjpeg", "-f", "avi"),
    "ts": (*VIDEO, "-c:v", "mpeg2video", "-f", "mpegts"),
    "mpg": (*VIDEO, "-c:v", "mpeg1video", "-f", "mpeg"),
    "flv": (*VIDEO, "-c:v", "flv", "-f", "flv"),
    "wav": (*TONE, "-f", "wav"),
    "mp3": (*TONE, "-c:a", "libmp3lame", "-f", "mp3"),
    "mp3-bare": (*TONE, "-c:a", "libmp3lame", "-id3v2_version", "0", "-write_xing", "0", "-f", "mp3"),
    "flac": (*TONE, "-f", "flac"),
    "ogg": (*TONE, "-c:a", "libvorbis", "-f", "ogg"),
    "opus": (*TONE, "-c:a", "libopus", "-f", "ogg"),
    "m4a": (*TONE, "-c:a", "aac", "-f", "ipod"),
    "aac": (*TONE, "-c:a", "aac", "-f", "adts"),
    "aiff": (*TONE, "-f", "aiff"),
    "jpeg": (*STILL, "-f", "image2", "-c:v", "mjpeg"),
    "png": (*STILL, "-f", "image2", "-c:v", "png"),
    "gif": (*STILL, "-f", "gif"),
    "webp": (*STILL, "-c:v", "libwebp", "-f", "webp"),
    "tiff": (*STILL, "-f", "image2", "-c:v", "tiff"),
    "bmp": (*STILL, "-f", "image2", "-c:v", "bmp"),
}

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
HTML = b"\xef\xbb\xbf\n  <!DOCTYPE html>\n<html><head><title>Click</title></head><body>hi</body></html>\n"


def zip_archive() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("evidence.txt", "not media")
    return buffer.getvalue()


def iso_header(major: bytes, *compatible: bytes) -> bytes:
    """An ``ftyp`` box as HEIF/AVIF files start with (ffmpeg cannot write those), then some padding."""
    body = major + b"\x00\x00\x00\x00" + b"".join(compatible)
    return (8 + len(body)).to_bytes(4, "big") + b"ftyp" + body + b"\x00" * 64


HANDMADE: dict[str, bytes] = {
    "heic": iso_header(b"heic", b"mif1", b"heic"),
    "heif": iso_header(b"mif1", b"mif1"),
    "avif": iso_header(b"avif", b"mif1", b"avif", b"miaf"),
    "amr": b"#!AMR\n" + b"\x3c" + b"\x00" * 31,
    "pdf": PDF,
    "zip": zip_archive(),
    "html": HTML,
    "empty": b"",
    "text": b"root:x:0:0:root:/root:/bin/bash\n",
    # the PNG signature, then garbage: "PNG" to ingest; the probe step rejects it when decoding
    "lying_png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8,
}


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    return Media(tmp_path_factory.mktemp("ingest-media"))


# --- an object store that holds calls back, to force races ---------------------------------------


class Holding(ObjectStore):
    """Another store's objects, with ``upload_part`` and ``complete_upload`` held at will: after
    `meet` (n), part uploads wait until n of them are underway at once (so racing requests surely
    overlap), and a ``complete_upload`` waits while `hold_completion` is in force (``completing``
    tells that one began, ``release`` lets it go on)."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self._barrier: threading.Barrier | None = None
        self.completing = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def meet(self, parts_together: int) -> None:
        self._barrier = threading.Barrier(parts_together, timeout=10)

    def hold_completion(self) -> None:
        self.release.clear()

    def put(
        self, key: str, source: Any, *, content_type: str | None = None, expected_sha256: str | None = None
    ) -> ObjectInfo:
        return self.inner.put(key, source, content_type=content_type, expected_sha256=expected_sha256)

    def get(
        self, key: str, *, start: int = 0, end: int | None = None, chunk_size: int = 1 << 20
    ) -> Iterator[bytes]:
        return self.inner.get(key, start=start, end=end, chunk_size=chunk_size)

    def stat(self, key: str) -> ObjectInfo:
        return self.inner.stat(key)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def delete_prefix(self, prefix: str) -> int:
        return self.inner.delete_prefix(prefix)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def presign_get(self, key: str, expires_s: int = 900) -> str:
        return self.inner.presign_get(key, expires_s)

    def health(self) -> None:
        self.inner.health()

    def begin_upload(self, key: str, *, content_type: str | None = None) -> str:
        return self.inner.begin_upload(key, content_type=content_type)

    def upload_part(self, key: str, upload_id: str, part_number: int, source: Any) -> PartInfo:
        data = source if isinstance(source, bytes) else b"".join(iter(lambda: source.read(1 << 20), b""))
        if self._barrier is not None:
            with contextlib.suppress(threading.BrokenBarrierError):
                self._barrier.wait()
        return self.inner.upload_part(key, upload_id, part_number, data)

    def list_parts(self, key: str, upload_id: str) -> builtins.list[PartInfo]:
        return self.inner.list_parts(key, upload_id)

    def complete_upload(self, key: str, upload_id: str, parts: Any = None) -> ObjectInfo:
        self.completing.set()
        self.release.wait(timeout=30)
        if parts is None:
            return self.inner.complete_upload(key, upload_id)
        return self.inner.complete_upload(key, upload_id, parts)  # type: ignore[call-arg]

    def abort_upload(self, key: str, upload_id: str) -> None:
        self.inner.abort_upload(key, upload_id)
