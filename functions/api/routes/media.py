"""Uploads into a case, relayed to the ingest function (authorised and audited here, stored there).

Bodies stream through: the gateway passes ``request.stream()`` on and never holds a whole file, so
these paths are exempt from the gateway's JSON body limit (`UPLOAD_PATHS`; ingest enforces the
tenant's upload limits). Only after authorising ``media.upload`` on the case does the gateway call
ingest, with a delegation token bound to the user, tenant and case (`functions.api.forwarding`).
Ingest's status, the upload headers and its problem+json bodies are relayed unchanged, a
``Location`` rewritten to the public path; ingest unreachable answers 503. Each call writes one
audit record: ``allowed`` when ingest accepted it, ``failed`` with ingest's problem type otherwise.

* ``POST /cases/{case_id}/media``: the raw body is one file (name in ``X-AIMA-Filename``,
  percent-encoded); 201, or 200 with ``duplicate_of`` when the case holds the same bytes;
* ``POST /cases/{case_id}/media:bulk``: ``multipart/form-data``, one file per part with a filename
  (``files``);
* resumable uploads, **tus 1.0.0** (core, creation, termination, checksum): ``OPTIONS`` and
  ``POST /cases/{case_id}/uploads``, then ``HEAD``/``PATCH``/``DELETE
  /cases/{case_id}/uploads/{upload_id}`` as `functions.ingest.app` describes; a standard tus client
  pointed at ``/api/v1/cases/{case_id}/uploads`` with its Bearer token works unchanged. The
  ``PATCH`` that completes the file answers 204 like any other, the stored file in
  ``X-AIMA-Media-Id``, ``X-AIMA-SHA256`` and (for a duplicate) ``X-AIMA-Duplicate-Of``; ``HEAD``
  reports the same once the upload completed. Every response of these routes, the gateway's own
  refusals (401, 403, 404, 429, 503) included, carries ``Tus-Resumable: 1.0.0``.

The headers each route reads are declared as OpenAPI header parameters, and the bulk body as
``multipart/form-data`` with an array of binary files, so generated clients and fuzzers can call
them; ingest validates them (400; 412 for another tus version).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import FastAPI, Path, Request, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as ASGIScope

from aima.access.policy import Action
from functions.api.forwarding import IngestUnavailable
from functions.api.problems import Problem, problem_responses
from functions.api.schemas import BulkUploadResult, CaseId, UploadResult, UploadSession
from functions.api.security import API_PREFIX, Access, RouteTable, api_route

UPLOAD_PATHS = re.compile(re.escape(API_PREFIX) + r"/cases/[^/]+/(media|media:bulk|uploads(/[^/]+)?)")
"""The paths whose bodies stream through to ingest (exempt from the gateway's body limit)."""
TUS_ROUTES = re.compile(re.escape(API_PREFIX) + r"/cases/\{case_id\}/uploads(/\{upload_id\})?")
FILENAME = "X-AIMA-Filename"
UPLOAD_OFFSET = "Upload-Offset"
UPLOAD_LENGTH = "Upload-Length"
UPLOAD_METADATA = "Upload-Metadata"
UPLOAD_CHECKSUM = "Upload-Checksum"
TUS_RESUMABLE = "Tus-Resumable"
TUS_VERSION = "1.0.0"
MEDIA_ID = "X-AIMA-Media-Id"
SHA256 = "X-AIMA-SHA256"
DUPLICATE_OF = "X-AIMA-Duplicate-Of"
CHECKSUM_MISMATCH = 460
RELAYED = (
    "content-type",
    "location",
    "cache-control",
    "retry-after",
    "upload-offset",
    "upload-length",
    "upload-metadata",
    "tus-resumable",
    "tus-version",
    "tus-extension",
    "tus-max-size",
    "tus-checksum-algorithm",
    MEDIA_ID.lower(),
    SHA256.lower(),
    DUPLICATE_OF.lower(),
)
"""Headers of ingest's answer passed to the client."""


class _UploadRoutes(RouteTable):
    """The routes of this module; the tus routes answer every response with ``Tus-Resumable``."""

    def install(self, app: FastAPI, prefix: str = "") -> None:
        super().install(app, prefix)
        for route in app.router.routes:
            if isinstance(route, APIRoute) and TUS_ROUTES.fullmatch(route.path):
                route.app = _TusResumable(route.app)


class _TusResumable:
    """A route's ASGI app whose every response (problems of the gateway's own included) says
    ``Tus-Resumable: 1.0.0``."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[TUS_RESUMABLE] = TUS_VERSION
            await send(message)

        await self._app(scope, receive, sending)


router = _UploadRoutes(tags=["media"])

UploadId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="A resumable upload's id.")]

# --- OpenAPI: the headers each route reads and answers ---------------------------------------------

_COUNT = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}


def _header(name: str, description: str, schema: dict[str, Any], *, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": required, "description": description, "schema": schema}


_TUS = _header(
    TUS_RESUMABLE,
    f"The tus protocol version the client speaks: `{TUS_VERSION}`; another is answered 412, a request "
    "without it 400 (both with `Tus-Version`).",
    {"type": "string", "default": TUS_VERSION, "example": TUS_VERSION},
    required=True,
)
_FILENAME = _header(
    FILENAME,
    "The file's name, percent-encoded (UTF-8); recorded cleaned (the last path segment, no control "
    "characters, at most 255 characters). Metadata only: it never names a stored object.",
    {"type": "string"},
)
_LENGTH = _header(UPLOAD_LENGTH, "The size of the whole file in bytes.", _COUNT, required=True)
_METADATA = _header(
    UPLOAD_METADATA,
    "tus metadata: comma-separated `key base64(value)` pairs; `filename` (or `name`) names the file; "
    "`analysis` is `now` (the default: analysed once stored) or `job` (waits for a job naming it).",
    {"type": "string", "maxLength": 4096},
)
_OFFSET = _header(
    UPLOAD_OFFSET, "Where this body starts: the upload's current offset (`HEAD`).", _COUNT, required=True
)
_CHECKSUM = _header(
    UPLOAD_CHECKSUM,
    "`<algorithm> <base64 digest>` of this body (md5, sha1 or sha256); a mismatch answers 460 and "
    "nothing of the body is kept.",
    {"type": "string", "pattern": r"^(md5|sha1|sha256) [A-Za-z0-9+/]+={0,2}$"},
)


def _answer(description: str) -> dict[str, Any]:
    return {"description": description, "schema": {"type": "string"}}


_ANSWERS: dict[str, dict[str, Any]] = {
    TUS_RESUMABLE: {"description": "The tus version of the answer.", "schema": {"type": "string"}},
    UPLOAD_OFFSET: {"description": "Bytes received so far.", "schema": _COUNT},
    UPLOAD_LENGTH: {"description": "The file's size.", "schema": _COUNT},
    UPLOAD_METADATA: _answer("The metadata the upload was created with."),
    "Cache-Control": _answer("`no-store`."),
    MEDIA_ID: _answer("Once complete: the stored file (for a duplicate, the file it duplicates)."),
    SHA256: _answer("Once complete: the file's SHA-256."),
    DUPLICATE_OF: _answer("Once complete, if the case held these bytes already: that file."),
    "Location": _answer("The new upload's URL."),
    "Tus-Version": _answer("The tus versions spoken: `1.0.0`."),
    "Tus-Extension": _answer("`creation,termination,checksum`."),
    "Tus-Max-Size": {"description": "The largest file the tenant may upload.", "schema": _COUNT},
    "Tus-Checksum-Algorithm": _answer("`md5,sha1,sha256`."),
}


def _answering(*names: str) -> dict[str, Any]:
    return {name: _ANSWERS[name] for name in names}


def _problems(*statuses: int) -> dict[int | str, Any]:
    """Problem responses that also carry ``Tus-Resumable`` (and 409/400 the current offset)."""
    found = problem_responses(*(status for status in statuses if status != CHECKSUM_MISMATCH))
    if CHECKSUM_MISMATCH in statuses:  # tus' own status, unknown to http.HTTPStatus
        found[CHECKSUM_MISMATCH] = {
            **problem_responses(400)[400],
            "description": "Checksum Mismatch (tus): nothing of the body was kept.",
        }
    for status, response in found.items():
        names = (TUS_RESUMABLE, UPLOAD_OFFSET) if status in (400, 409) else (TUS_RESUMABLE,)
        found[status] = {**response, "headers": _answering(*names)}
    return found


_BINARY = {"schema": {"type": "string", "format": "binary"}}
_BULK_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "files": {
                        "type": "array",
                        "items": {"type": "string", "format": "binary"},
                        "description": "The files; each part's filename is recorded (metadata only).",
                    }
                },
                "required": ["files"],
            },
            "encoding": {"files": {"contentType": "application/octet-stream"}},
        }
    },
}


def _body(media_type: str) -> dict[str, Any]:
    return {"required": True, "content": {media_type: _BINARY}}


# --- routes ------------------------------------------------------------------------------------------


@api_route(
    router,
    "POST",
    "/cases/{case_id}/media",
    action=Action.MEDIA_UPLOAD,
    status_code=201,
    response_class=Response,
    responses={
        201: {"model": UploadResult, "description": "Stored."},
        200: {"model": UploadResult, "description": "The case holds these bytes already (duplicate_of)."},
        **problem_responses(409, 415),
    },
    openapi_extra={"parameters": [_FILENAME], "requestBody": _body("application/octet-stream")},
)
async def upload_media(case_id: CaseId, request: Request, access: Access) -> Response:
    """Upload one file as the raw body; its name in ``X-AIMA-Filename`` (percent-encoded)."""
    return await _relay(
        access, request, "POST", f"/cases/{case_id}/media", ("content-length", FILENAME), body=True
    )


@api_route(
    router,
    "POST",
    "/cases/{case_id}/media:bulk",
    action=Action.MEDIA_UPLOAD,
    status_code=201,
    response_class=Response,
    responses={
        201: {"model": BulkUploadResult, "description": "One entry per file."},
        **problem_responses(400, 415),
    },
    openapi_extra={"requestBody": _BULK_BODY},
)
async def upload_bulk(case_id: CaseId, request: Request, access: Access) -> Response:
    """Upload several files as ``multipart/form-data`` (one per ``files`` part) under one parent job."""
    path = f"/cases/{case_id}/media:bulk"
    return await _relay(access, request, "POST", path, ("content-length", "content-type"), body=True)


@api_route(
    router,
    "OPTIONS",
    "/cases/{case_id}/uploads",
    action=Action.MEDIA_UPLOAD,
    status_code=204,
    response_class=Response,
    responses={
        204: {
            "description": "What this tus server supports.",
            "headers": _answering(
                TUS_RESUMABLE, "Tus-Version", "Tus-Extension", "Tus-Max-Size", "Tus-Checksum-Algorithm"
            ),
        },
    },
)
async def upload_options(case_id: CaseId, request: Request, access: Access) -> Response:
    """tus discovery: the protocol versions, extensions, checksum algorithms and largest file size."""
    return await _relay(access, request, "OPTIONS", f"/cases/{case_id}/uploads", (TUS_RESUMABLE,))


@api_route(
    router,
    "POST",
    "/cases/{case_id}/uploads",
    action=Action.MEDIA_UPLOAD,
    status_code=201,
    response_class=Response,
    responses={
        201: {
            "model": UploadSession,
            "description": "Opened; ``Location`` is the upload's URL.",
            "headers": _answering(TUS_RESUMABLE, "Location", UPLOAD_OFFSET),
        },
        **_problems(400, 412, 413, 415),
    },
    openapi_extra={"parameters": [_TUS, _LENGTH, _METADATA, _FILENAME]},
)
async def begin_upload(case_id: CaseId, request: Request, access: Access) -> Response:
    """tus creation: open a resumable upload of ``Upload-Length`` bytes (name in ``Upload-Metadata``
    ``filename``, or ``X-AIMA-Filename``)."""
    sent = (TUS_RESUMABLE, UPLOAD_LENGTH, "Upload-Defer-Length", UPLOAD_METADATA, FILENAME)
    return await _relay(access, request, "POST", f"/cases/{case_id}/uploads", sent)


@api_route(
    router,
    "HEAD",
    "/cases/{case_id}/uploads/{upload_id}",
    action=Action.MEDIA_UPLOAD,
    response_class=Response,
    responses={
        200: {
            "description": "Where the upload stands (no body); once complete, the stored file.",
            "headers": _answering(
                TUS_RESUMABLE,
                UPLOAD_OFFSET,
                UPLOAD_LENGTH,
                UPLOAD_METADATA,
                "Cache-Control",
                MEDIA_ID,
                SHA256,
                DUPLICATE_OF,
            ),
        },
        **_problems(400, 412),
    },
    openapi_extra={"parameters": [_TUS]},
)
async def upload_offset(case_id: CaseId, upload_id: UploadId, request: Request, access: Access) -> Response:
    """The upload's offset and length, to resume from (and its result once complete)."""
    path = f"/cases/{case_id}/uploads/{upload_id}"
    return await _relay(access, request, "HEAD", path, (TUS_RESUMABLE,))


@api_route(
    router,
    "PATCH",
    "/cases/{case_id}/uploads/{upload_id}",
    action=Action.MEDIA_UPLOAD,
    status_code=204,
    response_class=Response,
    responses={
        204: {
            "description": "Taken; ``Upload-Offset`` is the new offset. The body that completes the file "
            "also names the stored file (``X-AIMA-Media-Id``...).",
            "headers": _answering(TUS_RESUMABLE, UPLOAD_OFFSET, MEDIA_ID, SHA256, DUPLICATE_OF),
        },
        **_problems(400, 409, 412, 413, 415, CHECKSUM_MISMATCH),
    },
    openapi_extra={
        "parameters": [_TUS, _OFFSET, _CHECKSUM],
        "requestBody": _body("application/offset+octet-stream"),
    },
)
async def append_upload(case_id: CaseId, upload_id: UploadId, request: Request, access: Access) -> Response:
    """Send bytes at ``Upload-Offset``; what arrives of a body that is cut off is kept (unless it
    carried ``Upload-Checksum``): ask ``HEAD`` where to go on."""
    path = f"/cases/{case_id}/uploads/{upload_id}"
    sent = ("content-length", "content-type", TUS_RESUMABLE, UPLOAD_OFFSET, UPLOAD_CHECKSUM)
    return await _relay(access, request, "PATCH", path, sent, body=True)


@api_route(
    router,
    "DELETE",
    "/cases/{case_id}/uploads/{upload_id}",
    action=Action.MEDIA_UPLOAD,
    status_code=204,
    response_class=Response,
    responses={
        204: {
            "description": "tus termination: the upload's bytes are gone (a completed upload's file "
            "stays; only the upload is forgotten).",
            "headers": _answering(TUS_RESUMABLE),
        },
        **_problems(400, 409, 412),
    },
    openapi_extra={"parameters": [_TUS]},
)
async def abort_upload(case_id: CaseId, upload_id: UploadId, request: Request, access: Access) -> Response:
    """End a resumable upload and drop what it received."""
    path = f"/cases/{case_id}/uploads/{upload_id}"
    return await _relay(access, request, "DELETE", path, (TUS_RESUMABLE,))


async def _relay(
    access: Access, request: Request, method: str, path: str, headers: Iterable[str], *, body: bool = False
) -> Response:
    """Forward the request to ingest, audit the outcome, and answer with ingest's answer."""
    sent = {name: request.headers[name] for name in headers if name in request.headers}
    try:
        answer = await access.services.ingest.send(
            method,
            path,
            tenant_id=access.subject.tenant_id,
            actor=access.subject.user_id,
            case_id=access.case_id,
            request_id=access.info.request_id,
            headers=sent,
            content=request.stream() if body else None,
        )
    except IngestUnavailable as exc:
        detail = "The upload service is unavailable; try again shortly."
        raise Problem(
            503, "ingest-unavailable", "Service unavailable", detail, headers={"Retry-After": "5"}
        ) from exc
    except ClientDisconnect:
        raise Problem(400, "incomplete-body", "Incomplete body", "The body was cut off.") from None
    await run_in_threadpool(_audit, access, path, answer.status_code, answer.headers, answer.content)
    relayed = {name: answer.headers[name] for name in RELAYED if name in answer.headers}
    location = relayed.get("location")
    if location is not None and location.startswith("/cases/"):
        relayed["location"] = API_PREFIX + location
    content = b"" if method == "HEAD" or answer.status_code == 204 else answer.content
    return Response(content, status_code=answer.status_code, headers=relayed)


def _audit(access: Access, path: str, status: int, headers: Any, content: bytes) -> None:
    """One record: what ingest stored (media, upload), or the problem it answered."""
    parsed = _json(content) if content and headers.get("content-type", "").endswith("json") else {}
    if status >= 400:
        kind = str(parsed.get("type", f"http-{status}")).rpartition(":")[2]
        access.audit(outcome="failed", object=path.lstrip("/"), detail={"status": status, "error": kind})
        return
    detail: dict[str, Any] = {"status": status}
    obj = path.lstrip("/")
    media_id = parsed.get("media_id") or headers.get(MEDIA_ID.lower())
    if media_id:
        obj = f"media/{media_id}"
        if "media_id" in parsed:
            detail |= {key: parsed.get(key) for key in ("sha256", "size", "duplicate_of")}
        else:
            detail |= {
                "sha256": headers.get(SHA256.lower()),
                "duplicate_of": headers.get(DUPLICATE_OF.lower()),
            }
    elif "upload_id" in parsed:
        obj = f"{obj}/{parsed['upload_id']}"
    elif "parent_job_id" in parsed:
        results = parsed.get("results") or []
        detail |= {
            "parent_job_id": parsed["parent_job_id"],
            "media": [e["result"]["media_id"] for e in results if e.get("result")],
            "refused": sum(1 for e in results if e.get("status") == "refused"),
        }
    if UPLOAD_OFFSET.lower() in headers:
        detail["offset"] = headers[UPLOAD_OFFSET.lower()]
    access.audit(object=obj, detail=detail)


def _json(content: bytes) -> dict[str, Any]:
    try:
        value = json.loads(content)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
