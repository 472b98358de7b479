"""A media file's images, blurred while they are sensitive, and its frames with their scores.

* ``GET /cases/{case_id}/media/{media_id}/thumbnail`` and ``.../preview``: the thumbnail and the
  preview strip (videos) the probe made;
* ``GET .../frames/{frame_id}``: a sampled frame (or an image file's still);
* ``GET .../crops/{frame_id}/{name}``: a face crop cut from that frame (``crops/{frame_id}/{name}``
  under the file's prefix; ``name`` is one segment ending ``.jpg``, anything else is refused);
* ``GET .../frames``: the frames with their Open-NSFW scores and whether each is served blurred.

An image whose score is at or above the tenant's ``thresholds.sensitive_blur`` (a crop: its frame's;
thumbnail and preview: the file's highest, `aima.storage.sensitivity`) is answered with its blurred
derivative (`aima.storage.blurred`), ``X-AIMA-Blurred: true`` and the score and threshold in
``X-AIMA-Sensitivity-Score`` and ``X-AIMA-Sensitivity-Threshold``; any other image as it is
(``X-AIMA-Blurred: false``; no score header if it was not scored). Every call is a ``media.read``
(members of the case, viewers and guests too, and the tenant's admins; non-members 404) with one
audit record naming the image and whether it was blurred.

Opening the original of a sensitive image is an explicit request of the same resource, ``?original=true``:
the same permission, and its one audit record is ``media.sensitive_opened`` (image, frame, score,
threshold), written before the image is sent, every time. ``?original=true`` on an image that is not
sensitive is a plain read. Unknown file, frame or image: 404 problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Path, Query, Response
from pydantic import BaseModel, Field

from aima.access.policy import Action
from aima.domain import Media, ModelRef
from aima.storage.blurred import BlurredImages, media_prefix
from aima.storage.objects import InvalidKey, ObjectNotFound, validate_key
from aima.storage.retention import PROBES
from aima.storage.sensitivity import SensitivityRepository, Verdict
from functions.api.schemas import ID_PATTERN, CaseId
from functions.api.security import Access, RouteTable, api_route, not_found

router = RouteTable(tags=["images"])

OPENED = "media.sensitive_opened"
"""The audit action of opening a sensitive image's original."""
BLURRED = "X-AIMA-Blurred"
SCORE = "X-AIMA-Sensitivity-Score"
THRESHOLD = "X-AIMA-Sensitivity-Threshold"
MEDIA = "/cases/{case_id}/media/{media_id}"
NAME_PATTERN = r"^[A-Za-z0-9_-]{1,100}\.jpg$"

MediaId = Annotated[str, Path(pattern=ID_PATTERN, description="A media file's id.")]
FrameId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,100}$", description="A frame's id.")]
CropName = Annotated[str, Path(pattern=NAME_PATTERN, description="The crop's file name, e.g. `face-0.jpg`.")]
Original = Annotated[
    bool,
    Query(
        description="`true`: the original even if the image is sensitive (an explicit opening, audited "
        "as `media.sensitive_opened`); otherwise a sensitive image is answered blurred."
    ),
]

_BINARY = {"schema": {"type": "string", "format": "binary"}}
_IMAGE: dict[int | str, Any] = {
    200: {
        "description": "The image: its blurred derivative while it is sensitive, else the original.",
        "content": {"image/jpeg": _BINARY, "image/png": _BINARY},
        "headers": {
            BLURRED: {"description": "`true`: the blurred derivative.", "schema": {"type": "string"}},
            SCORE: {
                "description": "The score that counts (absent: not scored).",
                "schema": {"type": "string"},
            },
            THRESHOLD: {"description": "The tenant's threshold.", "schema": {"type": "string"}},
        },
    }
}


@dataclass(frozen=True)
class _Image:
    """An image of a media file: its object key, its name in audit records and in a 404."""

    case_id: str
    media_id: str
    key: str
    name: str
    what: str


