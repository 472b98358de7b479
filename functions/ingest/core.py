"""The ingest function's core: files into a case, streamed to the object store in constant memory.

Every upload is typed from its first bytes (`functions.ingest.sniff`) before anything is stored,
streamed in blocks (`functions.runtime.streaming`) while the object store hashes it, held to the tenant's
``limits`` (`aima.config.schema.Limits`), stored under ``cases/{case_id}/media/{media_id}/original``
and registered as a media row. A file whose SHA-256 the case already holds is not kept: the result
names the existing media (``duplicate_of``) and nothing is emitted. Every new file's row commits
with its ``media.store`` audit record and ``io.aima.media.uploaded.v1`` (id derived from the media
id) in the outbox, in one transaction; the core then publishes the event at once, and if the bus is
down the outbox relay publishes it later. An upload never fails for the bus, and no event escapes
for an upload that was undone.

Three ways in:

* `IngestCore.store`: one file from one stream;
* `IngestCore.bulk`: several files of one request: one parent job, one child job per stored file,
  a per-file error for a refused file. Its events (the jobs' and the files') go to the outbox
  together once every file is in, so a request refused for having too many files announces nothing;
* resumable sessions (`begin`, `status`, `append`, `abort`): the tus 1.0.0 model (any number of
  bodies of any size at the current offset, see `functions.ingest.app` for the protocol). A session
  begun with ``announce=False`` stores and audits its file but emits nothing: the file waits for a
  job that names it.

A resumable session is a document in the document store (collection `UPLOADS`), the single source
of truth for its offset, so any replica can continue it. Every change to it is a compare-and-set on
its ``version``: of two requests racing at the same offset exactly one changes it, the other is
refused with `OffsetMismatch` (the current offset) and what it wrote is dropped. The bytes go to an
object-store multipart upload in parts of `PART_BYTES` cut from the bodies as they stream (each part
under a part number allocated for this request alone, so a racing request can never overwrite a
part that was committed); a remainder below `MIN_PART_SIZE` that does not end the file is kept as
*tail segments* (small objects under ``cases/{case_id}/uploads/{upload_id}/``) until enough has
arrived for a part, because every part but the last must reach `MIN_PART_SIZE` (as on S3). Memory
stays within one part per request. A body without a checksum is committed part by part, and if it is
cut off, what arrived is kept (tus: store as much as possible); a body with ``Upload-Checksum`` is
committed only once it has arrived whole and matched (`ChecksumMismatch`: nothing is kept).

The request whose body completes the file commits the last part and claims the completion in the
same compare-and-set (state ``completing``, a lease renewed while it works), so exactly one request
assembles the parts (exactly those committed), registers the media row and publishes. Meanwhile
other requests are answered `OffsetMismatch` at the full length; afterwards the session keeps the
result (state ``completed``): `status` and an empty `append` at the full length report it, and
`abort` only forgets the session. If completing fails (the bus is down, say), the claim is released
and an empty `append` at the full length completes again; a media row that already exists with this
session's media id and object key is the session's own file, never a duplicate of itself, and a
duplicate check never deletes an object another row points to.

Filenames are metadata only (`clean_filename`); they never appear in an object key.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import hmac
import logging
import re
import time
import unicodedata
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sized
from dataclasses import dataclass, replace
from typing import Any

from aima.access.scope import Scope
from aima.config.schema import Limits, RuntimeConfig
from aima.config.service import ConfigService
from aima.domain import JobPhase, Media
from aima.storage.audit import AuditHook, AuditLog
from aima.storage.cases import CaseRepository
from aima.storage.documents import DocumentStore
from aima.storage.jobs import JobRepository, job_created
from aima.storage.media import MediaRepository
from aima.storage.objects import (
    MAX_PART_NUMBER,
    MIN_PART_SIZE,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    PartInfo,
)
from aima.storage.schema import utcnow
from events.catalogue import MediaUploaded, make_event
from events.envelope import CloudEvent, derived_event_id
from functions.ingest.sniff import HEAD_BYTES, Sniffed, UnsupportedMedia, sniff
from functions.runtime.streaming import BodySource, Chunks

log = logging.getLogger(__name__)

SOURCE = "/aima/functions/ingest"
UPLOADS = "uploads"
PART_BYTES = 8 * 1024 * 1024
"""The size resumable bodies are cut into parts of (one is held in memory while it is sent)."""
MAX_TAIL_SEGMENTS = 32
"""Tail segments kept before they are merged into one (a client sending tiny bodies)."""
LEASE_S = 60.0
"""How long a claim to complete a session holds unless renewed (every third of it, while working)."""
RECEIVING, COMPLETING, COMPLETED = "receiving", "completing", "completed"
CHECKSUMS: dict[str, Callable[[], Any]] = {
    "md5": lambda: hashlib.md5(usedforsecurity=False),
    "sha1": lambda: hashlib.sha1(usedforsecurity=False),
    "sha256": hashlib.sha256,
}
"""The algorithms an ``Upload-Checksum`` may use."""
MAX_FILENAME = 255

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


class NoFiles(IngestError):
    """A bulk request without a single file: nothing was created."""


class OffsetMismatch(IngestError):
    """An append at an offset other than the session's current one (``current``), or racing another."""

    def __init__(self, offset: int, current: int, message: str | None = None) -> None:
        super().__init__(
            message or f"the upload is at offset {current}, not {offset}; continue from {current}"
        )
        self.current = current


