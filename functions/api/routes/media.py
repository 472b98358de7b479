"""Uploads into a case, relayed to the ingest function (authorised and audited here, stored there).

Bodies stream through: the gateway passes ``request.stream()`` on and never holds a whole file, so
these paths are exempt from the gateway's JSON body limit (`UPLOAD_PATHS`; ingest enforces the
tenant's upload limits). Ingest's status, the upload headers and its problem+json bodies are relayed
unchanged, a ``Location`` rewritten to the public path; ingest unreachable answers 503. Each call
writes one audit record: ``allowed`` when ingest accepted it, ``failed`` with ingest's problem type
otherwise.

* ``POST /cases/{case_id}/media``: the raw body is one file (name in ``X-AIMA-Filename``,
  percent-encoded); 201, or 200 with ``duplicate_of`` when the case holds the same bytes;
* ``POST /cases/{case_id}/media:bulk``: ``multipart/form-data``, one file per part with a filename;
* tus-like resumable uploads: ``POST /cases/{case_id}/uploads`` (``Upload-Length``), then
  ``HEAD``/``PATCH``/``DELETE /cases/{case_id}/uploads/{upload_id}`` (``PATCH``: ``Content-Type:
  application/offset+octet-stream`` and ``Upload-Offset``; 204, or 200 with the result once complete).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import Path, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from aima.access.policy import Action
from functions.api.forwarding import IngestUnavailable
from functions.api.problems import Problem, problem_responses
from functions.api.schemas import BulkUploadResult, CaseId, UploadResult, UploadSession
from functions.api.security import API_PREFIX, Access, RouteTable, api_route

router = RouteTable(tags=["media"])

UPLOAD_PATHS = re.compile(re.escape(API_PREFIX) + r"/cases/[^/]+/(media|media:bulk|uploads(/[^/]+)?)")
"""The paths whose bodies stream through to ingest (exempt from the gateway's body limit)."""
FILENAME = "X-AIMA-Filename"
UPLOAD_OFFSET = "Upload-Offset"
UPLOAD_LENGTH = "Upload-Length"
RELAYED = ("content-type", "location", "upload-offset", "upload-length", "cache-control", "retry-after")
"""Headers of ingest's answer passed to the client."""

UploadId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="A resumable upload's id.")]

_BINARY = {"schema": {"type": "string", "format": "binary"}}
_UPLOAD_HEADERS = {
    UPLOAD_OFFSET: {"description": "Bytes received so far.", "schema": {"type": "integer"}},
    UPLOAD_LENGTH: {"description": "The file's size.", "schema": {"type": "integer"}},
}


def _body(media_type: str) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {media_type: _BINARY}}}


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
    openapi_extra=_body("application/octet-stream"),
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
        **problem_responses(415),
    },
    openapi_extra=_body("multipart/form-data"),
)
async def upload_bulk(case_id: CaseId, request: Request, access: Access) -> Response:
    """Upload several files as ``multipart/form-data`` under one parent job."""
    path = f"/cases/{case_id}/media:bulk"
    return await _relay(access, request, "POST", path, ("content-length", "content-type"), body=True)


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
            "headers": {
                "Location": {"schema": {"type": "string"}},
                UPLOAD_OFFSET: _UPLOAD_HEADERS[UPLOAD_OFFSET],
            },
        },
        **problem_responses(415),
    },
)
async def begin_upload(case_id: CaseId, request: Request, access: Access) -> Response:
    """Open a resumable upload of ``Upload-Length`` bytes (name in ``X-AIMA-Filename``)."""
    return await _relay(access, request, "POST", f"/cases/{case_id}/uploads", (UPLOAD_LENGTH, FILENAME))


@api_route(
    router,
    "HEAD",
    "/cases/{case_id}/uploads/{upload_id}",
    action=Action.MEDIA_UPLOAD,
    response_class=Response,
    responses={200: {"description": "Where the upload stands (no body).", "headers": _UPLOAD_HEADERS}},
)
async def upload_offset(case_id: CaseId, upload_id: UploadId, request: Request, access: Access) -> Response:
    """The upload's offset and length, to resume from."""
    return await _relay(access, request, "HEAD", f"/cases/{case_id}/uploads/{upload_id}", ())


@api_route(
    router,
    "PATCH",
    "/cases/{case_id}/uploads/{upload_id}",
    action=Action.MEDIA_UPLOAD,
    status_code=204,
    response_class=Response,
    responses={
        204: {"description": "Part stored; ``Upload-Offset`` is the new offset.", "headers": _UPLOAD_HEADERS},
        200: {"model": UploadResult, "description": "The last part: the file is stored."},
        **problem_responses(409, 415),
    },
    openapi_extra=_body("application/offset+octet-stream"),
)
async def append_upload(case_id: CaseId, upload_id: UploadId, request: Request, access: Access) -> Response:
    """Send the next part at ``Upload-Offset``; a part cut off is not kept (ask HEAD and resend)."""
    path = f"/cases/{case_id}/uploads/{upload_id}"
    sent = ("content-length", "content-type", UPLOAD_OFFSET)
    return await _relay(access, request, "PATCH", path, sent, body=True)


@api_route(
    router,
    "DELETE",
    "/cases/{case_id}/uploads/{upload_id}",
    action=Action.MEDIA_UPLOAD,
    status_code=204,
    response_class=Response,
    responses={204: {"description": "The upload ended; its parts are gone."}},
)
async def abort_upload(case_id: CaseId, upload_id: UploadId, request: Request, access: Access) -> Response:
    """End a resumable upload and drop what it received."""
    return await _relay(access, request, "DELETE", f"/cases/{case_id}/uploads/{upload_id}", ())


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
    if "media_id" in parsed:
        obj = f"media/{parsed['media_id']}"
        detail |= {key: parsed.get(key) for key in ("sha256", "size", "duplicate_of")}
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