class FrameOut(BaseModel):
    frame_id: str
    timestamp_s: float
    score: float | None = Field(description="the Open-NSFW score (null: not scored)")
    blurred: bool = Field(description="whether the frame (and its crops) are served blurred")


class FramesOut(BaseModel):
    """A file's frames with their scores, at the tenant's current threshold."""

    media_id: str
    threshold: float
    scoring: Literal["completed", "not_run", "pending"] = Field(
        description="the newest scoring run's status (`pending`: none yet)"
    )
    reason: str | None = Field(description="why the newest run did not score")
    version: int | None = Field(description="the scores' version")
    model: ModelRef | None
    thumbnail_blurred: bool = Field(description="whether thumbnail and preview are served blurred")
    frames: list[FrameOut]


@api_route(
    router, "GET", MEDIA + "/thumbnail", action=Action.MEDIA_READ, response_class=Response, responses=_IMAGE
)
def thumbnail(case_id: CaseId, media_id: MediaId, access: Access, original: Original = False) -> Response:
    """The file's thumbnail; blurred if any of its frames is sensitive."""
    return _whole(access, case_id, media_id, "thumbnail", original)


@api_route(
    router, "GET", MEDIA + "/preview", action=Action.MEDIA_READ, response_class=Response, responses=_IMAGE
)
def preview(case_id: CaseId, media_id: MediaId, access: Access, original: Original = False) -> Response:
    """The video's preview strip; blurred if any of its frames is sensitive."""
    return _whole(access, case_id, media_id, "preview", original)


@api_route(router, "GET", MEDIA + "/frames", action=Action.MEDIA_READ)
def list_frames(case_id: CaseId, media_id: MediaId, access: Access) -> FramesOut:
    """The file's frames in time order, each with its score and whether it is served blurred."""
    probe = _probe(access, case_id, media_id)
    tenant_id = access.subject.tenant_id
    threshold = _threshold(access)
    results = SensitivityRepository(access.services.stores.documents)
    newest = results.latest(tenant_id, case_id, media_id)
    scored = results.latest_completed(tenant_id, case_id, media_id)
    top = scored.highest() if scored else None
    frames = []
    for frame in sorted(probe.get("frames") or [], key=lambda f: (f["timestamp_s"], f["frame_id"])):
        score = scored.score_of(frame["frame_id"]) if scored else None
        frames.append(
            FrameOut(
                frame_id=frame["frame_id"],
                timestamp_s=frame["timestamp_s"],
                score=score,
                blurred=Verdict(score, threshold).sensitive,
            )
        )
    access.audit(object=f"media/{media_id}/frames", detail={"frames": len(frames)})
    return FramesOut(
        media_id=media_id,
        threshold=threshold,
        scoring=newest.status if newest else "pending",
        reason=newest.reason if newest else None,
        version=scored.version if scored else None,
        model=scored.model if scored else None,
        thumbnail_blurred=Verdict(top.score if top else None, threshold).sensitive,
        frames=frames,
    )


@api_route(
    router,
    "GET",
    MEDIA + "/frames/{frame_id}",
    action=Action.MEDIA_READ,
    response_class=Response,
    responses=_IMAGE,
)
def frame(
    case_id: CaseId, media_id: MediaId, frame_id: FrameId, access: Access, original: Original = False
) -> Response:
    """A frame; blurred while it is sensitive."""
    probe = _probe(access, case_id, media_id)
    found = next((f for f in probe.get("frames") or [] if f.get("frame_id") == frame_id), None)
    if found is None:
        raise not_found("frame")
    image = _Image(case_id, media_id, str(found["object_key"]), f"frames/{frame_id}", "frame")
    return _serve(access, image, _frame_verdict(access, case_id, media_id, frame_id), original)


