"""The retention sweep removes leftovers that nothing else ever would, each once it is older than its
threshold in the ``retention`` configuration, and keeps everything younger or still in use:

* abandoned resumable upload sessions (a real session opened and half sent through the ingest core,
  on the local folder and on S3), with their open multipart upload;
* ``.tmp/obj-*`` files of the local object store that a crash left mid-write (a process killed while
  it stored an object);
* ``aima-probe-*`` working folders of a killed probe (a process killed inside the same
  ``TemporaryDirectory`` the probe uses), unless a process still has a file or its working directory
  in one.

What it removed is audit-logged: sessions in their tenant's chain, files in the ``system`` chain.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from aima.access.scope import Scope
from aima.config.service import ConfigService
from aima.identity.users import UserDirectory
from aima.samples import write_pattern_png
from aima.storage.audit import SYSTEM_CHAIN, AuditLog
from aima.storage.cache import MemoryCache
from aima.storage.cases import CaseRepository
from aima.storage.documents import DocumentStore
from aima.storage.jobs import JobRepository
from aima.storage.media import MediaRepository
from aima.storage.objects import MIN_PART_SIZE, ObjectStore
from aima.storage.objects_local import LocalObjectStore
from aima.storage.objects_s3 import S3ObjectStore
from aima.storage.relational import Database
from aima.storage.retention import ACTOR, LEFTOVERS, PROBE_PREFIX, RetentionSweeper
from aima.storage.schema import utcnow
from events.envelope import CloudEvent
from functions.ingest.core import UPLOADS, IngestCore, UploadNotFound
from tests.storage.conftest import s3_server  # noqa: F401 - the session's moto server, re-declared here

HOUR = 3600.0
SECRET = b"retention-test"
KILLED_PUT = """
import os, signal, sys
from pathlib import Path
from aima.storage.objects_local import LocalObjectStore

store = LocalObjectStore(Path(sys.argv[1]), presign_secret=b"x", public_base_url="http://aima.test")

def chunks():
    yield b"half an object " * 70_000
    os.kill(os.getpid(), signal.SIGKILL)  # the process dies mid-write
    yield b"never"

store.put("cases/c/media/m/original", chunks())
"""
KILLED_PROBE = """
import os, signal, sys, tempfile, time
from pathlib import Path

with tempfile.TemporaryDirectory(prefix=sys.argv[2], dir=sys.argv[1]) as work:
    (Path(work) / "frames").mkdir()
    (Path(work) / "input").write_bytes(b"downloaded original " * 50_000)
    (Path(work) / "frames" / "0000001000.jpg").write_bytes(b"frame" * 1000)
    if sys.argv[3] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)  # a killed probe: the folder is never cleaned up
    old = time.time() - float(sys.argv[4])
    for path in (Path(work) / "frames" / "0000001000.jpg", Path(work) / "frames", Path(work) / "input"):
        os.utime(path, (old, old))
    os.utime(work, (old, old))
    if sys.argv[3] == "cwd":
        os.chdir(work)
        print(work, flush=True)
        time.sleep(600)
    with open(Path(work) / "input", "rb"):  # a probe still working on a stalled file
        print(work, flush=True)
        time.sleep(600)
