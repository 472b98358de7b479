"""The ingest function's internal HTTP API; the public gateway forwards uploads here.

Only service accounts may call it: every route needs ``Authorization: Bearer <service token>``
(`TokenService.verify_access`, a principal of kind ``service``). From such a caller the acting
context is trusted: ``X-AIMA-Tenant`` and ``X-AIMA-Actor`` (required; the gateway has authorised
``media.upload`` on the case and audited it) and ``X-AIMA-Request-ID``. Filenames come in
``X-AIMA-Filename``, percent-encoded. Bodies are streamed, never read whole.

* ``POST /cases/{case_id}/media``: the raw body is one file; 201 with the result, 200 with
  ``duplicate_of`` when the case already holds the same bytes.
* ``POST /cases/{case_id}/media:bulk``: ``multipart/form-data``, every part with a filename is a
  file, parsed as it streams; 201 with the parent job and one entry per file.
* tus-like resumable uploads: ``POST /cases/{case_id}/uploads`` (``Upload-Length``) -> 201 with
  ``Location`` and ``Upload-Offset: 0``; ``HEAD .../uploads/{id}`` -> ``Upload-Offset`` and
  ``Upload-Length``; ``PATCH .../uploads/{id}`` (``Content-Type: application/offset+octet-stream``,
  ``Upload-Offset``; each body one part) -> 204 with the new ``Upload-Offset``, or 200 with the
  result once the file is complete; ``DELETE .../uploads/{id}`` ends the session.

Every error is ``application/problem+json`` with a specific ``type``: unsupported media 415, too
large 413, too many files 413, offset mismatch 409, unknown case or upload 404, no service token 401.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from urllib.parse import unquote

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from aima.access.scope import Scope
from aima.config.service import ConfigService
from aima.identity.errors import InvalidToken
from aima.identity.model import Principal
from aima.identity.tokens import TokenService
from aima.settings import Settings
from aima.storage.audit import AuditLog
from aima.storage.cache import cache_from_url
from aima.storage.cases import CaseRepository
from aima.storage.documents import DocumentStore
from aima.storage.jobs import JobRepository
from aima.storage.media import MediaRepository
from aima.storage.objects import object_store_from_settings
from aima.storage.relational import Database
from aima.telemetry.health import HealthRegistry
from functions.ingest.core import (
    MAX_PART_BYTES,
    BulkResult,
    CaseNotFound,
    IncompleteBody,
    IngestCore,
    IngestResult,
    OffsetMismatch,
    PartRejected,
    Publish,
    TooLarge,
    TooManyFiles,
    UploadNotFound,
)
from functions.ingest.sniff import ACCEPTED, UnsupportedMedia, accepted_summary
from functions.runtime.app import add_probe_routes, observe_requests, well_formed_id
from functions.runtime.problems import Problem, problem_response

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

log = logging.getLogger(__name__)

NAME = "ingest"
TENANT = "X-AIMA-Tenant"
ACTOR = "X-AIMA-Actor"
FORWARDED_REQUEST_ID = "X-AIMA-Request-ID"
FILENAME = "X-AIMA-Filename"
UPLOAD_OFFSET = "Upload-Offset"
UPLOAD_LENGTH = "Upload-Length"
OFFSET_STREAM = "application/offset+octet-stream"
MAX_TENANT_ID = 36
MAX_ACTOR = 200
T = TypeVar("T")


@dataclass(frozen=True)
class Caller:
    """A verified service account and the context it acts in."""

    principal: Principal
    tenant_id: str
    actor: str

    def scope(self, case_id: str) -> Scope:
        return Scope.for_case(self.tenant_id, case_id, self.actor)


async def authenticate(request: Request) -> Caller:
    """The verified service caller and its acting context; a 401 or 400 problem otherwise."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("This internal endpoint needs a service token (Authorization: Bearer).")
    try:
        tokens: TokenService = request.app.state.tokens
        principal = await run_in_threadpool(tokens.verify_access, token.strip())
    except InvalidToken as exc:
        raise _unauthorized(f"The token was refused: {exc.reason}.") from None
    if principal.kind != "service":
        raise _unauthorized("Only service accounts may call this internal endpoint, not users.")
    tenant_id = request.headers.get(TENANT, "").strip()
    actor = request.headers.get(ACTOR, "").strip()
    if not 0 < len(tenant_id) <= MAX_TENANT_ID or not 0 < len(actor) <= MAX_ACTOR:
        detail = f"{TENANT} (1-{MAX_TENANT_ID} characters) and {ACTOR} (1-{MAX_ACTOR}) are required."
        raise Problem(400, "missing-context", "Acting context missing", detail)
    forwarded = request.headers.get(FORWARDED_REQUEST_ID, "")
    if well_formed_id(forwarded):
        request.state.request_id = forwarded
    return Caller(principal, tenant_id, actor)


