"""The ingest core on real stores: streaming uploads, de-duplication, refusals that leave nothing
behind, limits, constant memory, filenames as metadata, bulk jobs and resumable sessions (on the
local folder and on S3 through moto)."""

from __future__ import annotations

import hashlib
import itertools
import random
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from aima.config.service import ConfigService
from aima.domain import JobPhase, Priority
from aima.storage.audit import AuditLog
from aima.storage.documents import DocumentStore
from aima.storage.jobs import InvalidTransition, JobNotFound, JobOptions, JobRepository
from aima.storage.media import MediaRepository
from aima.storage.objects import ObjectNotFound, ObjectStore
from aima.storage.outbox import Outbox
from aima.storage.schema import jobs
from aima.storage.scoped import scoped_session
from events.catalogue import JobCreated, MediaUploaded
from events.envelope import CloudEvent, derived_event_id
from functions.ingest.core import (
    PART_BYTES,
    UPLOADS,
    Checksum,
    ChecksumMismatch,
    Chunks,
    IncompleteBody,
    OffsetMismatch,
    TooLarge,
    TooManyFiles,
    UploadNotFound,
    clean_filename,
    object_key,
)
from functions.ingest.sniff import HEAD_BYTES, UnsupportedMedia

from .conftest import CoreFactory, Media, MiB, Recorder, World, leftovers, set_limits


def chunks(data: bytes, size: int = 256 * 1024) -> Iterator[bytes]:
    for at in range(0, len(data), size):
        yield data[at : at + size]


async def achunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for piece in chunks(data, size):
        yield piece


def broken(data: bytes, after: int) -> Iterator[bytes]:
    """A body whose connection drops after ``after`` bytes."""
    yield from chunks(data[:after])
    raise ConnectionResetError("connection reset by peer")


def never_read_past(head: bytes) -> Iterator[bytes]:
    """A body whose first chunk is ``head`` (padded to what the sniffer reads); reading on fails the test."""
    yield head.ljust(HEAD_BYTES, b" ") if head else head
    pytest.fail("the body was read past its head")


def payload(media: Media, size: int, seed: int) -> bytes:
    """``size`` bytes that start like an MP4 (the sniffer sees only the head) and are random after."""
    head = media["mp4"][:4096]
    return head + random.Random(seed).randbytes(size - len(head))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stored_keys(objects: ObjectStore, case_id: str) -> list[str]:
    return [info.key for info in objects.list(f"cases/{case_id}/")]


def read(objects: ObjectStore, key: str) -> bytes:
    return b"".join(objects.get(key))


def job_count(world: World) -> int:
    with scoped_session(world.db, world.scope()) as session:
        return int(session.execute(select(func.count()).select_from(jobs)).scalar_one())


# --- single files -------------------------------------------------------------------------------


async def test_a_file_round_trips_byte_identical_and_a_repeat_is_a_duplicate(
    world: World, objects: ObjectStore, make_core: CoreFactory, recorder: Recorder, media: Media
) -> None:
    core = make_core(objects)
    data = media["mp4"]
    result = await core.store(
        world.scope(), world.case_id, filename="clip.mp4", stream=chunks(data), declared_size=len(data),
        job_id="job-1",
    )  # fmt: skip
    assert (result.sha256, result.size, result.kind) == (sha256(data), len(data), "video")
    assert (result.content_type, result.duplicate_of, result.job_id) == ("video/mp4", None, "job-1")
    key = object_key(world.case_id, result.media_id)
    assert read(objects, key) == data
    assert stored_keys(objects, world.case_id) == [key]
    row = MediaRepository(world.db).get(world.scope(), result.media_id)
    assert row is not None
    assert (row.filename, row.status, row.object_key, row.sha256) == (
        "clip.mp4", "stored", key, sha256(data),
    )  # fmt: skip

    [event] = await recorder.of_type(MediaUploaded.TYPE)
    assert event.id == derived_event_id(result.media_id, MediaUploaded.TYPE)
    assert (event.tenantid, event.caseid, event.subject) == (world.tenant_id, world.case_id, result.media_id)
    assert event.data == {
        "tenant_id": world.tenant_id,
        "case_id": world.case_id,
        "media_id": result.media_id,
        "job_id": "job-1",
        "object_key": key,
        "sha256": sha256(data),
        "size": len(data),
        "content_type": "video/mp4",
        "filename": "clip.mp4",
    }

    again = await core.store(world.scope(), world.case_id, filename="copy.mp4", stream=achunks(data))
    assert again.duplicate_of == result.media_id
    assert (again.media_id, again.sha256, again.job_id) == (result.media_id, result.sha256, None)
    assert stored_keys(objects, world.case_id) == [key]
    assert len(MediaRepository(world.db).list(world.scope(), world.case_id)) == 1
    assert len(await recorder.of_type(MediaUploaded.TYPE)) == 1


