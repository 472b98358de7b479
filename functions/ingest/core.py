"""The ingest function's core: files into a case, streamed to the object store in constant memory.

Every upload is typed from its first bytes (`functions.ingest.sniff`) before anything is stored,
streamed in blocks of `BLOCK` bytes while the object store hashes it, held to the tenant's
``limits`` (`aima.config.schema.Limits`), stored under ``cases/{case_id}/media/{media_id}/original``
and registered as a media row. A file whose SHA-256 the case already holds is not kept: the result
names the existing media (``duplicate_of``) and nothing is emitted. Every new file emits
``io.aima.media.uploaded.v1`` with an id derived from its media id; if publishing fails, the file
is removed again so that a retry is not mistaken for a duplicate.

Three ways in:

* `IngestCore.store`: one file from one stream;
* `IngestCore.bulk`: several files of one request: one parent job, one child job per stored file,
  a per-file error for a refused file. Its events are published together once every file is in,
  so a request refused for having too many files leaves nothing behind;
* resumable sessions (`begin`, `offset`, `append`, `abort`), tus-like: each append is one part of
  an object-store multipart upload (at least `MIN_PART_SIZE` bytes unless it completes the file).
  The session lives in the document store (collection `UPLOADS`) and the parts in the object store,
  which is the source of truth for the offset, so any replica can continue a session. A body that
  is cut off leaves no part behind: the offset stays at the last complete part.

Filenames are metadata only (`clean_filename`); they never appear in an object key.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import logging
import queue
import re
import unicodedata
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sized
from dataclasses import dataclass, replace
from typing import Any, BinaryIO, cast

from aima.access.scope import Scope
from aima.config.schema import Limits, RuntimeConfig
from aima.config.service import ConfigService
from aima.storage.cases import CaseRepository
from aima.storage.documents import DocumentStore
from aima.storage.jobs import JobRepository
from aima.storage.media import MediaRepository
from aima.storage.objects import MIN_PART_SIZE, ObjectInfo, ObjectNotFound, ObjectStore, PartInfo
from aima.storage.schema import utcnow
from events.catalogue import JobCreated, MediaUploaded, make_event
from events.envelope import CloudEvent, derived_event_id
from functions.ingest.sniff import HEAD_BYTES, Sniffed, UnsupportedMedia, sniff

log = logging.getLogger(__name__)

SOURCE = "/aima/functions/ingest"
UPLOADS = "uploads"
BLOCK = 1 << 20
"""Bytes of an async body handed to the worker thread at a time (fewer hand-offs, larger writes)."""
PREFETCH = 4
"""Blocks an async body is read ahead of the object store."""
MAX_PART_BYTES = 64 * 1024 * 1024
"""The largest body one append may carry (an S3 part is held in memory while it is sent)."""
MAX_FILENAME = 255

Chunks = Iterable[bytes] | AsyncIterable[bytes]
Files = Iterable[tuple[str | None, Chunks]] | AsyncIterable[tuple[str | None, Chunks]]
Publish = Callable[[CloudEvent], Awaitable[object]]


class IngestError(Exception):
    """Base of the errors an upload is refused with (besides `UnsupportedMedia`)."""


class CaseNotFound(IngestError, LookupError):
    """The case does not exist within the caller's scope."""


class UploadNotFound(IngestError, LookupError):
    """No resumable session with that id in the caller's scope."""


