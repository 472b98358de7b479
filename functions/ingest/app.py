"""The ingest function's internal HTTP API; the public gateway forwards uploads here.

**Who may call.** Every upload route needs ``Authorization: Bearer <delegation token>``: a token the
gateway mints after it authorised ``media.upload`` on the case for a user
(`TokenService.issue_delegation`, audience `AUDIENCE`, at most two minutes valid, see
``docs/security.md``). The acting context comes from the token alone: its tenant, its actor (the
user) and its case, which must be the case in the path. ``X-AIMA-Tenant`` / ``X-AIMA-Actor``, if a
caller still sends them, must agree with the token. Anything else (no token, an access or service
token, another function's delegation, a tampered, expired or long-lived one: 401; another case or a
disagreeing header: 403) is refused with a problem and an audit record (action
``internal.refused``, outcome ``denied``; in the token's tenant when the token was valid, else in the
``anonymous`` chain). ``X-AIMA-Request-ID`` is taken as the request id. Filenames come in
``X-AIMA-Filename``, percent-encoded. Bodies are streamed, never read whole.

* ``POST /cases/{case_id}/media``: the raw body is one file; 201 with the result, 200 with
  ``duplicate_of`` when the case already holds the same bytes.
* ``POST /cases/{case_id}/media:bulk``: ``multipart/form-data``, every part with a filename is a
  file, parsed as it streams; 201 with the parent job and one entry per file (400 without any file).

**Resumable uploads: tus 1.0.0** (https://tus.io/protocols/resumable-upload), core plus the
``creation``, ``termination`` and ``checksum`` extensions. Every request but ``OPTIONS`` must carry
``Tus-Resumable: 1.0.0``: another version is answered 412, a request without the header 400 (tus
leaves that case open), both with ``Tus-Version``; every response of these routes carries
``Tus-Resumable: 1.0.0``.

* ``OPTIONS /cases/{case_id}/uploads``: 204 with ``Tus-Version``, ``Tus-Extension``,
  ``Tus-Max-Size`` (the tenant's upload limit) and ``Tus-Checksum-Algorithm`` (md5, sha1, sha256).
* ``POST /cases/{case_id}/uploads`` with ``Upload-Length`` (``Upload-Defer-Length`` is not supported)
  and optionally ``Upload-Metadata`` (the file's name in ``filename``, or ``name``, base64; else
  ``X-AIMA-Filename``; ``analysis``: ``now``, the default, analyses the completed file at once,
  ``job`` stores and audits it but announces nothing, so that a job submitted for it afterwards
  starts it; another value is a 400): 201 with ``Location``
  (``/cases/{case_id}/uploads/{upload_id}``), ``Upload-Offset: 0`` and a small JSON body (upload
  id, offset, length).
* ``HEAD .../uploads/{id}``: ``Upload-Offset``, ``Upload-Length``, ``Upload-Metadata`` as sent,
  ``Cache-Control: no-store``.
* ``PATCH .../uploads/{id}`` with ``Content-Type: application/offset+octet-stream``,
  ``Upload-Offset`` (must be the current offset: else 409 with the current ``Upload-Offset``) and
  optionally ``Upload-Checksum: <algorithm> <base64 digest>`` of the body (460 on a mismatch, and
  nothing of the body is kept): 204 with the new ``Upload-Offset``. A body of any size is taken
  (see `functions.ingest.core` for how it becomes object-store parts); one cut off keeps what
  arrived unless it carried a checksum. A request racing another at the same offset gets 409.
* ``DELETE .../uploads/{id}``: 204; the upload's bytes are gone (a completed upload's file stays,
  only the upload is forgotten). While the upload is being completed: 409.

**The result.** The ``PATCH`` that delivers the last byte answers 204 like every other (tus), with
the stored file in headers: ``X-AIMA-Media-Id``, ``X-AIMA-SHA256`` and, when the case already held
the same bytes, ``X-AIMA-Duplicate-Of`` (then ``X-AIMA-Media-Id`` is that existing file). The upload
keeps its result: ``HEAD`` answers ``Upload-Offset`` = ``Upload-Length`` and the same headers, and so
does an empty ``PATCH`` at the full length. While the file is being assembled and registered
(``Upload-Offset`` = ``Upload-Length``, no ``X-AIMA-Media-Id`` yet) an empty ``PATCH`` at the full
length answers 409; if completing failed, that empty ``PATCH`` completes the upload again.

Every error is ``application/problem+json`` with a specific ``type``: unsupported media 415, too
large 413, too many files 413, offset mismatch 409, checksum mismatch 460, unsupported tus version
412, unknown case or upload 404, refused credentials 401/403.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import logging
import re
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from urllib.parse import unquote

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as ASGIScope

from aima.access.scope import Scope
from aima.config.service import ConfigService
from aima.identity.errors import InvalidToken
from aima.identity.tokens import Delegation, TokenService
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
from aima.telemetry.probes import add_probe_routes
from functions.ingest.core import (
    CHECKSUMS,
    BulkResult,
    CaseNotFound,
    Checksum,
    ChecksumMismatch,
    IncompleteBody,
    IngestCore,
    IngestResult,
    NoFiles,
    OffsetMismatch,
    Publish,
    TooLarge,
    TooManyFiles,
    UploadNotFound,
    UploadStatus,
)
from functions.ingest.sniff import ACCEPTED, UnsupportedMedia, accepted_summary
from functions.runtime.app import observe_requests, well_formed_id
from functions.runtime.multipart import MultipartFiles
from functions.runtime.problems import Problem, problem_response

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

NAME = "ingest"
AUDIENCE = f"aima-function:{NAME}"
"""The audience of the delegation tokens ingest accepts."""
REQUIRES = "media.upload"
"""What a delegation must allow."""
REFUSED = "internal.refused"
"""The audit action of a refused internal call."""
ANONYMOUS = "anonymous"
"""Actor and audit chain of a refusal whose token names no one that can be trusted."""
TENANT = "X-AIMA-Tenant"
ACTOR = "X-AIMA-Actor"
FORWARDED_REQUEST_ID = "X-AIMA-Request-ID"
FILENAME = "X-AIMA-Filename"
UPLOAD_OFFSET = "Upload-Offset"
UPLOAD_LENGTH = "Upload-Length"
UPLOAD_METADATA = "Upload-Metadata"
UPLOAD_CHECKSUM = "Upload-Checksum"
TUS_RESUMABLE = "Tus-Resumable"
TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,termination,checksum"
MEDIA_ID = "X-AIMA-Media-Id"
SHA256 = "X-AIMA-SHA256"
DUPLICATE_OF = "X-AIMA-Duplicate-Of"
OFFSET_STREAM = "application/offset+octet-stream"
ANALYSIS = "analysis"
"""The ``Upload-Metadata`` key that says when the file is analysed."""
ANALYSIS_NOW, ANALYSIS_JOB = "now", "job"
MAX_METADATA = 4096
"""The longest ``Upload-Metadata`` accepted (it is kept with the upload and echoed)."""
TUS_PATHS = re.compile(r"/cases/[^/]+/uploads(/[^/]+)?")
_ID = re.compile(r"[A-Za-z0-9_-]{1,36}")
T = TypeVar("T")


@dataclass(frozen=True)
class Caller:
    """A verified delegation: the tenant, actor and case a call acts in."""

    delegation: Delegation

    @property
    def tenant_id(self) -> str:
        return self.delegation.tenant_id

    @property
    def actor(self) -> str:
        return self.delegation.actor

    @property
    def case_id(self) -> str:
        return self.delegation.case_id

    def scope(self) -> Scope:
        return Scope.for_case(self.tenant_id, self.case_id, self.actor)


async def authenticate(request: Request) -> Caller:
    """The verified delegation of the call (see module docstring); a 401 or 403 problem, audited,
    otherwise."""
    forwarded = request.headers.get(FORWARDED_REQUEST_ID, "")
    if well_formed_id(forwarded):
        request.state.request_id = forwarded
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise await _refuse(request, None, "no bearer token")
    tokens: TokenService = request.app.state.tokens
    try:
        delegation = await run_in_threadpool(
            tokens.verify_delegation, token.strip(), audience=AUDIENCE, requires=REQUIRES
        )
    except InvalidToken as exc:
        raise await _refuse(request, None, exc.reason) from None
    if request.path_params.get("case_id") != delegation.case_id:
        raise await _refuse(request, delegation, "the delegation is for another case")
    for header, value in ((TENANT, delegation.tenant_id), (ACTOR, delegation.actor)):
        sent = request.headers.get(header)
        if sent is not None and sent.strip() != value:
            raise await _refuse(request, delegation, f"{header} disagrees with the delegation")
    return Caller(delegation)


async def _refuse(request: Request, delegation: Delegation | None, reason: str) -> Problem:
    """Audit a refused call and return its problem: 401 without a valid delegation, else 403."""
    path_case = request.path_params.get("case_id")
    route = getattr(request.scope.get("route"), "path", request.url.path)
    detail: dict[str, Any] = {"reason": reason, "route": f"{request.method} {route}"}
    if delegation is not None:
        detail |= {"delegated_case": delegation.case_id, "delegate": delegation.delegate}
    audit: AuditLog = request.app.state.audit
    try:
        await run_in_threadpool(
            audit.record_now,
            tenant_id=delegation.tenant_id if delegation else ANONYMOUS,
            actor=delegation.actor if delegation else ANONYMOUS,
            action=REFUSED,
            outcome="denied",
            case_id=path_case if path_case and _ID.fullmatch(path_case) else None,
            request_id=getattr(request.state, "request_id", None),
            client=request.client.host if request.client else None,
            detail=detail,
        )
    except Exception:
        log.exception("the refusal of an internal call could not be audited", extra=detail)
    log.warning("internal call refused: %s", reason, extra={"route": detail["route"]})
    if delegation is None:
        headers = {"WWW-Authenticate": 'Bearer realm="aima-internal", error="invalid_token"'}
        return Problem(
            401,
            "delegation-required",
            "Delegation required",
            f"This internal endpoint needs a delegation token for {AUDIENCE}; {reason}.",
            headers=headers,
        )
    return Problem(
        403, "delegation-mismatch", "Delegation mismatch", f"The call is not what was delegated: {reason}."
    )


Authenticated = Annotated[Caller, Depends(authenticate)]


def build_core(settings: Settings, *, bus_publish: Publish) -> IngestCore:
    """A core on the stores that ``settings`` name (the schema must be migrated)."""
    assert settings.cache_url is not None  # filled or required by the profile
    db = Database.from_settings(settings)
    audit = AuditLog(db)
    config = ConfigService(db, cache_from_url(settings.cache_url), audit)
    return IngestCore(
        object_store_from_settings(settings),
        MediaRepository(db),
        JobRepository(db),
        config,
        bus_publish=bus_publish,
        documents=DocumentStore.from_settings(settings),
        cases=CaseRepository(db),
        audit=audit,
    )


def create_app(
    core: IngestCore, *, tokens: TokenService, health: HealthRegistry, audit: AuditLog | None = None
) -> FastAPI:
    """The internal HTTP API over ``core`` (see module docstring), plus health and metrics. Refused
    calls are recorded in ``audit`` (default: the core's audit log)."""
    audit = audit or core.audit
    if audit is None:
        raise ValueError("the ingest app needs an audit log for the calls it refuses")
    app = FastAPI(title=f"aima-{NAME}", openapi_url=None, docs_url=None, redoc_url=None)
    observe_requests(app, NAME)
    app.add_middleware(_TusResumable)
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
    app.state.tokens = tokens
    app.state.audit = audit

    @app.post("/cases/{case_id}/media")
    async def upload(case_id: str, request: Request, caller: Authenticated) -> JSONResponse:
        stored = core.store(
            caller.scope(),
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
        files = MultipartFiles(request.stream(), params[b"boundary"]).files()
        outcome = await _run(core.bulk(caller.scope(), case_id, files))
        return JSONResponse(_bulk(outcome), status_code=201)

    @app.options("/cases/{case_id}/uploads")
    async def capabilities(case_id: str, caller: Authenticated) -> Response:
        limit = await _run(core.max_upload_bytes(caller.scope(), case_id))
        headers = {
            "Tus-Version": TUS_VERSION,
            "Tus-Extension": TUS_EXTENSIONS,
            "Tus-Max-Size": str(limit),
            "Tus-Checksum-Algorithm": ",".join(sorted(CHECKSUMS)),
        }
        return Response(status_code=204, headers=headers)

    @app.post("/cases/{case_id}/uploads")
    async def begin(case_id: str, request: Request, caller: Authenticated) -> JSONResponse:
        if "upload-defer-length" in request.headers:
            raise Problem(
                400,
                "invalid-header",
                "Invalid header",
                "Upload-Defer-Length is not supported; send Upload-Length.",
            )
        length = _int_header(request, UPLOAD_LENGTH)
        if length is None:
            raise _bad_header(UPLOAD_LENGTH)
        raw = request.headers.get(UPLOAD_METADATA)
        metadata = parse_metadata(raw) if raw is not None else {}
        named = _metadata_text(metadata, "filename") or _metadata_text(metadata, "name")
        analysis = _analysis(metadata)
        _require_tus(request)  # after the malformed (400), so that a request with both is a 400
        begun = core.begin(
            caller.scope(),
            case_id,
            filename=named if named is not None else _filename(request),
            length=length,
            metadata=raw.strip() if raw and raw.strip() else None,
            announce=analysis == ANALYSIS_NOW,
        )
        upload_id = await _run(begun)
        headers = {"Location": f"/cases/{case_id}/uploads/{upload_id}", UPLOAD_OFFSET: "0"}
        body = {"upload_id": upload_id, "offset": 0, "length": length}
        return JSONResponse(body, status_code=201, headers=headers)

    @app.head("/cases/{case_id}/uploads/{upload_id}")
    async def offset(upload_id: str, request: Request, caller: Authenticated) -> Response:
        _require_tus(request)
        status = await _run(core.status(caller.scope(), upload_id))
        return Response(status_code=200, headers=_status_headers(status))

    @app.patch("/cases/{case_id}/uploads/{upload_id}")
    async def append(upload_id: str, request: Request, caller: Authenticated) -> Response:
        media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media_type != OFFSET_STREAM:
            detail = f"Send the bytes as {OFFSET_STREAM}."
            raise Problem(415, "unsupported-content-type", "Unsupported content type", detail)
        at = _int_header(request, UPLOAD_OFFSET)
        if at is None:
            raise _bad_header(UPLOAD_OFFSET)
        checksum = _checksum(request)
        _require_tus(request)
        size = _int_header(request, "Content-Length")
        appended = await _run(
            core.append(caller.scope(), upload_id, at, request.stream(), size=size, checksum=checksum)
        )
        headers = {UPLOAD_OFFSET: str(appended.offset), **_result_headers(appended.result)}
        return Response(status_code=204, headers=headers)

    @app.delete("/cases/{case_id}/uploads/{upload_id}")
    async def abort(upload_id: str, request: Request, caller: Authenticated) -> Response:
        _require_tus(request)
        await _run(core.abort(caller.scope(), upload_id))
        return Response(status_code=204)

    add_probe_routes(app, health)
    return app


class _TusResumable:
    """Adds ``Tus-Resumable: 1.0.0`` to every response of the resumable-upload routes."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not TUS_PATHS.fullmatch(scope["path"]):
            await self._app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[TUS_RESUMABLE] = TUS_VERSION
            await send(message)

        await self._app(scope, receive, sending)


# --- tus headers ---------------------------------------------------------------------------------


def _require_tus(request: Request) -> None:
    """400 without ``Tus-Resumable``, 412 for another version than 1.0.0 (tus' own rule), both
    naming the version spoken in ``Tus-Version``."""
    sent = request.headers.get(TUS_RESUMABLE)
    headers = {"Tus-Version": TUS_VERSION}
    if sent is None:
        detail = f"Send {TUS_RESUMABLE}: {TUS_VERSION} with every request of the resumable protocol."
        raise Problem(400, "invalid-header", "Invalid header", detail, headers=headers)
    if sent.strip() != TUS_VERSION:
        detail = f"This server speaks tus {TUS_VERSION} only; send {TUS_RESUMABLE}: {TUS_VERSION}."
        raise Problem(412, "unsupported-tus-version", "Unsupported tus version", detail, headers=headers)


def parse_metadata(raw: str) -> dict[str, str]:
    """The pairs of an ``Upload-Metadata`` header (key -> base64 value, "" when it has none); a 400
    problem unless it is comma-separated ``key base64`` pairs with distinct keys."""
    if len(raw) > MAX_METADATA:
        raise _bad_metadata(f"at most {MAX_METADATA} characters")
    pairs: dict[str, str] = {}
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        key, _, value = item.partition(" ")
        value = value.strip()
        if not key.isascii() or not key.isprintable() or key in pairs or " " in value:
            raise _bad_metadata("comma-separated pairs of a distinct key and a base64 value")
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise _bad_metadata(f"the value of {key!r} is not base64") from None
        pairs[key] = value
    return pairs


def _metadata_text(pairs: dict[str, str], key: str) -> str | None:
    if key not in pairs:
        return None
    try:
        return base64.b64decode(pairs[key], validate=True).decode("utf-8")
    except UnicodeDecodeError:
        raise _bad_metadata(f"the value of {key!r} is not UTF-8 text") from None


def _analysis(pairs: dict[str, str]) -> str:
    """When the file is analysed: `ANALYSIS_NOW` (the default) or `ANALYSIS_JOB`; a 400 problem
    naming the key for any other value."""
    value = _metadata_text(pairs, ANALYSIS)
    if value is None:
        return ANALYSIS_NOW
    if value not in (ANALYSIS_NOW, ANALYSIS_JOB):
        raise Problem(
            400,
            "invalid-header",
            "Invalid header",
            f"{UPLOAD_METADATA} key {ANALYSIS!r} must be {ANALYSIS_NOW!r} (analyse the file at once, "
            f"the default) or {ANALYSIS_JOB!r} (store it for a job), not {value[:40]!r}.",
            extensions={"key": ANALYSIS, "allowed": [ANALYSIS_NOW, ANALYSIS_JOB]},
        )
    return value


def _bad_metadata(what: str) -> Problem:
    return Problem(400, "invalid-header", "Invalid header", f"{UPLOAD_METADATA} must be {what}.")


def _checksum(request: Request) -> Checksum | None:
    """The body's declared checksum; a 400 problem if malformed or of an unsupported algorithm."""
    raw = request.headers.get(UPLOAD_CHECKSUM)
    if raw is None:
        return None
    algorithm, _, encoded = raw.strip().partition(" ")
    algorithm = algorithm.lower()
    if algorithm not in CHECKSUMS:
        supported = ", ".join(sorted(CHECKSUMS))
        detail = f"{UPLOAD_CHECKSUM} algorithm {algorithm!r} is not supported; use one of {supported}."
        raise Problem(400, "unsupported-checksum", "Unsupported checksum algorithm", detail)
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        digest = b""
    if len(digest) != CHECKSUMS[algorithm]().digest_size:
        detail = f"{UPLOAD_CHECKSUM} must be '<algorithm> <base64 of the {algorithm} digest>'."
        raise Problem(400, "invalid-header", "Invalid header", detail)
    return Checksum(algorithm, digest)


def _status_headers(status: UploadStatus) -> dict[str, str]:
    headers = {
        UPLOAD_OFFSET: str(status.offset),
        UPLOAD_LENGTH: str(status.length),
        "Cache-Control": "no-store",
        **_result_headers(status.result),
    }
    if status.metadata:
        headers[UPLOAD_METADATA] = status.metadata
    return headers


def _result_headers(result: IngestResult | None) -> dict[str, str]:
    """The stored file of a completed upload (see module docstring), none before."""
    if result is None:
        return {}
    headers = {MEDIA_ID: result.media_id, SHA256: result.sha256}
    if result.duplicate_of is not None:
        headers[DUPLICATE_OF] = result.duplicate_of
    return headers


# --- errors --------------------------------------------------------------------------------------


def problem_for(exc: BaseException) -> Problem | None:
    """The problem an upload error is answered with; None for an unexpected error."""
    if isinstance(exc, UnsupportedMedia):
        detail = f"The file is not an accepted media format ({exc.reason}). Accepted: {accepted_summary()}."
        extensions = {"reason": exc.reason, "accepted": [entry.name for entry in ACCEPTED]}
        return Problem(415, "unsupported-media", "Unsupported media", detail, extensions=extensions)
    if isinstance(exc, TooLarge):
        return Problem(413, "too-large", "Too large", f"{exc}.", extensions={"limit": exc.limit})
    if isinstance(exc, NoFiles):
        return Problem(400, "no-files", "No files", f"{exc}.")
    if isinstance(exc, TooManyFiles):
        return Problem(413, "too-many-files", "Too many files", f"{exc}.", extensions={"limit": exc.limit})
    if isinstance(exc, OffsetMismatch):
        headers = {UPLOAD_OFFSET: str(exc.current)}
        return Problem(409, "offset-mismatch", "Offset mismatch", f"{exc}.", headers=headers)
    if isinstance(exc, ChecksumMismatch):
        return Problem(460, "checksum-mismatch", "Checksum mismatch", f"{exc}; nothing of it was kept.")
    if isinstance(exc, CaseNotFound):
        return Problem(404, "case-not-found", "Case not found", f"{exc}.")
    if isinstance(exc, UploadNotFound):
        return Problem(404, "upload-not-found", "Upload not found", f"{exc}.")
    if isinstance(exc, IncompleteBody) and exc.offset is not None:
        detail = f"{exc}; what arrived was kept: continue at offset {exc.offset}."
        headers = {UPLOAD_OFFSET: str(exc.offset)}
        return Problem(400, "incomplete-body", "Incomplete body", detail, headers=headers)
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