async def test_the_same_bytes_in_another_case_are_no_duplicate(
    world: World, local_objects: ObjectStore, make_core: CoreFactory, media: Media
) -> None:
    core = make_core(local_objects)
    data = media["png"]
    first = await core.store(world.scope(), world.case_id, filename="a.png", stream=chunks(data))
    other_scope = world.scope(world.other_case_id)
    second = await core.store(other_scope, world.other_case_id, filename="a.png", stream=chunks(data))
    assert second.duplicate_of is None
    assert second.media_id != first.media_id


async def test_unsupported_files_are_refused_after_the_head_and_store_nothing(
    request: pytest.FixtureRequest,
    world: World,
    objects: ObjectStore,
    make_core: CoreFactory,
    recorder: Recorder,
    media: Media,
) -> None:
    core = make_core(objects)
    earlier = await core.store(
        world.scope(), world.case_id, filename="photo.png", stream=chunks(media["png"])
    )
    before = stored_keys(objects, world.case_id)

    pdf = media["pdf"]
    with pytest.raises(UnsupportedMedia) as refused:
        await core.store(world.scope(), world.case_id, filename="clip.mp4", stream=never_read_past(pdf))
    assert refused.value.reason == "a PDF document"
    with pytest.raises(UnsupportedMedia) as empty:
        await core.store(world.scope(), world.case_id, filename="nothing.mp4", stream=iter(()))
    assert empty.value.reason == "empty"

    assert stored_keys(objects, world.case_id) == before
    assert read(objects, object_key(world.case_id, earlier.media_id)) == media["png"]
    assert [row.id for row in MediaRepository(world.db).list(world.scope(), world.case_id)] == [
        earlier.media_id
    ]
    assert len(await recorder.of_type(MediaUploaded.TYPE)) == 1
    assert leftovers(request, objects) == []


async def test_a_file_over_the_limit_is_refused_while_streaming_and_removed(
    request: pytest.FixtureRequest,
    world: World,
    objects: ObjectStore,
    config: ConfigService,
    make_core: CoreFactory,
    recorder: Recorder,
    media: Media,
) -> None:
    set_limits(config, world, max_upload_bytes=12 * MiB)
    core = make_core(objects)
    data = payload(media, 20 * MiB, seed=1)  # on S3 this already streams multipart (5 MiB parts)
    with pytest.raises(TooLarge) as refused:
        await core.store(world.scope(), world.case_id, filename="big.mp4", stream=chunks(data, MiB))
    assert refused.value.limit == 12 * MiB
    assert stored_keys(objects, world.case_id) == []
    assert leftovers(request, objects) == []  # no partial object, temp file or multipart session
    assert MediaRepository(world.db).list(world.scope(), world.case_id) == []
    assert await recorder.settled() == []

    with pytest.raises(TooLarge):  # a declared size over the limit is refused before reading
        await core.store(
            world.scope(),
            world.case_id,
            filename="big.mp4",
            stream=never_read_past(b""),
            declared_size=13 * MiB,
        )


async def test_a_body_shorter_than_declared_stores_nothing(
    world: World, local_objects: ObjectStore, make_core: CoreFactory, media: Media
) -> None:
    core = make_core(local_objects)
    data = media["wav"]
    with pytest.raises(IncompleteBody):
        await core.store(
            world.scope(), world.case_id, filename="a.wav", stream=chunks(data), declared_size=len(data) + 1
        )
    assert stored_keys(local_objects, world.case_id) == []