class TooLarge(IngestError):
    """More bytes than allowed: the tenant's upload limit, a session's length or one part's maximum."""

    def __init__(self, message: str, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class TooManyFiles(IngestError):
    """A bulk request with more files than ``limits.max_files_per_request``."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"at most {limit} files may be uploaded in one request")
        self.limit = limit


class OffsetMismatch(IngestError):
    """An append at an offset other than the session's current one (``current``), or racing another."""

    def __init__(self, offset: int, current: int, message: str | None = None) -> None:
        super().__init__(
            message or f"the upload is at offset {current}, not {offset}; continue from {current}"
        )
        self.current = current


class PartRejected(IngestError):
    """An append body that cannot be a part (too small for a part that is not the last)."""


class IncompleteBody(IngestError):
    """A body ended before its declared size: nothing of it was kept."""


@dataclass(frozen=True)
class IngestResult:
    """A stored file, or the existing one it duplicates (``duplicate_of``, then ``job_id`` is None)."""

    media_id: str
    sha256: str
    size: int
    kind: str | None
    content_type: str
    duplicate_of: str | None
    job_id: str | None
    filename: str | None = None


@dataclass(frozen=True)
class BulkItem:
    """One file of a bulk request: its result, or the error it was refused with."""

    filename: str | None
    result: IngestResult | None
    error: Exception | None


@dataclass(frozen=True)
class BulkResult:
    """A bulk request: its parent job and one item per file, in request order."""

    parent_job_id: str
    results: list[BulkItem]


@dataclass(frozen=True)
class UploadStatus:
    """Where a resumable session stands."""

    upload_id: str
    case_id: str
    offset: int
    length: int
    filename: str | None


@dataclass(frozen=True)
class Appended:
    """The offset after an append, and the stored file once the session completed."""

    offset: int
    length: int
    result: IngestResult | None


def object_key(case_id: str, media_id: str) -> str:
    """Where a file's original is stored."""
    return f"cases/{case_id}/media/{media_id}/original"


_SEPARATORS = re.compile(r"[/\\]")


def clean_filename(raw: str | None) -> str | None:
    """The name an upload is recorded under: NFC, no control or format characters, the last path
    segment only, at most `MAX_FILENAME` characters; None if nothing is left (``../`` and the like)."""
    if raw is None:
        return None
    name = unicodedata.normalize("NFC", raw)
    name = "".join(char for char in name if unicodedata.category(char) not in ("Cc", "Cf"))
    name = _SEPARATORS.split(name)[-1].strip()
    if name in ("", ".", ".."):
        return None
    return name[:MAX_FILENAME]


class IngestCore:
    """Uploads into a case (see module docstring). Blocking store calls run in worker threads."""

    def __init__(
        self,
        objects: ObjectStore,
        media: MediaRepository,
        jobs: JobRepository,
        config_service: ConfigService,
        *,
        bus_publish: Publish,
        documents: DocumentStore,
        cases: CaseRepository,
    ) -> None:
        self._objects = objects
        self._media = media
        self._jobs = jobs
        self._config_service = config_service
        self._publish = bus_publish
        self._documents = documents
        self._cases = cases

    # --- one file ---------------------------------------------------------------------------

    async def store(
        self,
        scope: Scope,
        case_id: str,
        *,
        filename: str | None,
        stream: Chunks,
        declared_size: int | None = None,
        job_id: str | None = None,
    ) -> IngestResult:
        """Store one file read from ``stream``; ``declared_size`` (e.g. Content-Length) is checked
        against the limit before reading and against the bytes received at the end.

        Raises `UnsupportedMedia` before storing anything, `TooLarge`, `IncompleteBody` or
        `CaseNotFound`; nothing stays stored after any of them.
        """
        limits = await self._limits(scope)
        name = clean_filename(filename)
        if declared_size is not None and declared_size > limits.max_upload_bytes:
            raise _too_large(limits)
        await self._require_case(scope, case_id)
        result = await self._put(scope, case_id, name, _Source(stream), limits, declared_size)
        if result.duplicate_of is not None:
            return result
        result = replace(result, job_id=job_id)
        await self._publish_or_undo(scope, case_id, [self._uploaded(scope, case_id, result)], [result])
        return result

    # --- several files ----------------------------------------------------------------------

    async def bulk(self, scope: Scope, case_id: str, files: Files) -> BulkResult:
        """Store several files under one parent job; each stored file gets a child job.

        A file refused for its content or size becomes an item with its error; the others go on.
        Raises `TooManyFiles` (a sized ``files`` before anything happens, a streamed one as soon as
        the extra file begins, undoing what the request stored) and `CaseNotFound`.
        """
        limits = await self._limits(scope)
        if isinstance(files, Sized) and len(files) > limits.max_files_per_request:
            raise TooManyFiles(limits.max_files_per_request)
        await self._require_case(scope, case_id)
        steps = [step.value for step in (await self._config(scope)).analysis.steps]
        parent = await asyncio.to_thread(self._jobs.create_parent, scope, case_id, steps)
        events = [self._job_created(scope, parent)]
        items: list[BulkItem] = []
        stored: list[IngestResult] = []
        try:
            async for filename, stream in _aiter(files):
                if len(items) == limits.max_files_per_request:
                    raise TooManyFiles(limits.max_files_per_request)
                name = clean_filename(filename)
                try:
                    result = await self._put(scope, case_id, name, _Source(stream), limits, None)
                except (UnsupportedMedia, TooLarge) as exc:
                    items.append(BulkItem(name, None, exc))
                    continue
                if result.duplicate_of is None:
                    stored.append(result)
                    child = await asyncio.to_thread(
                        self._jobs.create_child, scope, case_id, parent["id"], result.media_id, steps
                    )
                    result = replace(result, job_id=child["id"])
                    events += [self._job_created(scope, child), self._uploaded(scope, case_id, result)]
                items.append(BulkItem(name, result, None))
            if not stored:  # no child will ever finish this job
                state = "failed" if any(item.error for item in items) else "completed"
                await asyncio.to_thread(self._jobs.set_state, scope, parent["id"], state)
            for event in events:
                await self._publish(event)
        except BaseException:
            await asyncio.shield(self._undo(scope, case_id, stored, parent_job_id=parent["id"]))
            raise
        return BulkResult(parent["id"], items)

    # --- resumable sessions -----------------------------------------------------------------

    async def begin(self, scope: Scope, case_id: str, *, filename: str | None, length: int) -> str:
        """Open a session for a file of ``length`` bytes; returns its upload id."""
        if length < 0:
            raise ValueError("length must be >= 0")
        if length == 0:
            raise UnsupportedMedia("empty")
        limits = await self._limits(scope)
        if length > limits.max_upload_bytes:
            raise _too_large(limits)
        await self._require_case(scope, case_id)
        upload_id = uuid.uuid4().hex
        media_id = str(uuid.uuid4())
        doc: dict[str, Any] = {
            "_id": upload_id,
            "tenant_id": scope.tenant_id,
            "case_id": case_id,
            "media_id": media_id,
            "filename": clean_filename(filename),
            "length": length,
            "object_key": object_key(case_id, media_id),
            "multipart_id": None,
            "content_type": None,
            "kind": None,
            "format": None,
            "parts": {},
            "actor": scope.actor,
            "created_at": utcnow(),
        }
        await asyncio.to_thread(self._documents.insert_one, UPLOADS, doc)
        return upload_id

    async def offset(self, scope: Scope, upload_id: str) -> int:
        """Bytes received so far: the sum of the parts the object store holds."""
        return (await self.status(scope, upload_id)).offset

    async def status(self, scope: Scope, upload_id: str) -> UploadStatus:
        """Offset, length and filename of a session; raises `UploadNotFound`."""
        doc = await self._session(scope, upload_id)
        offset, _ = await self._progress(doc)
        return UploadStatus(upload_id, doc["case_id"], offset, int(doc["length"]), doc["filename"])

    async def append(
        self, scope: Scope, upload_id: str, offset: int, stream: Chunks, *, size: int | None = None
    ) -> Appended:
        """Add ``stream`` as the next part at ``offset`` (``size``: its declared length, if known).

        Raises `OffsetMismatch` unless ``offset`` is the current one, `PartRejected` for a body
        below `MIN_PART_SIZE` that does not complete the file, `TooLarge` past the session's length
        or above `MAX_PART_BYTES`, `IncompleteBody` for a body cut off before ``size``, and
        `UnsupportedMedia` (ending the session) if the first part is no accepted format. When the
        last byte arrives the file is assembled and stored as by `store`; an empty append at the
        full length finishes a session whose completion failed before.
        """
        doc = await self._session(scope, upload_id)
        length = int(doc["length"])
        current, parts = await self._progress(doc)
        if offset != current:
            raise OffsetMismatch(offset, current)
        if parts is None or current == length:
            if size:
                raise TooLarge("every byte of the upload has been received", length)
            return Appended(length, length, await self._finish(scope, doc, parts))
        if size == 0:
            return Appended(current, length, None)
        if size is not None:
            _check_part(current, size, length)
        source = _Source(stream)
        if not parts:
            doc = await self._first_part(scope, doc, source)
        # upload_part only calls read(); the reader raises where the part must not be kept
        reader = cast(BinaryIO, _PartReader(source.blocks(), offset=current, length=length, declared=size))
        try:
            part = await asyncio.to_thread(
                self._objects.upload_part, doc["object_key"], doc["multipart_id"], len(parts) + 1, reader
            )
        finally:
            await source.settle()
        await asyncio.to_thread(
            self._documents.update_one,
            UPLOADS,
            _ids(doc),
            {"$set": {f"parts.{part.part_number}": part.size}},
        )
        current += part.size
        if current < length:
            return Appended(current, length, None)
        return Appended(current, length, await self._finish(scope, doc, [*parts, part]))

    async def abort(self, scope: Scope, upload_id: str) -> None:
        """End a session and drop what it received; raises `UploadNotFound`."""
        doc = await self._session(scope, upload_id)

        def drop() -> None:
            if doc["multipart_id"] is not None:
                self._objects.abort_upload(doc["object_key"], doc["multipart_id"])
            if self._media.get(scope, doc["media_id"]) is None:  # assembled but never registered
                self._objects.delete(doc["object_key"])
            self._documents.delete_many(UPLOADS, _ids(doc))

        await asyncio.to_thread(drop)

    # --- internals: storing -----------------------------------------------------------------

    async def _put(
        self,
        scope: Scope,
        case_id: str,
        filename: str | None,
        source: _Source,
        limits: Limits,
        declared: int | None,
    ) -> IngestResult:
        """Sniff, stream into a new object, register it (or find the duplicate and drop the object)."""
        sniffed = sniff(await source.head(HEAD_BYTES))
        media_id = str(uuid.uuid4())
        key = object_key(case_id, media_id)
        chunks = _limited(source.blocks(), limits, declared)
        try:
            try:
                info = await asyncio.to_thread(
                    self._objects.put, key, chunks, content_type=sniffed.content_type
                )
            finally:
                await source.settle()
            return await self._register(scope, case_id, media_id, key, info, sniffed, filename)
        except BaseException:
            await asyncio.shield(asyncio.to_thread(self._objects.delete, key))
            raise

    async def _register(
        self,
        scope: Scope,
        case_id: str,
        media_id: str,
        key: str,
        info: ObjectInfo,
        sniffed: Sniffed,
        filename: str | None,
    ) -> IngestResult:
        """The media row for a stored object; for a duplicate, the existing row (the object is dropped)."""
        if info.sha256 is None:
            raise RuntimeError(f"the object store returned no sha256 for {key}")
        row, created = await asyncio.to_thread(
            self._media.add,
            scope,
            case_id=case_id,
            media_id=media_id,
            sha256=info.sha256,
            size=info.size,
            content_type=sniffed.content_type,
            kind=sniffed.kind,
            filename=filename,
            object_key=key,
        )
        if not created:
            await asyncio.to_thread(self._objects.delete, key)
            log.info("duplicate upload", extra={"case_id": case_id, "duplicate_of": row["id"]})
            return IngestResult(
                media_id=row["id"],
                sha256=row["sha256"],
                size=row["size"],
                kind=row["kind"],
                content_type=row["content_type"],
                duplicate_of=row["id"],
                job_id=None,
                filename=row["filename"],
            )
        log.info("media stored", extra={"case_id": case_id, "media_id": media_id, "size": info.size})
        return IngestResult(
            media_id=media_id,
            sha256=info.sha256,
            size=info.size,
            kind=sniffed.kind,
            content_type=sniffed.content_type,
            duplicate_of=None,
            job_id=None,
            filename=filename,
        )

    async def _publish_or_undo(
        self, scope: Scope, case_id: str, events: list[CloudEvent], stored: list[IngestResult]
    ) -> None:
        """Publish ``events``; if that fails, remove the ``stored`` files so a retry stores them anew."""
        try:
            for event in events:
                await self._publish(event)
        except BaseException:
            await asyncio.shield(self._undo(scope, case_id, stored))
            raise

    async def _undo(
        self, scope: Scope, case_id: str, stored: list[IngestResult], *, parent_job_id: str | None = None
    ) -> None:
        """Remove the rows (child jobs cascade) and objects of ``stored``, and the parent job."""

        def undo() -> None:
            for result in stored:
                self._media.delete(scope, result.media_id)
                self._objects.delete(object_key(case_id, result.media_id))
            if parent_job_id is not None:
                self._jobs.delete(scope, parent_job_id)

        await asyncio.to_thread(undo)

    # --- internals: sessions ----------------------------------------------------------------

    async def _session(self, scope: Scope, upload_id: str) -> dict[str, Any]:
        query: dict[str, Any] = {"_id": upload_id, "tenant_id": scope.tenant_id}
        if scope.case_ids is not None:
            query["case_id"] = {"$in": sorted(scope.case_ids)}
        doc = await asyncio.to_thread(self._documents.find_one, UPLOADS, query)
        if doc is None:
            raise UploadNotFound(f"no upload {upload_id!r} in this case")
        return doc

    async def _progress(self, doc: dict[str, Any]) -> tuple[int, list[PartInfo] | None]:
        """(offset, parts); parts None when the parts were already assembled into the object."""
        if doc["multipart_id"] is None:
            return 0, []
        key = doc["object_key"]
        try:
            parts = await asyncio.to_thread(self._objects.list_parts, key, doc["multipart_id"])
        except ObjectNotFound:
            if await asyncio.to_thread(self._objects.exists, key):
                return int(doc["length"]), None
            await asyncio.to_thread(self._documents.delete_many, UPLOADS, _ids(doc))
            raise UploadNotFound(f"upload {doc['_id']} has expired") from None
        return sum(part.size for part in parts), parts

    async def _first_part(self, scope: Scope, doc: dict[str, Any], source: _Source) -> dict[str, Any]:
        """Sniff the first part (ending the session if refused) and open the multipart upload with the
        content type found; a replica that opened one meanwhile wins, and this append is refused."""
        try:
            sniffed = sniff(await source.head(HEAD_BYTES))
        except UnsupportedMedia:
            await self.abort(scope, doc["_id"])
            raise
        if doc["multipart_id"] is not None and doc["content_type"] == sniffed.content_type:
            return doc
        key = doc["object_key"]
        multipart_id = await asyncio.to_thread(
            self._objects.begin_upload, key, content_type=sniffed.content_type
        )
        values = {
            "multipart_id": multipart_id,
            "content_type": sniffed.content_type,
            "kind": sniffed.kind,
            "format": sniffed.format,
        }
        claim = {**_ids(doc), "multipart_id": doc["multipart_id"]}
        if not await asyncio.to_thread(self._documents.update_one, UPLOADS, claim, {"$set": values}):
            await asyncio.to_thread(self._objects.abort_upload, key, multipart_id)
            raise OffsetMismatch(
                0, 0, "another request began this upload at the same time; ask for its offset"
            )
        if doc["multipart_id"] is not None:
            await asyncio.to_thread(self._objects.abort_upload, key, doc["multipart_id"])
        return {**doc, **values}

    async def _finish(self, scope: Scope, doc: dict[str, Any], parts: list[PartInfo] | None) -> IngestResult:
        """Assemble the parts (unless done before), register the file, emit, close the session.

        If registering or publishing fails, the object and the session stay, so an empty append at
        the full length finishes again.
        """
        key = doc["object_key"]

        def assemble() -> ObjectInfo:
            if parts is not None:
                return self._objects.complete_upload(key, doc["multipart_id"])
            info = self._objects.stat(key)
            return info if info.sha256 is not None else replace(info, sha256=_sha256(self._objects, key))

        info = await asyncio.to_thread(assemble)
        sniffed = Sniffed(doc["kind"], doc["content_type"], doc["format"])
        case_id = doc["case_id"]
        result = await self._register(scope, case_id, doc["media_id"], key, info, sniffed, doc["filename"])
        if result.duplicate_of is None:
            try:
                await self._publish(self._uploaded(scope, case_id, result))
            except BaseException:
                await asyncio.shield(asyncio.to_thread(self._media.delete, scope, result.media_id))
                raise
        await asyncio.to_thread(self._documents.delete_many, UPLOADS, _ids(doc))
        return result

    # --- internals: configuration, cases, events --------------------------------------------

    async def _config(self, scope: Scope) -> RuntimeConfig:
        return await asyncio.to_thread(self._config_service.effective, scope.tenant_id)

    async def _limits(self, scope: Scope) -> Limits:
        return (await self._config(scope)).limits

    async def _require_case(self, scope: Scope, case_id: str) -> None:
        if await asyncio.to_thread(self._cases.get, scope, case_id) is None:
            raise CaseNotFound(f"case {case_id} not found")

    def _uploaded(self, scope: Scope, case_id: str, result: IngestResult) -> CloudEvent:
        data = MediaUploaded(
            tenant_id=scope.tenant_id,
            case_id=case_id,
            media_id=result.media_id,
            job_id=result.job_id,
            object_key=object_key(case_id, result.media_id),
            sha256=result.sha256,
            size=result.size,
            content_type=result.content_type,
            filename=result.filename,
        )
        event_id = derived_event_id(result.media_id, MediaUploaded.TYPE)
        return make_event(data, source=SOURCE, subject=result.media_id, event_id=event_id)

    def _job_created(self, scope: Scope, job: dict[str, Any]) -> CloudEvent:
        data = JobCreated(
            tenant_id=scope.tenant_id,
            case_id=job["case_id"],
            job_id=job["id"],
            parent_job_id=job["parent_job_id"],
            media_id=job["media_id"],
            steps=list(job["steps"]),
            priority=job["priority"],
        )
        event_id = derived_event_id(job["id"], JobCreated.TYPE)
        return make_event(data, source=SOURCE, subject=job["id"], event_id=event_id)


# --- streaming helpers -------------------------------------------------------------------------


class _Source:
    """One body, read first by the event loop (the head, for sniffing) and then by a worker thread
    (`blocks`, for the object store).

    An async body is read ahead on the loop by a producer task in blocks of about `BLOCK` bytes, at
    most `PREFETCH` blocks ahead of the thread, so receiving and writing overlap while memory stays
    constant. After the thread is done, `settle` stops the producer and waits
    for it, so the body's iterator is free again (a multipart reader skips the rest of the part).
    """

    def __init__(self, stream: Chunks) -> None:
        self._loop = asyncio.get_running_loop()
        self._async: AsyncIterator[bytes] | None = None
        self._sync: Iterator[bytes] | None = None
        if isinstance(stream, AsyncIterable):
            self._async = aiter(stream)
        else:
            self._sync = iter(stream)
        self._pending = b""
        self._queue: queue.SimpleQueue[bytes | BaseException | None] = queue.SimpleQueue()
        self._room = asyncio.Event()
        self._waiting = False  # the producer waits for room: the consumer must wake it
        self._stopped = False
        self._producer: concurrent.futures.Future[None] | None = None

    async def head(self, size: int) -> bytes:
        """The first ``size`` bytes (fewer if the body is shorter); they are still yielded by `blocks`."""
        chunks = [self._pending]
        have = len(self._pending)
        while have < size:
            chunk = await self._next()
            if chunk is None:
                break
            chunks.append(chunk)
            have += len(chunk)
        self._pending = b"".join(chunks)
        return self._pending[:size]

    def blocks(self) -> Iterator[bytes]:
        """The body from where nothing was consumed yet; iterate it in a worker thread, then `settle`."""
        if self._pending:
            pending, self._pending = self._pending, b""
            yield pending
        if self._sync is not None:
            while (chunk := _next_chunk(self._sync)) is not None:
                yield chunk
            return
        self._producer = asyncio.run_coroutine_threadsafe(self._produce(), self._loop)
        while (item := self._queue.get()) is not None:
            if self._waiting:
                self._loop.call_soon_threadsafe(self._room.set)
            if isinstance(item, BaseException):
                raise item
            yield item

    async def settle(self) -> None:
        """Stop reading ahead and wait until the producer has let go of the body."""
        self._stopped = True
        self._room.set()
        if self._producer is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wrap_future(self._producer)

    async def _produce(self) -> None:
        try:
            while not self._stopped:
                block = await self._next_block()
                if block is None or self._stopped:
                    break
                while self._queue.qsize() >= PREFETCH and not self._stopped:
                    self._room.clear()
                    self._waiting = True  # set before the check below: a get after it sees the flag
                    if self._queue.qsize() >= PREFETCH:
                        await self._room.wait()
                    self._waiting = False
                self._queue.put(block)
        except BaseException as exc:  # the consumer raises it (a client disconnect, say)
            self._queue.put(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self._queue.put(None)

    async def _next(self) -> bytes | None:
        if self._async is None:
            assert self._sync is not None
            return await asyncio.to_thread(_next_chunk, self._sync)
        async for chunk in self._async:
            if chunk:
                return bytes(chunk)
        return None

    async def _next_block(self) -> bytes | None:
        """About `BLOCK` bytes (few large writes beat many small ones), None at the end."""
        chunks: list[bytes] = []
        size = 0
        while size < BLOCK:
            chunk = await self._next()
            if chunk is None:
                break
            chunks.append(chunk)
            size += len(chunk)
        if len(chunks) == 1:
            return chunks[0]
        return b"".join(chunks) if chunks else None


def _next_chunk(chunks: Iterator[bytes]) -> bytes | None:
    for chunk in chunks:
        if chunk:
            return bytes(chunk)
    return None


def _limited(blocks: Iterator[bytes], limits: Limits, declared: int | None) -> Iterator[bytes]:
    """``blocks``, raising (so the object store keeps nothing) past the limit or short of ``declared``."""
    total = 0
    for block in blocks:
        total += len(block)
        if total > limits.max_upload_bytes:
            raise _too_large(limits)
        if declared is not None and total > declared:
            raise IncompleteBody(f"the body is longer than the declared {declared} bytes")
        yield block
    if declared is not None and total != declared:
        raise IncompleteBody(f"the body ended after {total} of the declared {declared} bytes")


class _PartReader:
    """An append body as a file for `ObjectStore.upload_part`. It raises, so that no part is kept, for
    a body running past the session's length or `MAX_PART_BYTES`, one cut off before its declared
    size, and one below `MIN_PART_SIZE` that does not complete the file."""

    def __init__(self, blocks: Iterator[bytes], *, offset: int, length: int, declared: int | None) -> None:
        self._blocks = blocks
        self._offset = offset
        self._length = length
        self._declared = declared
        self._buffer = b""
        self._total = 0

    def read(self, size: int = -1) -> bytes:
        if not self._buffer:
            block = next(self._blocks, None)
            if block is None:
                self._at_end()
                return b""
            self._total += len(block)
            _check_growing(self._offset, self._total, self._length)
            self._buffer = block
        if size < 0 or size >= len(self._buffer):
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def _at_end(self) -> None:
        if self._declared is not None and self._total != self._declared:
            raise IncompleteBody(f"the body ended after {self._total} of the declared {self._declared} bytes")
        _check_part(self._offset, self._total, self._length)


def _check_growing(offset: int, size: int, length: int) -> None:
    if offset + size > length:
        raise TooLarge(f"the body runs past the upload's length of {length} bytes", length)
    if size > MAX_PART_BYTES:
        raise TooLarge(f"one append may carry at most {MAX_PART_BYTES} bytes", MAX_PART_BYTES)


def _check_part(offset: int, size: int, length: int) -> None:
    """Refuse a part that is too large, or too small without completing the file."""
    _check_growing(offset, size, length)
    if size < MIN_PART_SIZE and offset + size != length:
        raise PartRejected(
            f"a part that does not complete the file must be at least {MIN_PART_SIZE} bytes; got {size}"
        )


def _too_large(limits: Limits) -> TooLarge:
    limit = limits.max_upload_bytes
    return TooLarge(f"files may be at most {limit} bytes", limit)


def _ids(doc: dict[str, Any]) -> dict[str, Any]:
    return {"_id": doc["_id"], "tenant_id": doc["tenant_id"], "case_id": doc["case_id"]}


def _sha256(objects: ObjectStore, key: str) -> str:
    digest = hashlib.sha256()
    for chunk in objects.get(key):
        digest.update(chunk)
    return digest.hexdigest()


async def _aiter(files: Files) -> AsyncIterator[tuple[str | None, Chunks]]:
    if isinstance(files, AsyncIterable):
        async for item in files:
            yield item
    else:
        for item in files:
            yield item