class IncompleteBody(IngestError):
    """A body ended before its declared size. Of a single upload nothing was kept; of a resumable
    append without a checksum what arrived was kept, and ``offset`` is where the session now stands."""

    def __init__(self, message: str, offset: int | None = None) -> None:
        super().__init__(message)
        self.offset = offset


class ChecksumMismatch(IngestError):
    """An append body whose checksum differs from the one declared: nothing of it was kept."""


@dataclass(frozen=True)
class Checksum:
    """A body's declared checksum: ``algorithm`` (a key of `CHECKSUMS`) and the raw ``digest``."""

    algorithm: str
    digest: bytes

    def __post_init__(self) -> None:
        if self.algorithm not in CHECKSUMS:
            raise ValueError(f"unsupported checksum algorithm {self.algorithm!r}")


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
    metadata: str | None = None
    """The ``Upload-Metadata`` the session was created with, as sent."""
    completing: bool = False
    """Every byte arrived and a request is completing the session right now."""
    result: IngestResult | None = None
    """The stored file (or the one it duplicates), once the session completed."""


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
        audit: AuditLog | None = None,
    ) -> None:
        self._objects = objects
        self._media = media
        self._jobs = jobs
        self._config_service = config_service
        self._publish = bus_publish
        self._documents = documents
        self._cases = cases
        self.audit = audit
        """Where the calls the HTTP app refuses are recorded (the core itself writes no record)."""

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
        result = await self._put(
            scope, case_id, name, BodySource(stream), limits, declared_size, job_id=job_id
        )
        if result.duplicate_of is None:
            await self._announce([self._uploaded(scope, case_id, result)])
        return result

    # --- several files ----------------------------------------------------------------------

    async def bulk(self, scope: Scope, case_id: str, files: Files) -> BulkResult:
        """Store several files under one parent job; each stored file gets a child job.

        A file refused for its content or size becomes an item with its error; the others go on.
        Raises `NoFiles` for a request without any (nothing stays), `TooManyFiles` (a sized
        ``files`` before anything happens, a streamed one as soon as
        the extra file begins, undoing what the request stored) and `CaseNotFound`.
        """
        limits = await self._limits(scope)
        if isinstance(files, Sized) and len(files) > limits.max_files_per_request:
            raise TooManyFiles(limits.max_files_per_request)
        await self._require_case(scope, case_id)
        steps = [step.value for step in (await self._config(scope)).analysis.steps]
        # the request's events go to the outbox together at its end: a request undone (too many
        # files, a client gone) announces nothing
        parent = await asyncio.to_thread(self._jobs.create_parent, scope, case_id, steps, announce=False)
        events = [job_created(parent)]
        items: list[BulkItem] = []
        stored: list[IngestResult] = []
        try:
            async for filename, stream in _aiter(files):
                if len(items) == limits.max_files_per_request:
                    raise TooManyFiles(limits.max_files_per_request)
                name = clean_filename(filename)
                try:
                    result = await self._put(
                        scope, case_id, name, BodySource(stream), limits, None, announce=False
                    )
                except (UnsupportedMedia, TooLarge) as exc:
                    items.append(BulkItem(name, None, exc))
                    continue
                if result.duplicate_of is None:
                    stored.append(result)
                    child = await asyncio.to_thread(
                        functools.partial(
                            self._jobs.create_child,
                            scope,
                            case_id,
                            parent.id,
                            result.media_id,
                            steps,
                            announce=False,
                        )
                    )
                    result = replace(result, job_id=child.id)
                    events.append(job_created(child))  # the scheduler starts it (media.uploaded)
                items.append(BulkItem(name, result, None))
            if not items:
                raise NoFiles("the request holds no file (a part with a filename)")
            if not stored:  # no child will ever finish this job
                refused = any(item.error for item in items)
                phase = JobPhase.FAILED if refused else JobPhase.SUCCEEDED
                reason = "every file was refused" if refused else "every file is stored already"
                await asyncio.to_thread(
                    functools.partial(self._jobs.move, scope, parent.id, phase, reason=reason)
                )
            await asyncio.to_thread(self._media.outbox.write, events)
        except BaseException:
            await asyncio.shield(self._undo(scope, case_id, stored, parent_job_id=parent.id))
            raise
        await self._announce(events)
        return BulkResult(parent.id, items)

    # --- resumable sessions -----------------------------------------------------------------

    async def max_upload_bytes(self, scope: Scope, case_id: str) -> int:
        """The largest file the tenant may upload into the case (tus' ``Tus-Max-Size``); raises
        `CaseNotFound`."""
        await self._require_case(scope, case_id)
        return (await self._limits(scope)).max_upload_bytes

    async def begin(
        self,
        scope: Scope,
        case_id: str,
        *,
        filename: str | None,
        length: int,
        metadata: str | None = None,
        announce: bool = True,
    ) -> str:
        """Open a session for a file of ``length`` bytes; returns its upload id. ``metadata`` is kept
        as sent (tus echoes it), ``filename`` is the cleaned name the file is recorded under. Unless
        ``announce``, the completed file is stored and audited but no ``media.uploaded`` is emitted:
        it waits for a job that names it (the scheduler starts it then)."""
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
            "metadata": metadata,
            "announce": announce,
            "length": length,
            "object_key": object_key(case_id, media_id),
            "state": RECEIVING,
            "version": 0,
            "offset": 0,
            "multipart_id": None,
            "parts": [],
            "next_part": 1,
            "tail": [],
            "content_type": None,
            "kind": None,
            "format": None,
            "claim": None,
            "claim_until": 0.0,
            "result": None,
            "actor": scope.actor,
            "created_at": utcnow(),
        }
        await asyncio.to_thread(self._documents.insert_one, UPLOADS, doc)
        return upload_id

    async def offset(self, scope: Scope, upload_id: str) -> int:
        """Bytes received so far."""
        return (await self.status(scope, upload_id)).offset

    async def status(self, scope: Scope, upload_id: str) -> UploadStatus:
        """Where a session stands (its result once completed); raises `UploadNotFound`."""
        return _status(await self._session(scope, upload_id))

    async def append(
        self,
        scope: Scope,
        upload_id: str,
        offset: int,
        stream: Chunks,
        *,
        size: int | None = None,
        checksum: Checksum | None = None,
    ) -> Appended:
        """Add ``stream`` (``size``: its declared length, if known) to the session at ``offset``.

        Raises `OffsetMismatch` unless ``offset`` is the current one and the session is free to
        take bytes (another request did not change it meanwhile, none is completing it),
        `TooLarge` for a body running past the session's length, `ChecksumMismatch`,
        `IncompleteBody` for a body cut off before ``size`` (what arrived is kept unless a checksum
        was declared), and `UnsupportedMedia` (ending the session) once the file's first bytes show
        it is no accepted format. When the last byte arrives the file is stored (`Appended.result`);
        an empty append at the full length completes a session whose completion failed before, and
        reports the result of one that completed.
        """
        doc = await self._session(scope, upload_id)
        length = int(doc["length"])
        current = int(doc["offset"])
        if offset != current:
            raise OffsetMismatch(offset, current)
        if size is not None and offset + size > length:
            raise _past_end(length)
        if doc["state"] == COMPLETED or current == length:
            if size is None and await BodySource(stream).head(1):
                raise _past_end(length)
            if doc["state"] == COMPLETED:
                return Appended(length, length, _result_of(doc))
            return Appended(length, length, await self._finish(scope, doc))
        if _busy(doc):
            raise _being_completed(current)
        if size == 0:
            return Appended(current, length, None)
        source = BodySource(stream)
        try:
            sniffed = await self._sniff(scope, doc, source)
            receiver = _Receiver(self._objects, self._documents, doc, sniffed=sniffed, checksum=checksum)
            doc = await asyncio.to_thread(receiver.receive, source.blocks(), size)
        finally:
            await source.settle()
        if doc["state"] == COMPLETING:
            return Appended(length, length, await self._finish(scope, doc, claim=doc["claim"]))
        return Appended(int(doc["offset"]), length, None)

    async def abort(self, scope: Scope, upload_id: str) -> None:
        """End a session and drop what it received (a completed session's file stays: only the
        session is forgotten); raises `UploadNotFound`, or `OffsetMismatch` while it is completing."""
        doc = await self._session(scope, upload_id)
        if _busy(doc):
            raise _being_completed(int(doc["offset"]))
        gone = await asyncio.to_thread(
            self._documents.delete_many, UPLOADS, {**_ids(doc), "version": doc["version"]}
        )
        if not gone:
            raise _changed(await self._session(scope, upload_id))
        if doc["state"] != COMPLETED:
            await asyncio.shield(asyncio.to_thread(self._drop, scope, doc))

    # --- internals: storing -----------------------------------------------------------------

    async def _put(
        self,
        scope: Scope,
        case_id: str,
        filename: str | None,
        source: BodySource,
        limits: Limits,
        declared: int | None,
        *,
        job_id: str | None = None,
        announce: bool = True,
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
            return await self._register(
                scope, case_id, media_id, key, info, sniffed, filename, job_id=job_id, announce=announce
            )
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
        *,
        resumed: bool = False,
        job_id: str | None = None,
        announce: bool = True,
    ) -> IngestResult:
        """The media row for a stored object; for a duplicate, the existing row (the object is dropped).

        A new row commits with its ``media.store`` audit record (who stored which bytes) and, when
        ``announce``, its ``media.uploaded`` event in the outbox: stored, audited and announced
        together or not at all. A row that already holds ``media_id`` or ``key`` is this very object
        (a completion that is repeated): it is returned as stored, and the object is kept."""
        if info.sha256 is None:
            raise RuntimeError(f"the object store returned no sha256 for {key}")
        if resumed:  # an earlier attempt to complete the session may have registered it
            own = await asyncio.to_thread(self._media.get, scope, media_id)
            if own is not None and own.object_key == key:
                return _stored(own, filename)
        stored = IngestResult(
            media_id=media_id,
            sha256=info.sha256,
            size=info.size,
            kind=sniffed.kind,
            content_type=sniffed.content_type,
            duplicate_of=None,
            job_id=job_id,
            filename=filename,
        )
        found, created = await asyncio.to_thread(
            functools.partial(
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
                audit=self._stored_record(scope, case_id, stored),
                events=[self._uploaded(scope, case_id, stored)] if announce else [],
            )
        )
        if not created and found.object_key == key:  # the same object: never a duplicate of itself
            return _stored(found, filename)
        if not created:
            await asyncio.to_thread(self._objects.delete, key)
            log.info("duplicate upload", extra={"case_id": case_id, "duplicate_of": found.id})
            return replace(_stored(found, None), duplicate_of=found.id)
        log.info("media stored", extra={"case_id": case_id, "media_id": media_id, "size": info.size})
        return stored

    def _stored_record(self, scope: Scope, case_id: str, stored: IngestResult) -> AuditHook | None:
        """The ``media.store`` audit record of a new file, written in its row's transaction."""
        audit = self.audit
        if audit is None:
            return None
        return lambda session: audit.record(
            session,
            tenant_id=scope.tenant_id,
            actor=scope.actor,
            action="media.store",
            outcome="allowed",
            case_id=case_id,
            object=f"media/{stored.media_id}",
            detail={"sha256": stored.sha256, "size": stored.size, "content_type": stored.content_type},
        )

    async def _announce(self, events: list[CloudEvent]) -> None:
        """Publish events that committed in the outbox now; if the bus is down, the relay's sweep
        publishes them later, so the upload stands either way."""
        try:
            for event in events:
                await self._publish(event)
        except Exception as exc:
            log.warning("events stay in the outbox until the bus takes them: %r", exc)

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
        if "version" not in doc:  # begun before uploads spoke tus 1.0.0: it cannot go on
            if await asyncio.to_thread(self._documents.delete_many, UPLOADS, _ids(doc)):
                await asyncio.shield(asyncio.to_thread(self._drop, scope, doc))
            raise UploadNotFound(f"upload {upload_id} was begun by an earlier version; upload the file again")
        return doc

    async def _sniff(self, scope: Scope, doc: dict[str, Any], source: BodySource) -> Sniffed | None:
        """The format of the file, once its first `HEAD_BYTES` (tail segments, then this body) are
        there and the session does not know it yet; None otherwise. A refused format ends the
        session (unless another request changed it meanwhile) and raises `UnsupportedMedia`."""
        if doc["content_type"] is not None:
            return None
        need = min(HEAD_BYTES, int(doc["length"]))
        prefix = b""
        if doc["tail"]:
            try:
                prefix = await asyncio.to_thread(_read_tail, self._objects, doc["tail"], need)
            except ObjectNotFound:  # consumed by a request that changed the session meanwhile
                raise _changed(await self._session(scope, doc["_id"])) from None
        head = prefix + (await source.head(need - len(prefix)) if len(prefix) < need else b"")
        if len(head) < need:
            return None  # this body ends first: it is kept as a tail segment, sniffed later
        try:
            return sniff(head[:need])
        except UnsupportedMedia:
            filter = {**_ids(doc), "version": doc["version"]}
            if await asyncio.to_thread(self._documents.delete_many, UPLOADS, filter):
                await asyncio.shield(asyncio.to_thread(self._drop, scope, doc))
            raise

    def _drop(self, scope: Scope, doc: dict[str, Any]) -> None:
        """Remove what a session that was never completed holds (its document is gone already):
        its multipart upload, its tail segments, and an object assembled but never registered."""
        if doc["multipart_id"] is not None:
            self._objects.abort_upload(doc["object_key"], doc["multipart_id"])
        self._objects.delete_prefix(_tail_prefix(doc))
        if self._media.get(scope, doc["media_id"]) is None:
            self._objects.delete(doc["object_key"])

    async def _finish(self, scope: Scope, doc: dict[str, Any], *, claim: str | None = None) -> IngestResult:
        """Complete a session that received every byte: claim it (unless ``claim`` holds already),
        assemble exactly its committed parts, register the file (see `_register`), emit, and record
        the result. Raises `OffsetMismatch` while another request is completing it.

        If anything fails, the claim is released (the object may stay assembled, a registered row
        stays), so an empty append at the full length completes again and finds the row.
        """
        if claim is None:
            claim = uuid.uuid4().hex
            values = {"state": COMPLETING, "claim": claim, "claim_until": time.time() + LEASE_S}
            # not while another request's claim holds (a lapsed one is taken over)
            filter = {**_ids(doc), "version": doc["version"], "claim_until": {"$lt": time.time()}}
            update = {"$set": values, "$inc": {"version": 1}}
            if not await asyncio.to_thread(self._documents.update_one, UPLOADS, filter, update):
                current = await self._session(scope, doc["_id"])
                if current["state"] == COMPLETED:
                    return _result_of(current)
                raise _being_completed(int(current["offset"]))
        announce = bool(doc.get("announce", True))  # sessions begun before the flag announce
        renewing = asyncio.create_task(self._renew(doc, claim))
        try:
            info = await asyncio.to_thread(self._assemble, doc)
            if info is None:
                await asyncio.to_thread(self._documents.delete_many, UPLOADS, {**_ids(doc), "claim": claim})
                raise UploadNotFound(f"upload {doc['_id']} has expired: its parts are gone")
            sniffed = Sniffed(doc["kind"], doc["content_type"], doc["format"])
            case_id, media_id, key = doc["case_id"], doc["media_id"], doc["object_key"]
            result = await self._register(
                scope, case_id, media_id, key, info, sniffed, doc["filename"], resumed=True, announce=announce
            )
        except BaseException:
            renewing.cancel()
            await asyncio.shield(self._release(doc, claim))
            raise
        renewing.cancel()
        if result.duplicate_of is None and announce:
            await self._announce([self._uploaded(scope, case_id, result)])
        done: dict[str, Any] = {
            "state": COMPLETED,
            "result": dataclasses.asdict(result),
            "claim": None,
            "tail": [],
        }
        update = {"$set": done, "$inc": {"version": 1}}
        await asyncio.to_thread(self._documents.update_one, UPLOADS, {**_ids(doc), "claim": claim}, update)
        with contextlib.suppress(Exception):  # leftovers of a request that lost a race
            await asyncio.to_thread(self._objects.delete_prefix, _tail_prefix(doc))
        log.info("upload completed", extra={"upload_id": doc["_id"], "media_id": result.media_id})
        return result

    def _assemble(self, doc: dict[str, Any]) -> ObjectInfo | None:
        """The assembled object (with its sha256), from the committed parts or as an earlier attempt
        left it; None if neither the parts nor the object exist any more."""
        key = doc["object_key"]
        parts = [PartInfo(int(p["number"]), int(p["size"]), str(p["etag"])) for p in doc["parts"]]
        try:
            if doc["multipart_id"] is None:
                raise ObjectNotFound(key)
            info = self._objects.complete_upload(key, doc["multipart_id"], parts)
        except ObjectNotFound:
            try:
                info = self._objects.stat(key)
            except ObjectNotFound:
                return None
            if info.sha256 is None:
                info = replace(info, sha256=_sha256(self._objects, key))
        if info.size != int(doc["length"]):
            raise RuntimeError(f"upload {doc['_id']} assembled {info.size} of {doc['length']} bytes")
        return info

    async def _renew(self, doc: dict[str, Any], claim: str) -> None:
        """Extend the claim every third of `LEASE_S` while the completion works."""
        while True:
            await asyncio.sleep(LEASE_S / 3)
            values = {"$set": {"claim_until": time.time() + LEASE_S}}
            await asyncio.to_thread(
                self._documents.update_one, UPLOADS, {**_ids(doc), "claim": claim}, values
            )

    async def _release(self, doc: dict[str, Any], claim: str) -> None:
        """Give the session back after a failed completion. A row it registered stays: the row, its
        audit record and its event committed together, and a repeated completion finds it."""
        back = {"$set": {"state": RECEIVING, "claim": None, "claim_until": 0.0}, "$inc": {"version": 1}}
        await asyncio.to_thread(self._documents.update_one, UPLOADS, {**_ids(doc), "claim": claim}, back)

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