async def test_streaming_256_mib_keeps_memory_constant(
    world: World, local_objects: ObjectStore, make_core: CoreFactory, recorder: Recorder, media: Media
) -> None:
    core = make_core(local_objects)
    first = bytearray(MiB)
    first[:4096] = media["mp4"][:4096]
    head, block, count = bytes(first), bytes(MiB), 256
    expected = hashlib.sha256(head)
    for _ in range(count - 1):
        expected.update(block)

    def body() -> Iterator[bytes]:
        yield head
        for _ in range(count - 1):
            yield block

    tracemalloc.start()
    try:
        result = await core.store(world.scope(), world.case_id, filename="long.mp4", stream=body())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.size == count * MiB
    assert result.sha256 == expected.hexdigest()
    assert peak < 16 * MiB, f"peak traced memory {peak / MiB:.1f} MiB"
    [event] = await recorder.of_type(MediaUploaded.TYPE)
    assert (event.data or {})["size"] == count * MiB


async def test_an_async_body_is_read_ahead_in_constant_memory(
    world: World, local_objects: ObjectStore, make_core: CoreFactory, media: Media
) -> None:
    """As a request body arrives: small chunks, read ahead of the object store by a few blocks only."""
    core = make_core(local_objects)
    head, chunk, count = media["mp4"][:4096].ljust(65536, b"\0"), bytes(65536), 1024  # 64 MiB

    async def body() -> AsyncIterator[bytes]:
        yield head
        for _ in range(count - 1):
            yield chunk

    tracemalloc.start()
    try:
        result = await core.store(world.scope(), world.case_id, filename="stream.mp4", stream=body())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.size == count * 65536
    assert peak < 16 * MiB, f"peak traced memory {peak / MiB:.1f} MiB"


async def test_filenames_are_metadata_and_never_reach_the_file_system(
    tmp_path: Path, world: World, local_objects: ObjectStore, make_core: CoreFactory, media: Media
) -> None:
    core = make_core(local_objects)
    result = await core.store(
        world.scope(), world.case_id, filename="../../etc/passwd", stream=chunks(media["jpeg"])
    )
    assert result.kind == "image"
    assert result.filename == "passwd"
    row = MediaRepository(world.db).get(world.scope(), result.media_id)
    assert row is not None
    assert row.filename == "passwd"
    assert row.object_key == f"cases/{world.case_id}/media/{result.media_id}/original"
    assert stored_keys(local_objects, world.case_id) == [row.object_key]
    assert written_outside_the_store(tmp_path) == []


def written_outside_the_store(tmp_path: Path) -> list[Path]:
    """Files named like the upload anywhere under the test's folder, and whether /etc/passwd became it."""
    found = list(tmp_path.rglob("*passwd*")) + list(tmp_path.rglob("etc"))
    if Path("/etc/passwd").read_bytes().startswith(b"\xff\xd8"):
        found.append(Path("/etc/passwd"))
    return found


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\victim\\Desktop\\clip.mp4", "clip.mp4"),
        ("evil\u202egpj.exe", "evilgpj.exe"),  # a right-to-left override hiding the real extension
        ("bell\x07\x00\nname.wav", "bellname.wav"),
        ("cafe\u0301.jpg", "caf\u00e9.jpg"),  # NFC
        ("..", None),
        ("dir/", None),
        ("   ", None),
        (None, None),
        ("x" * 300 + ".mp4", "x" * 255),
    ],
)
def test_clean_filename(raw: str | None, clean: str | None) -> None:
    assert clean_filename(raw) == clean


async def test_with_the_bus_down_the_upload_stands_audited_and_its_event_waits_in_the_outbox(
    world: World, local_objects: ObjectStore, make_core: CoreFactory, recorder: Recorder, media: Media
) -> None:
    async def unreachable(event: CloudEvent) -> bool:
        raise ConnectionError("bus down")

    data = media["mp3"]
    stored = await make_core(local_objects, publish=unreachable).store(
        world.scope(), world.case_id, filename="a.mp3", stream=chunks(data)
    )
    assert stored.duplicate_of is None
    assert [row.id for row in MediaRepository(world.db).list(world.scope(), world.case_id)] == [
        stored.media_id
    ]
    [record] = AuditLog(world.db).query(world.tenant_id, action="media.store")
    assert (record["actor"], record["object"]) == (world.owner_id, f"media/{stored.media_id}")
    assert record["detail"]["sha256"] == stored.sha256
    # published once the bus is back (the relay's sweep)
    [pending] = [p for p in Outbox(world.db).pending() if p.event.type == MediaUploaded.TYPE]
    assert pending.event.id == derived_event_id(stored.media_id, MediaUploaded.TYPE)
    assert await recorder.of_type(MediaUploaded.TYPE) == []