Authenticated = Annotated[Caller, Depends(authenticate)]


def build_core(settings: Settings, *, bus_publish: Publish) -> IngestCore:
    """A core on the stores that ``settings`` name (the schema must be migrated)."""
    assert settings.cache_url is not None  # filled or required by the profile
    db = Database.from_settings(settings)
    config = ConfigService(db, cache_from_url(settings.cache_url), AuditLog(db))
    return IngestCore(
        object_store_from_settings(settings),
        MediaRepository(db),
        JobRepository(db),
        config,
        bus_publish=bus_publish,
        documents=DocumentStore.from_settings(settings),
        cases=CaseRepository(db),
    )


def create_app(core: IngestCore, *, tokens: TokenService, health: HealthRegistry) -> FastAPI:
    """The internal HTTP API over ``core`` (see module docstring), plus health and metrics."""
    app = FastAPI(title=f"aima-{NAME}", openapi_url=None, docs_url=None, redoc_url=None)
    observe_requests(app, NAME)
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
    app.state.tokens = tokens

    @app.post("/cases/{case_id}/media")
    async def upload(case_id: str, request: Request, caller: Authenticated) -> JSONResponse:
        stored = core.store(
            caller.scope(case_id),
            case_id,
            filename=_filename(request),
            stream=request.stream(),
            declared_size=_int_header(request, "Content-Length"),
        )
        result = await _run(stored)
        return JSONResponse(_result(result), status_code=200 if result.duplicate_of else 201)

    @app.post("/cases/{case_id}/media:bulk")
    async def bulk(case_id: str, request: Request, caller: Authenticated) -> JSONResponse:
        media_type, params = parse_options_header(request.headers.get("content-type", ""))
        if media_type != b"multipart/form-data" or not params.get(b"boundary"):
            raise Problem(
                415, "unsupported-content-type", "Unsupported content type", "Send multipart/form-data."
            )
        files = _MultipartFiles(request.stream(), params[b"boundary"]).files()
        outcome = await _run(core.bulk(caller.scope(case_id), case_id, files))
        return JSONResponse(_bulk(outcome), status_code=201)

    @app.post("/cases/{case_id}/uploads")
    async def begin(case_id: str, request: Request, caller: Authenticated) -> JSONResponse:
        length = _int_header(request, UPLOAD_LENGTH)
        if length is None:
            raise _bad_header(UPLOAD_LENGTH)
        upload_id = await _run(
            core.begin(caller.scope(case_id), case_id, filename=_filename(request), length=length)
        )
        headers = {"Location": f"/cases/{case_id}/uploads/{upload_id}", UPLOAD_OFFSET: "0"}
        body = {"upload_id": upload_id, "offset": 0, "length": length, "max_part_bytes": MAX_PART_BYTES}
        return JSONResponse(body, status_code=201, headers=headers)

    @app.head("/cases/{case_id}/uploads/{upload_id}")
    async def offset(case_id: str, upload_id: str, caller: Authenticated) -> Response:
        status = await _run(core.status(caller.scope(case_id), upload_id))
        headers = {
            UPLOAD_OFFSET: str(status.offset),
            UPLOAD_LENGTH: str(status.length),
            "Cache-Control": "no-store",
        }
        return Response(status_code=200, headers=headers)

    @app.patch("/cases/{case_id}/uploads/{upload_id}")
    async def append(case_id: str, upload_id: str, request: Request, caller: Authenticated) -> Response:
        media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media_type != OFFSET_STREAM:
            detail = f"Send each part as {OFFSET_STREAM}."
            raise Problem(415, "unsupported-content-type", "Unsupported content type", detail)
        at = _int_header(request, UPLOAD_OFFSET)
        if at is None:
            raise _bad_header(UPLOAD_OFFSET)
        size = _int_header(request, "Content-Length")
        appended = await _run(core.append(caller.scope(case_id), upload_id, at, request.stream(), size=size))
        headers = {UPLOAD_OFFSET: str(appended.offset)}
        if appended.result is None:
            return Response(status_code=204, headers=headers)
        return JSONResponse(_result(appended.result), status_code=200, headers=headers)

    @app.delete("/cases/{case_id}/uploads/{upload_id}")
    async def abort(case_id: str, upload_id: str, caller: Authenticated) -> Response:
        await _run(core.abort(caller.scope(case_id), upload_id))
        return Response(status_code=204)

    add_probe_routes(app, health)
    return app


