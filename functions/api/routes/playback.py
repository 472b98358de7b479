"""A media file's own bytes for the review workspace's player, through a short-lived signed URL.

* ``POST /cases/{case_id}/media/{media_id}/playback`` (``media.read``: every member and the tenant's
  admins; non-members 404): a playback ticket (`aima.identity.playback`) as the URL of the file's
  content, valid `aima.identity.playback.PLAYBACK_TTL_S` seconds. A file whose highest frame score is
  at or above the tenant's ``thresholds.sensitive_blur`` gets no URL (``url: null``,
  ``sensitive: true``) unless the body asks for its original (``{"original": true}``): an explicit
  opening, audited as ``media.sensitive_opened`` every time, as opening a sensitive image is
  (`functions.api.routes.images`). Any other issue is one ``media.read`` record with the object
  ``media/<id>/original``.
* ``GET /cases/{case_id}/media/{media_id}/content?ticket=...``: the file as stored, for a ``<video>`` or
  ``<audio>`` element (which cannot send a bearer token). Authenticated by its ticket, which must be
  for exactly this file; the user's membership is read again on every request, so a removed member's
  ticket stops working at once. ``Range: bytes=a-b`` is answered 206 with ``Content-Range``, a range
  beyond the end 416, anything else 200 whole (`functions.api.byte_ranges`). A file that became
  sensitive after the ticket was issued is refused (403) unless the ticket was an opening. The
  requests of one playback are covered by the audited issue of its ticket and are not audited one by
  one (a player makes many); a refused ticket is audited as a failed authentication.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from aima.access.policy import Action
from aima.domain import Media
from aima.identity.errors import InvalidToken
from aima.storage.objects import InvalidKey, ObjectNotFound
from aima.storage.sensitivity import Verdict
from functions.api.byte_ranges import Unsatisfiable, parse_range
from functions.api.problems import Problem, problem_responses
from functions.api.routes.images import MEDIA, OPENED, MediaId, case_media, media_verdict
from functions.api.schemas import CaseId
from functions.api.security import API_PREFIX, Access, Gate, RequestInfo, RouteTable, api_route, not_found

router = RouteTable(tags=["images"])

INVALID_TICKET = 'Bearer error="invalid_token"'

Ticket = Annotated[
    str,
    Query(
        min_length=1,
        max_length=4096,
        description="The playback ticket from `POST .../playback` (it is part of the URL that answer gives).",
    ),
]


class PlaybackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    original: bool = Field(
        default=False,
        description="`true`: play the file even if it is sensitive (an explicit opening, audited as "
        "`media.sensitive_opened`); otherwise a sensitive file gets no URL.",
    )


class PlaybackOut(BaseModel):
    """Where the player fetches the file from, until when, and whether it is sensitive."""

    media_id: str
    url: str | None = Field(description="the content URL with its ticket (null: sensitive, not opened)")
    expires_at: AwareDatetime | None = Field(description="when the URL stops working")
    content_type: str
    size: int
    sensitive: bool = Field(description="whether the file's highest frame score reaches the threshold")
    opened: bool = Field(description="whether this was an explicit, audited opening of a sensitive file")
    score: float | None = Field(description="the file's highest Open-NSFW score (null: not scored)")
    threshold: float


_CONTENT: dict[int | str, Any] = {
    200: {
        "description": "The whole file.",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    },
    206: {
        "description": "The byte range asked for (`Content-Range` says which).",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    },
    **problem_responses(401, 403, 404, 416, 422),
}


@api_route(router, "POST", MEDIA + "/playback", action=Action.MEDIA_READ)
def playback(case_id: CaseId, media_id: MediaId, body: PlaybackRequest, access: Access) -> PlaybackOut:
    """A short-lived URL the player fetches the file's bytes from; none for a sensitive file unless
    its original is asked for (audited)."""
    media = case_media(access, case_id, media_id)
    verdict = media_verdict(access, case_id, media_id)
    where = f"media/{media_id}/original"
    detail: dict[str, Any] = {"frame_id": verdict.frame_id, "score": verdict.score}
    if verdict.sensitive and not body.original:
        access.audit(object=where, detail=detail | {"playback": "withheld: sensitive"})
        return _answer(media, verdict, None, None, opened=False)
    opened = verdict.sensitive
    ticket = access.services.playback.issue(access.principal, case_id, media_id, opened=opened)
    expires_at = datetime.fromtimestamp(ticket.expires_at, UTC)
    detail |= {"playback": "issued", "expires_at": expires_at.isoformat()}
    if opened:
        access.audit(action=OPENED, object=where, detail=detail | {"threshold": verdict.threshold})
    else:
        access.audit(object=where, detail=detail)
    url = f"{API_PREFIX}/cases/{case_id}/media/{media_id}/content?ticket={ticket.token}"
    return _answer(media, verdict, url, expires_at, opened=opened)


@api_route(
    router,
    "GET",
    MEDIA + "/content",
    action=Action.PUBLIC,  # authenticated by its ticket, below
    response_class=Response,
    responses=_CONTENT,
)
def content(case_id: CaseId, media_id: MediaId, ticket: Ticket, request: Request) -> Response:
    """The file's bytes (a byte range of them), for the holder of a playback ticket for it."""
    gate = Gate.of(request)
    try:
        grant = gate.services.playback.verify(ticket, case_id=case_id, media_id=media_id)
    except InvalidToken as exc:
        raise gate.refuse(
            RequestInfo.of(request), Action.MEDIA_READ, case_id, exc.reason, INVALID_TICKET
        ) from None
    access = gate.admit(request, grant.principal, Action.MEDIA_READ)
    media = case_media(access, case_id, media_id)
    if media_verdict(access, case_id, media_id).sensitive and not grant.opened:
        raise Problem(
            403, "sensitive", "Sensitive", "The file became sensitive: open its original explicitly."
        )
    objects = access.services.stores.objects
    try:
        info = objects.stat(media.object_key)
        wanted = parse_range(request.headers.get("range"), info.size)
        start, end = (wanted.start, wanted.end) if wanted else (0, info.size)
        chunks = objects.get(media.object_key, start=start, end=end)
    except (ObjectNotFound, InvalidKey):
        raise not_found("media file content") from None
    except Unsatisfiable:
        raise Problem(
            416,
            "range-not-satisfiable",
            "Range Not Satisfiable",
            f"The file has {info.size} bytes.",
            headers={"Content-Range": f"bytes */{info.size}"},
        ) from None
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Length": str(end - start),
        "Cache-Control": "private, no-store",
        "Content-Disposition": "inline",
    }
    if info.etag:
        headers["ETag"] = f'"{info.etag.strip(chr(34))}"'
    if wanted:
        headers["Content-Range"] = wanted.content_range
    return StreamingResponse(
        chunks,
        status_code=206 if wanted else 200,
        media_type=media.content_type or info.content_type or "application/octet-stream",
        headers=headers,
    )


def _answer(
    media: Media, verdict: Verdict, url: str | None, expires_at: datetime | None, *, opened: bool
) -> PlaybackOut:
    return PlaybackOut(
        media_id=media.id,
        url=url,
        expires_at=expires_at,
        content_type=media.content_type,
        size=media.size,
        sensitive=verdict.sensitive,
        opened=opened,
        score=verdict.score,
        threshold=verdict.threshold,
    )