@api_route(
    router,
    "GET",
    MEDIA + "/crops/{frame_id}/{name}",
    action=Action.MEDIA_READ,
    response_class=Response,
    responses=_IMAGE,
)
def crop(
    case_id: CaseId,
    media_id: MediaId,
    frame_id: FrameId,
    name: CropName,
    access: Access,
    original: Original = False,
) -> Response:
    """A face crop cut from a frame; blurred while that frame is sensitive."""
    probe = _probe(access, case_id, media_id)
    if not any(f.get("frame_id") == frame_id for f in probe.get("frames") or []):
        raise not_found("frame")  # a crop is judged by its frame: one the file does not have is none
    try:
        key = validate_key(f"{media_prefix(case_id, media_id)}/crops/{frame_id}/{name}")
    except InvalidKey:
        raise not_found("crop") from None
    image = _Image(case_id, media_id, key, f"crops/{frame_id}/{name}", "crop")
    return _serve(access, image, _frame_verdict(access, case_id, media_id, frame_id), original)


def _whole(
    access: Access, case_id: str, media_id: str, kind: Literal["thumbnail", "preview"], original: bool
) -> Response:
    """The thumbnail or the preview, judged by the file's highest frame score."""
    probe = _probe(access, case_id, media_id)
    key = probe.get(kind)
    if not key:
        raise not_found(kind)
    verdict = media_verdict(access, case_id, media_id)
    return _serve(access, _Image(case_id, media_id, str(key), kind, kind), verdict, original)


def _serve(access: Access, image: _Image, verdict: Verdict, original: bool) -> Response:
    """Answer the image: blurred if it is sensitive, unless its opening was asked for (audited)."""
    objects = access.services.stores.objects
    blurred = verdict.sensitive and not original
    try:
        if blurred:
            body = BlurredImages(objects).blurred(image.case_id, image.media_id, image.key)
            content_type = "image/jpeg"
        else:
            content_type = objects.stat(image.key).content_type or "image/jpeg"
            body = b"".join(objects.get(image.key))
    except (ObjectNotFound, InvalidKey):
        raise not_found(image.what) from None
    detail: dict[str, Any] = {
        "image": image.name,
        "blurred": blurred,
        "frame_id": verdict.frame_id,
        "score": verdict.score,
    }
    where = f"media/{image.media_id}/{image.name}"
    if verdict.sensitive and original:
        access.audit(action=OPENED, object=where, detail=detail | {"threshold": verdict.threshold})
    else:
        access.audit(object=where, detail=detail)
    headers = {BLURRED: "true" if blurred else "false", THRESHOLD: f"{verdict.threshold:g}"}
    if verdict.score is not None:
        headers[SCORE] = f"{verdict.score:.6f}"
    return Response(body, media_type=content_type, headers=headers)


def case_media(access: Access, case_id: str, media_id: str) -> Media:
    """The file, if it is of this case and visible to the caller; 404 otherwise."""
    access.require_case()
    media = access.services.media.get(access.scope, media_id)
    if media is None or media.case_id != case_id:
        raise not_found("media file")
    return media


def media_verdict(access: Access, case_id: str, media_id: str) -> Verdict:
    """The whole file's verdict (its highest frame score) at the tenant's current threshold."""
    results = SensitivityRepository(access.services.stores.documents)
    return results.media_verdict(access.subject.tenant_id, case_id, media_id, _threshold(access))


def _probe(access: Access, case_id: str, media_id: str) -> dict[str, Any]:
    """The file's probe document (its frames, thumbnail and preview); 404 for an unknown file."""
    case_media(access, case_id, media_id)
    where = {"_id": media_id, "tenant_id": access.subject.tenant_id, "case_id": case_id}
    probe = access.services.stores.documents.find_one(PROBES, where)
    if probe is None:
        raise not_found("image (the file is not probed yet)")
    return dict(probe)


def _frame_verdict(access: Access, case_id: str, media_id: str, frame_id: str) -> Verdict:
    results = SensitivityRepository(access.services.stores.documents)
    return results.frame_verdict(access.subject.tenant_id, case_id, media_id, frame_id, _threshold(access))


def _threshold(access: Access) -> float:
    """The tenant's current ``thresholds.sensitive_blur``."""
    return access.services.config.effective(access.subject.tenant_id).thresholds.sensitive_blur