async def test_a_file_whose_row_cannot_commit_leaves_no_event_no_record_and_no_object(
    world: World, local_objects: ObjectStore, make_core: CoreFactory, recorder: Recorder, media: Media
) -> None:
    core = make_core(local_objects)

    def broken_record(_session: object) -> None:
        raise RuntimeError("the audit log is full")

    core._stored_record = lambda *_args: broken_record  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="audit log is full"):
        await core.store(world.scope(), world.case_id, filename="a.mp3", stream=chunks(media["mp3"]))
    assert stored_keys(local_objects, world.case_id) == []
    assert MediaRepository(world.db).list(world.scope(), world.case_id) == []
    assert [p for p in Outbox(world.db).pending() if p.event.type == MediaUploaded.TYPE] == []
    assert await recorder.of_type(MediaUploaded.TYPE) == []


# --- bulk ---------------------------------------------------------------------------------------


async def test_bulk_creates_a_parent_and_one_child_job_per_stored_file(
    world: World,
    local_objects: ObjectStore,
    config: ConfigService,
    make_core: CoreFactory,
    recorder: Recorder,
    media: Media,
) -> None:
    core = make_core(local_objects)
    files: list[tuple[str | None, Chunks]] = [
        ("clip.mp4", chunks(media["mp4"])),
        ("notes.pdf", chunks(media["pdf"])),
        ("photo.png", achunks(media["png"])),
    ]
    outcome = await core.bulk(world.scope(), world.case_id, files)

    assert [item.filename for item in outcome.results] == ["clip.mp4", "notes.pdf", "photo.png"]
    stored = [item.result for item in outcome.results if item.result is not None]
    assert len(stored) == 2
    refused = outcome.results[1]
    assert refused.result is None
    assert isinstance(refused.error, UnsupportedMedia)
    assert refused.error.reason == "a PDF document"

    repo = JobRepository(world.db)
    parent = repo.get(world.scope(), outcome.parent_job_id)
    assert parent is not None
    steps = [step.value for step in config.effective(world.tenant_id).analysis.steps]
    assert (parent.phase, parent.parent_job_id, parent.media_id, parent.steps) == (
        "Queued", None, None, steps,
    )  # fmt: skip
    children = repo.children(world.scope(), outcome.parent_job_id)
    assert sorted(child.media_id for child in children) == sorted(r.media_id for r in stored)
    assert sorted(child.id for child in children) == sorted(str(r.job_id) for r in stored)
    assert job_count(world) == 3

    created = await recorder.of_type(JobCreated.TYPE)
    assert (created[0].data or {})["job_id"] == outcome.parent_job_id
    assert sorted((e.data or {})["job_id"] for e in created[1:]) == sorted(c.id for c in children)
    assert all((e.data or {})["parent_job_id"] == outcome.parent_job_id for e in created[1:])
    # a job's files wait in the queue: the scheduler, not ingest, sends their media.uploaded
    assert await recorder.of_type(MediaUploaded.TYPE) == []


async def test_bulk_of_only_refused_files_fails_its_parent_job(
    world: World, local_objects: ObjectStore, make_core: CoreFactory, media: Media
) -> None:
    outcome = await make_core(local_objects).bulk(
        world.scope(), world.case_id, [("a.html", chunks(media["html"])), ("b.zip", chunks(media["zip"]))]
    )
    assert [str(item.error and item.error.args[0]).split(";")[0] for item in outcome.results] == [
        "unsupported media: an HTML page",
        "unsupported media: a ZIP archive (or a document or package stored as one)",
    ]
    parent = JobRepository(world.db).get(world.scope(), outcome.parent_job_id)
    assert parent is not None
    assert (parent.phase, parent.reason) == ("Failed", "every file was refused")


async def test_bulk_with_too_many_files_is_refused_and_leaves_nothing(
    world: World,
    local_objects: ObjectStore,
    config: ConfigService,
    make_core: CoreFactory,
    recorder: Recorder,
    media: Media,
) -> None:
    set_limits(config, world, max_files_per_request=2)
    core = make_core(local_objects)
    names = ("mp4", "png", "wav")
    with pytest.raises(TooManyFiles):
        await core.bulk(world.scope(), world.case_id, [(f"f.{n}", chunks(media[n])) for n in names])
    assert job_count(world) == 0

    async def streamed() -> AsyncIterator[tuple[str | None, AsyncIterator[bytes]]]:
        for name in names:
            yield f"f.{name}", achunks(media[name])

    with pytest.raises(TooManyFiles):  # known only when the third file begins: the first two are undone
        await core.bulk(world.scope(), world.case_id, streamed())
    assert job_count(world) == 0
    assert stored_keys(local_objects, world.case_id) == []
    assert MediaRepository(world.db).list(world.scope(), world.case_id) == []
    assert await recorder.settled() == []


