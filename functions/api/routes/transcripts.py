"""A media file's transcript: read as JSON in the review workspace, exported as WebVTT or SRT
subtitles (`aima.subtitles`).

* ``GET /cases/{case_id}/media/{media_id}/transcript``: the JSON document (`TranscriptExport`: the
  transcript, its versions, the case's names of its speakers, who asked for it when);
* ``GET .../transcript/versions``: the stored versions (`TranscriptVersion`: when, status, model,
  counts), oldest first, without their segments;
* ``GET .../transcript.vtt``: WebVTT (``text/vtt``), speakers as voice spans;
* ``GET .../transcript.srt``: SubRip (``application/x-subrip``), speakers as ``Name:``.

The document and the subtitles take ``?version=N`` (default: the latest) and answer as a download
(``Content-Disposition: attachment; filename="<media name>.transcript-v<N>.<ext>"``). Reading the
JSON document and the versions is reading the case's media: ``media.read`` (every member of the
case, viewers and guests too, and the tenant's admins; non-members 404), one ``media.read`` audit
record per call naming the media and the version (for the document) or the number of versions.
Subtitles are files taken out of the case, an export: ``case.export`` (owners and analysts of the
case, the tenant's admins; viewers and guests get 403, non-members 404) and one ``case.export``
record per call naming the media, the version and the format. No transcript (or no such version)
is a 404 problem; a transcript whose step did not run (``not_run``, e.g. no model configured) or
failed reads as JSON, with its status and reason, but has no subtitles: 409 with that reason.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Path, Query, Response
from pydantic import BaseModel, Field

from aima.access.policy import Action
from aima.domain import ModelRef
from aima.storage.speakers import CaseSpeakerRepository
from aima.storage.transcripts import TranscriptRepository
from aima.subtitles import MEDIA_TYPES, ExportFormat, TranscriptExport, download_name, render
from aima.transcripts import Transcript, TranscriptStatus
from functions.api.problems import Problem, problem_responses
from functions.api.schemas import ID_PATTERN, CaseId
from functions.api.security import Access, RouteTable, api_route, not_found

router = RouteTable(tags=["transcripts"])

MediaId = Annotated[str, Path(pattern=ID_PATTERN, description="A media file's id.")]
Version = Annotated[
    int | None, Query(ge=1, le=1_000_000, description="A version of the transcript (default: the latest).")
]
TRANSCRIPT = "/cases/{case_id}/media/{media_id}/transcript"


def _download(description: str, fmt: ExportFormat) -> dict[int | str, Any]:
    content: dict[str, Any] = (
        {"application/json": {"schema": {"$ref": "#/components/schemas/TranscriptExport"}}}
        if fmt == "json"
        else {MEDIA_TYPES[fmt].split(";")[0]: {"schema": {"type": "string"}}}
    )
    headers = {
        "Content-Disposition": {"description": "attachment; filename=...", "schema": {"type": "string"}}
    }
    responses: dict[int | str, Any] = {
        200: {"description": description, "content": content, "headers": headers}
    }
    if fmt == "json":
        responses[200]["model"] = TranscriptExport
    else:
        responses |= problem_responses(409)
    return responses


class TranscriptVersion(BaseModel):
    """One stored version of a media file's transcript, without its segments."""

    version: int
    created_at: datetime
    status: TranscriptStatus
    reason: str | None = Field(description="why a not-run or failed version has no segments")
    model: ModelRef | None
    duration_s: float
    speech_s: float
    segments: int = Field(description="segments: speech and unintelligible stretches")
    speech_segments: int
    speakers: int = Field(description="distinct speaker labels of the file")


@api_route(
    router,
    "GET",
    TRANSCRIPT,
    action=Action.MEDIA_READ,
    response_class=Response,
    responses=_download("The transcript (a not-run or failed one with its reason).", "json"),
)
def read_transcript(case_id: CaseId, media_id: MediaId, access: Access, version: Version = None) -> Response:
    """The transcript as JSON, with its versions and the names of its speakers (a read, for viewers too)."""
    return _export(access, case_id, media_id, version, "json")