# --- streaming helpers -------------------------------------------------------------------------


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


class _Receiver:
    """Writes one append body into a session; runs in a worker thread (see the module docstring).

    The session's bytes are: its committed parts, then its tail segments, then this body. Whenever the
    tail and the body hold `PART_BYTES`, a part is cut (the tail read back in front of it) and
    uploaded under a part number allocated for it alone; without a checksum each part is committed at
    once. At the end, what is left becomes the last part (the file is complete: the commit also
    claims the completion), a part (if it reaches `MIN_PART_SIZE`) or a new tail segment. Every commit
    is a compare-and-set on the session's version; one that finds it changed drops what it wrote and
    raises `OffsetMismatch` with the offset the session now has.
    """

    def __init__(
        self,
        objects: ObjectStore,
        documents: DocumentStore,
        doc: dict[str, Any],
        *,
        sniffed: Sniffed | None,
        checksum: Checksum | None,
    ) -> None:
        self._objects = objects
        self._documents = documents
        self._doc = doc  # the session as this request last saw or committed it
        self._start = int(doc["offset"])
        self._sniffed = sniffed
        self._checksum = checksum
        self._hash = CHECKSUMS[checksum.algorithm]() if checksum is not None else None
        self._buffer = bytearray()  # body bytes not in a part or segment yet
        self._pending: list[dict[str, Any]] = []  # parts uploaded, not committed
        self._consumed = False  # the committed tail went into a pending part
        self._own_multipart: str | None = None  # begun here, not committed
        self._new_segment: str | None = None  # written here, not committed

    def receive(self, blocks: Iterator[bytes], declared: int | None) -> dict[str, Any]:
        """Take the body; returns the session as committed (state ``completing`` if the body ended it).

        A body that breaks off (or ends short of ``declared``) keeps what arrived, unless a checksum
        was declared, and its error is raised; every other error keeps nothing of this body beyond
        the parts already committed."""
        length = int(self._doc["length"])
        received = 0
        cut_off: BaseException | None = None
        try:
            while True:
                try:
                    block = next(blocks)
                except StopIteration:
                    break
                except BaseException as exc:  # the body broke off (the client went away, say)
                    cut_off = exc
                    break
                received += len(block)
                if self._start + received > length:
                    raise _past_end(length)
                if declared is not None and received > declared:
                    raise IncompleteBody(f"the body is longer than the declared {declared} bytes")
                if self._hash is not None:
                    self._hash.update(block)
                self._buffer += block
                while self._tail_size() + len(self._buffer) >= PART_BYTES:
                    self._cut()
            if cut_off is None and declared is not None and received != declared:
                cut_off = IncompleteBody(f"the body ended after {received} of the declared {declared} bytes")
            if cut_off is not None:
                if self._checksum is None:
                    self._end()
                if isinstance(cut_off, IncompleteBody):
                    cut_off.offset = int(self._doc["offset"])
                raise cut_off
            if self._checksum is not None and not self._matches(self._checksum):
                algorithm = self._checksum.algorithm
                raise ChecksumMismatch(f"the body's {algorithm} differs from its Upload-Checksum")
            self._end()
        except BaseException:
            self._discard()
            raise
        return self._doc

    def _matches(self, checksum: Checksum) -> bool:
        return self._hash is not None and hmac.compare_digest(self._hash.digest(), checksum.digest)

    # --- cutting and committing ------------------------------------------------------------

    def _tail_size(self) -> int:
        return 0 if self._consumed else sum(int(s["size"]) for s in self._doc["tail"])

    def _base(self) -> int:
        """Where the tail (or, once consumed, the buffer) begins: the committed and pending parts."""
        return sum(int(p["size"]) for p in (*self._doc["parts"], *self._pending))

    def _cut(self) -> None:
        """Upload the next `PART_BYTES` (tail first) as a part; commit it unless a checksum waits."""
        take = PART_BYTES - self._tail_size()
        data = self._tail_bytes() + bytes(self._buffer[:take])
        del self._buffer[:take]
        self._pending.append(self._upload(data))
        self._consumed = True
        if self._checksum is None:
            self._commit(complete=self._base() == int(self._doc["length"]))

    def _end(self) -> None:
        """Store what is left and commit: the last part, a part, a tail segment, or nothing."""
        if self._doc["state"] == COMPLETING:
            return  # the last part was cut and committed already
        length = int(self._doc["length"])
        left = self._tail_size() + len(self._buffer)
        complete = self._base() + left == length
        if complete or left >= MIN_PART_SIZE:
            if left:
                self._pending.append(self._upload(self._tail_bytes() + bytes(self._buffer)))
                self._consumed = True
                self._buffer.clear()
            self._commit(complete=complete)
        elif self._buffer:
            self._commit(segment=bytes(self._buffer))
            self._buffer.clear()
        elif self._pending:
            self._commit()

    def _tail_bytes(self) -> bytes:
        """The committed tail's bytes (none once consumed)."""
        if self._consumed or not self._doc["tail"]:
            return b""
        try:
            return _read_tail(self._objects, self._doc["tail"], None)
        except ObjectNotFound:  # consumed by a request that changed the session meanwhile
            raise self._lost() from None

    def _upload(self, data: bytes) -> dict[str, Any]:
        doc = self._doc
        multipart = doc["multipart_id"] or self._own_multipart
        if multipart is None:
            content_type = self._sniffed.content_type if self._sniffed else doc["content_type"]
            multipart = self._objects.begin_upload(doc["object_key"], content_type=content_type)
            self._own_multipart = multipart
        number = self._allocate()
        try:
            part = self._objects.upload_part(doc["object_key"], multipart, number, data)
        except ObjectNotFound:  # the multipart upload ended: completed by another request, or expired
            raise self._lost(expired=True) from None
        return {"number": part.part_number, "size": part.size, "etag": part.etag}

    def _allocate(self) -> int:
        """A part number no other request gets: larger than every committed one (see module docstring)."""
        number = int(self._doc["next_part"])
        while True:
            if number > MAX_PART_NUMBER:
                raise TooLarge(f"the upload needs more than {MAX_PART_NUMBER} parts", MAX_PART_NUMBER)
            taken = {**_ids(self._doc), "next_part": number}
            if self._documents.update_one(UPLOADS, taken, {"$set": {"next_part": number + 1}}):
                self._doc["next_part"] = number + 1
                return number
            current = self._documents.find_one(UPLOADS, _ids(self._doc))
            if current is None:
                raise UploadNotFound(f"upload {self._doc['_id']} ended meanwhile")
            number = int(current["next_part"])

    def _commit(self, *, complete: bool = False, segment: bytes | None = None) -> None:
        doc = self._doc
        old_tail: list[dict[str, Any]] = list(doc["tail"])
        tail: list[dict[str, Any]] = [] if self._consumed else old_tail
        if segment is not None:
            if len(tail) >= MAX_TAIL_SEGMENTS:  # merge, so that a session of tiny bodies stays small
                segment = self._tail_bytes() + segment
                tail = []
            key = f"{_tail_prefix(doc)}{uuid.uuid4().hex}"
            self._objects.put(key, [segment])
            self._new_segment = key
            tail = [*tail, {"key": key, "size": len(segment)}]
        parts = [*doc["parts"], *self._pending]
        values: dict[str, Any] = {
            "parts": parts,
            "tail": tail,
            "offset": sum(int(p["size"]) for p in parts) + sum(int(s["size"]) for s in tail),
            "version": int(doc["version"]) + 1,
        }
        if self._own_multipart is not None:
            values["multipart_id"] = self._own_multipart
        if self._sniffed is not None and doc["content_type"] is None:
            values |= {
                "content_type": self._sniffed.content_type,
                "kind": self._sniffed.kind,
                "format": self._sniffed.format,
            }
        if complete:
            values |= {"state": COMPLETING, "claim": uuid.uuid4().hex, "claim_until": time.time() + LEASE_S}
        filter = {**_ids(doc), "version": doc["version"], "state": RECEIVING}
        if not self._documents.update_one(UPLOADS, filter, {"$set": values}):
            raise self._lost()
        self._doc = {**doc, **values}
        self._pending, self._own_multipart, self._new_segment = [], None, None
        self._consumed = False
        dropped = [s["key"] for s in old_tail if s not in tail]
        for key in dropped:
            with contextlib.suppress(Exception):
                self._objects.delete(key)

    def _discard(self) -> None:
        """Drop what this request wrote and did not commit (parts uploaded into a shared multipart
        upload stay unused: completing the session leaves them out, aborting it drops them)."""
        with contextlib.suppress(Exception):
            if self._own_multipart is not None:
                self._objects.abort_upload(self._doc["object_key"], self._own_multipart)
            if self._new_segment is not None:
                self._objects.delete(self._new_segment)
        self._pending, self._own_multipart, self._new_segment = [], None, None

    def _lost(self, *, expired: bool = False) -> IngestError:
        """The error for a session that changed under this request (after dropping what it wrote)."""
        self._discard()
        current = self._documents.find_one(UPLOADS, _ids(self._doc))
        if current is None:
            return UploadNotFound(f"upload {self._doc['_id']} ended meanwhile")
        if expired and current["version"] == self._doc["version"]:
            self._documents.delete_many(UPLOADS, {**_ids(current), "version": current["version"]})
            with contextlib.suppress(Exception):
                self._objects.delete_prefix(_tail_prefix(current))
            return UploadNotFound(f"upload {self._doc['_id']} has expired: its parts are gone")
        return _changed(current)