# --- resumable sessions -------------------------------------------------------------------------


async def test_a_resumable_upload_survives_a_dropped_connection_and_a_new_replica(
    request: pytest.FixtureRequest,
    world: World,
    open_objects: Callable[[], ObjectStore],
    make_core: CoreFactory,
    recorder: Recorder,
    media: Media,
    documents_path: Path,
) -> None:
    data = payload(media, 20 * MiB, seed=2)
    scope = world.scope()
    core = make_core(open_objects())
    upload_id = await core.begin(scope, world.case_id, filename="long.mp4", length=len(data))
    assert await core.offset(scope, upload_id) == 0

    half = await core.append(scope, upload_id, 0, chunks(data[: 8 * MiB]), size=8 * MiB)
    assert (half.offset, half.length, half.result) == (8 * MiB, 20 * MiB, None)

    with pytest.raises(ConnectionResetError):  # the connection drops in the middle of a body: kept
        await core.append(scope, upload_id, 8 * MiB, broken(data[8 * MiB : 16 * MiB], 2 * MiB), size=8 * MiB)
    assert await core.offset(scope, upload_id) == 10 * MiB
    with pytest.raises(IncompleteBody) as short:  # the body just ends early: what came is kept too
        await core.append(scope, upload_id, 10 * MiB, chunks(data[10 * MiB : 11 * MiB]), size=6 * MiB)
    assert short.value.offset == 11 * MiB
    assert await core.offset(scope, upload_id) == 11 * MiB

    # another replica: its own document-store and object-store clients, nothing shared in memory
    replica_documents = DocumentStore.from_uri(f"litemongo://{documents_path}", "aima")
    try:
        replica_objects = open_objects()
        replica = make_core(replica_objects, documents_store=replica_documents)
        assert await replica.offset(scope, upload_id) == 11 * MiB
        with pytest.raises(OffsetMismatch) as mismatch:
            await replica.append(scope, upload_id, 0, chunks(data[: 8 * MiB]), size=8 * MiB)
        assert mismatch.value.current == 11 * MiB
        more = await replica.append(scope, upload_id, 11 * MiB, achunks(data[11 * MiB : 16 * MiB]))
        assert (more.offset, more.result) == (16 * MiB, None)
        done = await replica.append(scope, upload_id, 16 * MiB, chunks(data[16 * MiB :]), size=4 * MiB)
        assert done.result is not None
        assert (done.offset, done.result.sha256, done.result.size) == (20 * MiB, sha256(data), len(data))
        assert done.result.filename == "long.mp4"
        key = object_key(world.case_id, done.result.media_id)
        assert sha256(read(replica_objects, key)) == sha256(data)
        status = await replica.status(scope, upload_id)  # the session keeps its result
        assert (status.offset, status.result) == (20 * MiB, done.result)
        await replica.abort(scope, upload_id)  # forgets the session, keeps the file
        assert replica_documents.count(UPLOADS, {"_id": upload_id}) == 0
        assert sha256(read(replica_objects, key)) == sha256(data)
    finally:
        replica_documents.close()
    [event] = await recorder.of_type(MediaUploaded.TYPE)
    assert (event.data or {})["media_id"] == done.result.media_id
    assert leftovers(request, replica_objects) == []