@api_route(router, "GET", TRANSCRIPT + "/versions", action=Action.MEDIA_READ)
def transcript_versions(case_id: CaseId, media_id: MediaId, access: Access) -> list[TranscriptVersion]:
    """The transcript's stored versions, oldest first: when, status, model and counts."""
    access.require_case()
    tenant_id = access.subject.tenant_id
    transcripts = TranscriptRepository(access.services.stores.documents)
    stored = [
        transcripts.get(tenant_id, case_id, media_id, n)
        for n in transcripts.versions(tenant_id, case_id, media_id)
    ]
    found = [_version(t) for t in stored if t is not None]
    if not found:
        raise not_found("transcript")
    access.audit(object=f"media/{media_id}/transcript", detail={"versions": len(found)})
    return found


@api_route(
    router,
    "GET",
    TRANSCRIPT + ".vtt",
    action=Action.CASE_EXPORT,
    response_class=Response,
    responses=_download("WebVTT subtitles.", "vtt"),
)
def export_webvtt(case_id: CaseId, media_id: MediaId, access: Access, version: Version = None) -> Response:
    """The transcript as WebVTT subtitles: speakers, languages, English translations."""
    return _export(access, case_id, media_id, version, "vtt")


@api_route(
    router,
    "GET",
    TRANSCRIPT + ".srt",
    action=Action.CASE_EXPORT,
    response_class=Response,
    responses=_download("SubRip (SRT) subtitles.", "srt"),
)
def export_srt(case_id: CaseId, media_id: MediaId, access: Access, version: Version = None) -> Response:
    """The transcript as SRT subtitles: speakers, languages, English translations."""
    return _export(access, case_id, media_id, version, "srt")


def _export(access: Access, case_id: str, media_id: str, version: int | None, fmt: ExportFormat) -> Response:
    access.require_case()
    services = access.services
    tenant_id = access.subject.tenant_id
    transcripts = TranscriptRepository(services.stores.documents)
    if version is None:
        transcript = transcripts.latest(tenant_id, case_id, media_id)
    else:
        transcript = transcripts.get(tenant_id, case_id, media_id, version)
    if transcript is None:
        raise not_found("transcript" if version is None else "transcript version")
    if fmt != "json" and transcript.status != "completed":
        raise _not_available(transcript)
    media = services.media.get(access.scope, media_id)
    filename = media.filename if media is not None and media.case_id == case_id else None
    names = speaker_names(access, case_id)
    versions = transcripts.versions(tenant_id, case_id, media_id) if fmt == "json" else []
    body = render(transcript, fmt, names, versions=versions, exported_by=access.subject.user_id)
    access.audit(
        object=f"media/{media_id}/transcript/v{transcript.version}",
        detail={"format": fmt, "version": transcript.version},
    )
    disposition = f'attachment; filename="{download_name(transcript, fmt, filename)}"'
    return Response(body, media_type=MEDIA_TYPES[fmt], headers={"Content-Disposition": disposition})


def _version(transcript: Transcript) -> TranscriptVersion:
    return TranscriptVersion(
        **transcript.model_dump(
            include={"version", "created_at", "status", "reason", "model", "duration_s", "speech_s"}
        ),
        segments=len(transcript.segments),
        speech_segments=len(transcript.speech),
        speakers=len({s.speaker for s in transcript.segments if s.speaker}),
    )


def speaker_names(access: Access, case_id: str) -> dict[str, str]:
    """The case's names of its speakers, by case speaker id ("Speaker N" for an unnamed one)."""
    speakers = CaseSpeakerRepository(access.services.stores.documents)
    return speakers.display_names(access.subject.tenant_id, case_id)


def _not_available(transcript: Transcript) -> Problem:
    state = "was not run" if transcript.status == "not_run" else "failed"
    reason = f": {transcript.reason}" if transcript.reason else ""
    return Problem(
        409,
        f"transcript-{transcript.status.replace('_', '-')}",
        "No subtitles",
        f"Transcript version {transcript.version} {state}{reason}.",
    )