def _status(doc: dict[str, Any]) -> UploadStatus:
    return UploadStatus(
        upload_id=doc["_id"],
        case_id=doc["case_id"],
        offset=int(doc["offset"]),
        length=int(doc["length"]),
        filename=doc["filename"],
        metadata=doc.get("metadata"),
        completing=_busy(doc),
        result=_result_of(doc) if doc["state"] == COMPLETED else None,
    )


def _result_of(doc: dict[str, Any]) -> IngestResult:
    return IngestResult(**doc["result"])


def _busy(doc: dict[str, Any]) -> bool:
    """A request is completing the session (its claim has not lapsed)."""
    return bool(doc["state"] == COMPLETING and float(doc["claim_until"]) > time.time())


def _being_completed(offset: int) -> OffsetMismatch:
    return OffsetMismatch(
        offset, offset, f"every byte arrived and the upload is being completed; ask again (offset {offset})"
    )


def _changed(doc: dict[str, Any]) -> OffsetMismatch:
    offset = int(doc["offset"])
    if _busy(doc):
        return _being_completed(offset)
    return OffsetMismatch(
        offset, offset, f"another request changed this upload meanwhile; it is at offset {offset}"
    )


def _past_end(length: int) -> TooLarge:
    return TooLarge(f"the body runs past the upload's length of {length} bytes", length)


def _tail_prefix(doc: dict[str, Any]) -> str:
    return f"cases/{doc['case_id']}/uploads/{doc['_id']}/"


def _read_tail(objects: ObjectStore, tail: list[dict[str, Any]], limit: int | None) -> bytes:
    """The tail segments' bytes in order (the first ``limit`` of them, if given)."""
    chunks: list[bytes] = []
    have = 0
    for segment in tail:
        if limit is not None and have >= limit:
            break
        end = None if limit is None else min(int(segment["size"]), limit - have)
        data = b"".join(objects.get(segment["key"], end=end))
        chunks.append(data)
        have += len(data)
    return b"".join(chunks)


def _too_large(limits: Limits) -> TooLarge:
    limit = limits.max_upload_bytes
    return TooLarge(f"files may be at most {limit} bytes", limit)


def _stored(media: Media, filename: str | None) -> IngestResult:
    return IngestResult(
        media_id=media.id,
        sha256=media.sha256,
        size=media.size,
        kind=media.kind.value if media.kind is not None else None,
        content_type=media.content_type,
        duplicate_of=None,
        job_id=None,
        filename=media.filename if media.filename is not None else filename,
    )


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