async def test_resumable_bodies_are_checked(
    request: pytest.FixtureRequest,
    world: World,
    objects: ObjectStore,
    make_core: CoreFactory,
    recorder: Recorder,
    media: Media,
) -> None:
    data = payload(media, 12 * MiB, seed=3)
    scope = world.scope()
    core = make_core(objects)
    upload_id = await core.begin(scope, world.case_id, filename=None, length=len(data))
    with pytest.raises(TooLarge):  # past the session's length, refused unread
        await core.append(scope, upload_id, 0, never_read_past(b""), size=len(data) + 1)
    assert await core.offset(scope, upload_id) == 0
    with pytest.raises(UploadNotFound):  # another case does not see the session
        await core.offset(world.scope(world.other_case_id), upload_id)
    wrong = Checksum("sha256", hashlib.sha256(b"something else").digest())
    with pytest.raises(ChecksumMismatch):  # nothing of a body whose checksum differs is kept
        await core.append(scope, upload_id, 0, chunks(data[: 9 * MiB]), checksum=wrong)
    assert await core.offset(scope, upload_id) == 0
    overflowing = await core.begin(scope, world.case_id, filename=None, length=len(data))
    with pytest.raises(TooLarge):  # found out while streaming an undeclared body: what was committed
        await core.append(scope, overflowing, 0, chunks(data + b"x"))  # part by part before stays
    assert await core.offset(scope, overflowing) == PART_BYTES
    await core.abort(scope, overflowing)

    await core.append(scope, upload_id, 0, chunks(data[:MiB]))  # any size: kept as a tail segment
    assert await core.offset(scope, upload_id) == MiB
    right = Checksum("md5", hashlib.md5(data[MiB : 6 * MiB], usedforsecurity=False).digest())
    await core.append(scope, upload_id, MiB, chunks(data[MiB : 6 * MiB]), checksum=right)
    assert await core.offset(scope, upload_id) == 6 * MiB
    await core.abort(scope, upload_id)
    with pytest.raises(UploadNotFound):
        await core.offset(scope, upload_id)
    assert stored_keys(objects, world.case_id) == []
    assert leftovers(request, objects) == []

    pdf_session = await core.begin(scope, world.case_id, filename="x.pdf", length=6 * MiB)
    pdf = media["pdf"].ljust(6 * MiB, b"\0")
    with pytest.raises(UnsupportedMedia):
        await core.append(scope, pdf_session, 0, chunks(pdf))
    with pytest.raises(UploadNotFound):  # a refused first part ends the session
        await core.offset(scope, pdf_session)
    tiny = await core.begin(scope, world.case_id, filename="x.pdf", length=6 * MiB)
    await core.append(scope, tiny, 0, chunks(pdf[:100]))  # too little to tell: kept, not judged yet
    with pytest.raises(UnsupportedMedia):  # judged once the first 4 KiB are there
        await core.append(scope, tiny, 100, chunks(pdf[100:5000]))
    with pytest.raises(UploadNotFound):
        await core.offset(scope, tiny)
    with pytest.raises(UnsupportedMedia):
        await core.begin(scope, world.case_id, filename="empty", length=0)
    assert stored_keys(objects, world.case_id) == []
    assert leftovers(request, objects) == []
    assert await recorder.settled() == []


@pytest.mark.parametrize(
    "sizes",
    [[1000] * 40 + [MiB], [300 * 1024], [3 * MiB + 17]],
    ids=["tiny-then-1MiB", "300KiB", "3MiB"],
)
async def test_bodies_of_any_size_make_parts_the_object_store_takes(
    request: pytest.FixtureRequest,
    world: World,
    objects: ObjectStore,
    make_core: CoreFactory,
    media: Media,
    sizes: list[int],
) -> None:
    """tus clients send bodies of any size; on S3 every part but the last must reach 5 MiB, so small
    bodies wait as tail segments until a part is full, and memory stays within about one part."""
    data = payload(media, 13 * MiB + 5, seed=len(sizes))
    scope = world.scope()
    core = make_core(objects)
    upload_id = await core.begin(scope, world.case_id, filename="pieces.mp4", length=len(data))
    offset = 0
    tracemalloc.start()
    try:
        for turn in itertools.count():
            if offset == len(data):
                break
            piece = data[offset : offset + sizes[min(turn, len(sizes) - 1)]]
            appended = await core.append(scope, upload_id, offset, chunks(piece, 64 * 1024), size=len(piece))
            offset = appended.offset
            assert offset == min(len(data), offset)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert appended.result is not None
    assert (appended.result.sha256, appended.result.size) == (sha256(data), len(data))
    assert sha256(read(objects, object_key(world.case_id, appended.result.media_id))) == sha256(data)
    assert peak < 40 * MiB, f"peak traced memory {peak / MiB:.1f} MiB"
    assert stored_keys(objects, world.case_id) == [object_key(world.case_id, appended.result.media_id)]
    assert leftovers(request, objects) == []