# --- errors --------------------------------------------------------------------------------------


def problem_for(exc: BaseException) -> Problem | None:
    """The problem an upload error is answered with; None for an unexpected error."""
    if isinstance(exc, UnsupportedMedia):
        detail = f"The file is not an accepted media format ({exc.reason}). Accepted: {accepted_summary()}."
        extensions = {"reason": exc.reason, "accepted": [entry.name for entry in ACCEPTED]}
        return Problem(415, "unsupported-media", "Unsupported media", detail, extensions=extensions)
    if isinstance(exc, TooLarge):
        return Problem(413, "too-large", "Too large", f"{exc}.", extensions={"limit": exc.limit})
    if isinstance(exc, TooManyFiles):
        return Problem(413, "too-many-files", "Too many files", f"{exc}.", extensions={"limit": exc.limit})
    if isinstance(exc, OffsetMismatch):
        headers = {UPLOAD_OFFSET: str(exc.current)}
        return Problem(409, "offset-mismatch", "Offset mismatch", f"{exc}.", headers=headers)
    if isinstance(exc, CaseNotFound):
        return Problem(404, "case-not-found", "Case not found", f"{exc}.")
    if isinstance(exc, UploadNotFound):
        return Problem(404, "upload-not-found", "Upload not found", f"{exc}.")
    if isinstance(exc, PartRejected):
        return Problem(400, "part-rejected", "Part rejected", f"{exc}.")
    if isinstance(exc, IncompleteBody | ClientDisconnect):
        detail = (
            f"{str(exc) or 'The connection closed before the body was complete'}; nothing of it was kept."
        )
        return Problem(400, "incomplete-body", "Incomplete body", detail)
    if isinstance(exc, MultipartParseError):
        return Problem(400, "invalid-multipart", "Invalid multipart body", f"{exc}.")
    return None


async def _run(awaitable: Awaitable[T]) -> T:
    """Await a core call, turning its errors into problems."""
    try:
        return await awaitable
    except Exception as exc:
        problem = problem_for(exc)
        if problem is None:
            raise
        log.info(
            "upload refused: %s", problem.kind, extra={"status": problem.status, "detail": problem.detail}
        )
        raise problem from None


async def _on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return exc.to_response(getattr(request.state, "request_id", None))


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    kind = "not-found" if exc.status_code == 404 else f"http-{exc.status_code}"
    detail = exc.detail if isinstance(exc.detail, str) else None
    return problem_response(
        exc.status_code, kind, detail or "HTTP error", instance=getattr(request.state, "request_id", None)
    )


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    """503 with ``Retry-After`` while a store or the bus is unreachable, else a generic 500; both
    with the request id (the exception passed the middleware that adds it)."""
    from functions.runtime.app import REQUEST_ID
    from functions.runtime.problems import outage_problem

    request_id = getattr(request.state, "request_id", None)
    headers = {REQUEST_ID: request_id} if request_id else {}
    outage = outage_problem(exc)
    if outage is not None:
        log.warning(
            "%s unavailable in %s %s: %s",
            outage.extensions["component"],
            request.method,
            request.url.path,
            type(exc).__name__,
            extra={"request_id": request_id},
        )
        response = outage.to_response(request_id)
        response.headers.update(headers)
        return response
    log.error(
        "unhandled %s in %s %s",
        type(exc).__name__,
        request.method,
        request.url.path,
        exc_info=exc,
        extra={"request_id": request_id},
    )
    detail = "An unexpected error occurred. Quote the request id (instance) when reporting it."
    return problem_response(
        500, "internal-error", "Internal server error", detail, instance=request_id, headers=headers
    )