"""


def png_part(size: int) -> bytes:
    """A PNG head (what ingest types the file by) padded to ``size`` bytes."""
    with tempfile.TemporaryDirectory() as folder:
        data = write_pattern_png(Path(folder) / "p.png", width=16, height=12).read_bytes()
    return data + uuid.uuid4().bytes + b"\0" * (size - len(data) - 16)


def backdate(path: Path, seconds: float) -> None:
    """Make ``path`` and everything in it look ``seconds`` old."""
    old = time.time() - seconds
    for inner in [*path.rglob("*"), path] if path.is_dir() else [path]:
        os.utime(inner, (old, old), follow_symlinks=False)


@dataclass
class Env:
    tmp_path: Path
    db: Database
    objects: ObjectStore
    documents: DocumentStore
    config: ConfigService
    audit: AuditLog
    ingest: IngestCore
    probe_work: Path
    tenant_id: str
    case_id: str
    scope: Scope

    def sweeper(self) -> RetentionSweeper:
        return RetentionSweeper(
            self.db, self.objects, self.documents, self.config, self.audit, probe_workdir=self.probe_work
        )

    def records(self, chain: str) -> list[dict[str, Any]]:
        return list(reversed(self.audit.query(chain, action=LEFTOVERS)))


def open_objects(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if kind == "local":
        return LocalObjectStore(
            tmp_path / "objects", presign_secret=SECRET, public_base_url="http://aima.test"
        )
    store = S3ObjectStore(
        endpoint_url=request.getfixturevalue("s3_server"),
        bucket=f"leftovers-{uuid.uuid4().hex[:12]}",
        region="us-east-1",
        access_key_id="testing",
        secret_access_key="testing",
        part_size=5 * 1024 * 1024,
    )
    store.ensure_bucket()
    return store


@pytest.fixture(params=["local"])
def env(request: pytest.FixtureRequest, tmp_path: Path, sqlite_db: Database) -> Iterator[Env]:
    objects = open_objects(request.param, request, tmp_path)
    documents = DocumentStore.from_uri(f"litemongo://{tmp_path / 'documents'}", "aima")
    audit = AuditLog(sqlite_db)
    config = ConfigService(sqlite_db, MemoryCache(), audit)
    published: list[CloudEvent] = []

    async def publish(event: CloudEvent) -> None:
        published.append(event)

    cases = CaseRepository(sqlite_db)
    ingest = IngestCore(
        objects,
        MediaRepository(sqlite_db),
        JobRepository(sqlite_db),
        config,
        bus_publish=publish,
        documents=documents,
        cases=cases,
    )
    directory = UserDirectory(sqlite_db)
    tenant_id = directory.ensure_tenant(f"acme-{uuid.uuid4().hex[:8]}")
    owner = directory.create_user(tenant_id, f"owner-{uuid.uuid4().hex[:8]}", None, "user")
    case_id = str(cases.create(Scope.for_tenant(tenant_id, owner.id), "Case", owner.id)["id"])
    probe_work = tmp_path / "probe-work"
    probe_work.mkdir()
    yield Env(
        tmp_path,
        sqlite_db,
        objects,
        documents,
        config,
        audit,
        ingest,
        probe_work,
        tenant_id,
        case_id,
        Scope.for_case(tenant_id, case_id, owner.id),
    )
    documents.close()


async def half_sent_session(env: Env, *, age: timedelta) -> str:
    """A resumable upload of two parts of which only the first arrived, begun ``age`` ago."""
    upload_id = await env.ingest.begin(env.scope, env.case_id, filename="clip.png", length=2 * MIN_PART_SIZE)
    appended = await env.ingest.append(env.scope, upload_id, 0, [png_part(MIN_PART_SIZE)])
    assert appended.offset == MIN_PART_SIZE
    if age:
        ids = {"_id": upload_id, "tenant_id": env.tenant_id, "case_id": env.case_id}
        assert env.documents.update_one(UPLOADS, ids, {"$set": {"created_at": utcnow() - age}})
    return upload_id


def open_multiparts(env: Env) -> list[str]:
    """The multipart uploads the object store still holds open."""
    if isinstance(env.objects, LocalObjectStore):
        return sorted(p.name for p in (env.tmp_path / "objects" / ".uploads").iterdir())
    client = boto3.client(
        "s3",
        endpoint_url=env.objects._client.meta.endpoint_url,  # type: ignore[attr-defined]
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    bucket = env.objects._bucket  # type: ignore[attr-defined]
    return sorted(u["UploadId"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []))


@pytest.mark.parametrize("env", ["local", "s3"], indirect=True)
async def test_an_abandoned_upload_session_ends_and_a_live_one_goes_on(env: Env) -> None:
    abandoned = await half_sent_session(env, age=timedelta(days=8))
    live = await half_sent_session(env, age=timedelta(days=6))  # under the default 7 days
    [abandoned_multipart] = [
        doc["multipart_id"]
        for doc in env.documents.find(UPLOADS, {"_id": abandoned, "tenant_id": env.tenant_id})
    ]
    assert len(open_multiparts(env)) == 2

    removed = env.sweeper().sweep_leftovers(utcnow())

    assert [(r.kind, r.name, r.tenant_id, r.case_id, r.bytes) for r in removed] == [
        ("upload-session", abandoned, env.tenant_id, env.case_id, MIN_PART_SIZE)
    ]
    with pytest.raises(UploadNotFound):
        await env.ingest.status(env.scope, abandoned)
    assert abandoned_multipart not in open_multiparts(env)
    assert len(open_multiparts(env)) == 1
    [record] = env.records(env.tenant_id)
    assert (record["actor"], record["case_id"], record["outcome"]) == (ACTOR, env.case_id, "allowed")
    assert record["object"] == f"cases/{env.case_id}/uploads/{abandoned}"
    assert record["detail"]["kind"] == "upload-session"
    assert record["detail"]["bytes"] == MIN_PART_SIZE
    assert record["detail"]["older_than_hours"] == 7 * 24

    # the live session is untouched and completes
    assert (await env.ingest.status(env.scope, live)).offset == MIN_PART_SIZE
    done = await env.ingest.append(env.scope, live, MIN_PART_SIZE, [b"\0" * MIN_PART_SIZE])
    assert done.result is not None
    assert done.result.size == 2 * MIN_PART_SIZE
    assert open_multiparts(env) == []
    assert env.sweeper().sweep_leftovers(utcnow()) == []
    assert env.audit.verify(env.tenant_id) == []


async def test_a_tenant_may_keep_sessions_for_less_time_but_never_under_a_day(env: Env) -> None:
    two_days = await half_sent_session(env, age=timedelta(days=2))
    env.config.set(
        "retention",
        {"upload_session_hours": 36},
        actor="admin",
        tenant_id=env.tenant_id,
        audit_tenant_id=env.tenant_id,
    )
    [removed] = env.sweeper().sweep_leftovers(utcnow())
    assert (removed.kind, removed.name) == ("upload-session", two_days)
    with pytest.raises(ValueError, match="upload_session_hours"):
        env.config.set(
            "retention",
            {"upload_session_hours": 2},
            actor="admin",
            tenant_id=env.tenant_id,
            audit_tenant_id=env.tenant_id,
        )


def killed_put(root: Path) -> Path:
    """Run a process that dies while the local object store writes an object; its temporary file."""
    before = set((root / ".tmp").glob("obj-*")) if (root / ".tmp").exists() else set()
    done = subprocess.run([sys.executable, "-c", KILLED_PUT, str(root)], capture_output=True, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr
    [left] = set((root / ".tmp").glob("obj-*")) - before
    assert left.stat().st_size > 0
    return left


def test_temporary_files_of_a_crashed_write_are_removed_once_stale(env: Env) -> None:
    root = env.tmp_path / "objects"
    stale, fresh = killed_put(root), killed_put(root)
    backdate(stale, 25 * HOUR)
    stale_size = stale.stat().st_size
    orphan_multipart = env.objects.begin_upload("cases/c/media/orphan/original")  # its session was lost
    env.objects.upload_part("cases/c/media/orphan/original", orphan_multipart, 1, b"part" * 1000)
    backdate(root / ".uploads" / orphan_multipart, 8 * 24 * HOUR)
    orphan_size = sum(p.stat().st_size for p in (root / ".uploads" / orphan_multipart).iterdir())

    removed = env.sweeper().sweep_leftovers(utcnow())

    assert sorted((r.kind, r.name, r.bytes) for r in removed) == sorted(
        [
            ("temporary-file", f".tmp/{stale.name}", stale_size),
            ("temporary-file", f".uploads/{orphan_multipart}", orphan_size),
        ]
    )
    assert not stale.exists()
    assert fresh.exists()
    assert not (root / ".uploads" / orphan_multipart).exists()
    [record] = env.records(SYSTEM_CHAIN)
    assert (record["actor"], record["case_id"], record["outcome"]) == (ACTOR, None, "allowed")
    assert record["detail"]["kind"] == "temporary-file"
    assert record["detail"]["count"] == 2
    assert sorted(record["detail"]["names"]) == sorted([f".tmp/{stale.name}", f".uploads/{orphan_multipart}"])
    assert record["detail"]["older_than_hours"] == 24
    assert env.audit.verify(SYSTEM_CHAIN) == []
    # the store still works, and what it writes now is not a leftover
    env.objects.put("cases/c/media/n/original", [b"fine"])
    assert env.sweeper().sweep_leftovers(utcnow()) == []


def probe_run(work: Path, mode: str, age: float = 0.0) -> tuple[Path, subprocess.Popen[str] | None]:
    """A probe's working folder: killed (``kill``), or still open by a live process (``open``, ``cwd``)."""
    before = set(work.iterdir())
    argv = [sys.executable, "-c", KILLED_PROBE, str(work), PROBE_PREFIX, mode, str(age)]
    if mode == "kill":
        done = subprocess.run(argv, capture_output=True, timeout=60, text=True)
        assert done.returncode == -signal.SIGKILL, done.stderr
        [folder] = set(work.iterdir()) - before
        return folder, None
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    folder = Path(process.stdout.readline().strip())
    assert folder.is_dir()
    return folder, process