async def test_a_resumable_duplicate_is_dropped(
    world: World, local_objects: ObjectStore, make_core: CoreFactory, recorder: Recorder, media: Media
) -> None:
    core = make_core(local_objects)
    data = media["flac"]
    first = await core.store(world.scope(), world.case_id, filename="a.flac", stream=chunks(data))
    upload_id = await core.begin(world.scope(), world.case_id, filename="b.flac", length=len(data))
    done = await core.append(world.scope(), upload_id, 0, chunks(data), size=len(data))
    assert done.result is not None
    assert done.result.duplicate_of == first.media_id
    assert stored_keys(local_objects, world.case_id) == [object_key(world.case_id, first.media_id)]
    assert len(await recorder.of_type(MediaUploaded.TYPE)) == 1


# --- the job repository -------------------------------------------------------------------------


def test_jobs_stay_in_their_scope_and_validate_their_values(world: World) -> None:
    repo = JobRepository(world.db)
    options = JobOptions(priority=Priority.HIGH)
    parent = repo.create_parent(world.scope(), world.case_id, ["probe", "transcribe"], options)
    assert (parent.phase, parent.priority, parent.steps) == ("Queued", "high", ["probe", "transcribe"])
    other = world.scope(world.other_case_id)
    assert repo.get(other, parent.id) is None
    with pytest.raises(JobNotFound):
        repo.move(other, parent.id, JobPhase.ESTIMATING)
    assert repo.children(other, parent.id) == []
    with pytest.raises(JobNotFound):  # a parent of another case
        repo.create_child(other, world.other_case_id, parent.id, "m", ["probe"])
    with pytest.raises(ValueError, match="not_a_step"):
        repo.create_parent(world.scope(), world.case_id, ["not_a_step"])
    with pytest.raises(InvalidTransition, match="it cannot become Running"):
        repo.move(world.scope(), parent.id, JobPhase.RUNNING)
    assert repo.move(world.scope(), parent.id, JobPhase.ESTIMATING).phase == "Estimating"
    row = repo.get(world.scope(), parent.id)
    assert row is not None
    assert row.phase == "Estimating"
    assert repo.delete(world.scope(), parent.id) is True
    assert repo.get(world.scope(), parent.id) is None


async def test_a_session_completed_while_the_bus_is_down_is_stored_and_announced_later(
    world: World, objects: ObjectStore, make_core: CoreFactory, recorder: Recorder, media: Media
) -> None:
    async def unreachable(event: CloudEvent) -> bool:
        raise ConnectionError("bus down")

    data = media["wav"]
    scope = world.scope()
    failing = make_core(objects, publish=unreachable)
    upload_id = await failing.begin(scope, world.case_id, filename="a.wav", length=len(data))
    done = await failing.append(scope, upload_id, 0, chunks(data), size=len(data))
    assert done.result is not None
    assert done.result.sha256 == sha256(data)
    assert [row.id for row in MediaRepository(world.db).list(scope, world.case_id)] == [done.result.media_id]
    waiting = [p.event.id for p in Outbox(world.db).pending() if p.event.type == MediaUploaded.TYPE]
    assert waiting == [derived_event_id(done.result.media_id, MediaUploaded.TYPE)]
    assert await recorder.of_type(MediaUploaded.TYPE) == []
    core = make_core(objects)
    again = await core.append(scope, upload_id, len(data), iter(()), size=0)  # reports, stores nothing anew
    assert again.result == done.result
    assert len(MediaRepository(world.db).list(scope, world.case_id)) == 1


async def test_a_session_begun_before_tus_is_gone_not_an_error(
    world: World, local_objects: ObjectStore, make_core: CoreFactory, documents: DocumentStore
) -> None:
    """A session document of the earlier protocol (no version) cannot go on: 404, and it is removed."""
    core = make_core(local_objects)
    media_id = "6f1c1e4e-0000-4000-8000-000000000001"
    key = object_key(world.case_id, media_id)
    multipart_id = local_objects.begin_upload(key, content_type="video/mp4")
    old = {
        "_id": "0" * 32,
        "tenant_id": world.tenant_id,
        "case_id": world.case_id,
        "media_id": media_id,
        "filename": None,
        "length": 10,
        "object_key": key,
        "multipart_id": multipart_id,
        "parts": {},
    }
    documents.insert_one(UPLOADS, old)
    with pytest.raises(UploadNotFound, match="earlier version"):
        await core.status(world.scope(), old["_id"])
    assert documents.count(UPLOADS, {"_id": old["_id"]}) == 0
    with pytest.raises(ObjectNotFound):
        local_objects.list_parts(key, multipart_id)