def _unauthorized(detail: str) -> Problem:
    headers = {"WWW-Authenticate": 'Bearer realm="aima-internal"'}
    return Problem(401, "service-token-required", "Service token required", detail, headers=headers)


def _bad_header(name: str) -> Problem:
    return Problem(400, "invalid-header", "Invalid header", f"{name} must be a non-negative integer.")


# --- request and response helpers ---------------------------------------------------------------


def _int_header(request: Request, name: str) -> int | None:
    """A non-negative integer header; None if absent, a 400 problem if malformed."""
    raw = request.headers.get(name)
    if raw is None:
        return None
    raw = raw.strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19:
        raise _bad_header(name)
    return int(raw)


def _filename(request: Request) -> str | None:
    raw = request.headers.get(FILENAME)
    return None if raw is None else unquote(raw, errors="replace")


def _result(result: IngestResult) -> dict[str, Any]:
    return dataclasses.asdict(result)


def _bulk(outcome: BulkResult) -> dict[str, Any]:
    entries = []
    for item in outcome.results:
        entry: dict[str, Any] = {"filename": item.filename}
        if item.result is not None:
            entry["status"] = "duplicate" if item.result.duplicate_of else "stored"
            entry["result"] = _result(item.result)
        else:
            problem = problem_for(item.error) if item.error is not None else None
            entry["status"] = "refused"
            entry["error"] = problem.body() if problem is not None else {"detail": str(item.error)}
        entries.append(entry)
    return {"parent_job_id": outcome.parent_job_id, "results": entries}


class _MultipartFiles:
    """The file parts of a ``multipart/form-data`` body, parsed while it streams in.

    `files` yields ``(filename, chunks)`` in order; each part's chunks are read before the next part
    is produced (what a consumer leaves is skipped). Parts without a filename are skipped. Memory
    holds at most the events of one received chunk.
    """

    def __init__(self, chunks: AsyncIterator[bytes], boundary: bytes) -> None:
        self._chunks = chunks
        self._events: deque[tuple[str, bytes]] = deque()
        self._header = b""
        self._value = b""
        self._disposition = b""
        self._ended = False
        self._drained = False
        callbacks: MultipartCallbacks = {
            "on_part_begin": self._on_part_begin,
            "on_header_field": self._on_header_field,
            "on_header_value": self._on_header_value,
            "on_header_end": self._on_header_end,
            "on_headers_finished": self._on_headers_finished,
            "on_part_data": self._on_part_data,
            "on_part_end": self._on_part_end,
            "on_end": self._on_end,
        }
        self._parser = MultipartParser(boundary, callbacks)

    async def files(self) -> AsyncIterator[tuple[str | None, AsyncIterator[bytes]]]:
        while (event := await self._next()) is not None:
            kind, value = event
            if kind != "file":
                continue  # data and ends of skipped parts
            body = self._body()
            yield _disposition_filename(value), body
            async for _ in body:
                pass

    async def _body(self) -> AsyncIterator[bytes]:
        while (event := await self._next()) is not None and event[0] == "data":
            yield event[1]

    async def _next(self) -> tuple[str, bytes] | None:
        while not self._events:
            if self._drained:
                return None
            chunk = await anext(self._chunks, None)
            if chunk is None:
                self._drained = True
                self._parser.finalize()
                if not self._ended:
                    raise MultipartParseError("the multipart body ended before its closing boundary")
            else:
                self._parser.write(chunk)
        return self._events.popleft()

    def _on_part_begin(self) -> None:
        self._disposition = b""

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _on_header_end(self) -> None:
        if self._header.lower() == b"content-disposition":
            self._disposition = self._value
        self._header = self._value = b""

    def _on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        self._events.append(("file" if b"filename" in options else "field", self._disposition))

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._events.append(("data", data[start:end]))

    def _on_part_end(self) -> None:
        self._events.append(("end", b""))

    def _on_end(self) -> None:
        self._ended = True


def _disposition_filename(disposition: bytes) -> str:
    _, options = parse_options_header(disposition)
    return options.get(b"filename", b"").decode("utf-8", errors="replace")