def test_a_killed_probes_folder_goes_once_stale_and_one_in_use_stays(env: Env) -> None:
    work = env.probe_work
    stale, _ = probe_run(work, "kill")
    fresh, _ = probe_run(work, "kill")
    backdate(stale, 49 * HOUR)
    size = sum(p.stat().st_size for p in stale.rglob("*") if p.is_file())
    stalled, holder = probe_run(work, "open", age=72 * HOUR)
    inside, dweller = probe_run(work, "cwd", age=72 * HOUR)
    unrelated = work / "someone-else"
    unrelated.mkdir()
    backdate(unrelated, 30 * 24 * HOUR)
    running: list[subprocess.Popen[str]] = [p for p in (holder, dweller) if p is not None]
    try:
        removed = env.sweeper().sweep_leftovers(utcnow())

        assert [(r.kind, r.name, r.bytes) for r in removed] == [("probe-folder", stale.name, size)]
        assert not stale.exists()
        for kept in (fresh, stalled, inside, unrelated):
            assert kept.is_dir()
    finally:
        for process in running:
            process.kill()
            process.wait()
    # once their processes are gone, the stale folders are leftovers too
    later = env.sweeper().sweep_leftovers(utcnow())
    assert sorted(r.name for r in later) == sorted([stalled.name, inside.name])
    assert fresh.is_dir()
    assert unrelated.is_dir()
    records = env.records(SYSTEM_CHAIN)
    assert [r["detail"]["kind"] for r in records] == ["probe-folder", "probe-folder"]
    assert records[0]["detail"]["names"] == [stale.name]
    assert records[0]["detail"]["bytes"] == size
    assert records[0]["detail"]["older_than_hours"] == 48
    assert env.audit.verify(SYSTEM_CHAIN) == []


def test_the_probe_makes_its_folders_with_the_prefix_the_sweep_looks_for() -> None:
    from functions.probe import core

    assert core.PROBE_PREFIX is PROBE_PREFIX  # the probe names its folders with the sweep's constant
    source = Path(core.__file__).read_text()
    assert "TemporaryDirectory(prefix=PROBE_PREFIX" in source


async def test_sweep_removes_leftovers_before_purging_and_a_future_now_changes_nothing(env: Env) -> None:
    live = await half_sent_session(env, age=timedelta(days=1))
    fresh_tmp = killed_put(env.tmp_path / "objects")
    fresh_probe, _ = probe_run(env.probe_work, "kill")
    abandoned = await half_sent_session(env, age=timedelta(days=30))

    assert env.sweeper().sweep(utcnow() + timedelta(days=365)) == []  # leftovers are judged by the clock

    with pytest.raises(UploadNotFound):
        await env.ingest.status(env.scope, abandoned)
    assert (await env.ingest.status(env.scope, live)).offset == MIN_PART_SIZE
    assert fresh_tmp.exists()
    assert fresh_probe.is_dir()
