"""A case's reports: the signed, versioned `aima.reports.model.CaseReport` the fuse step stores, read,
exported and asked for again.

* ``GET /cases/{case_id}/reports``: the stored versions, oldest first (`ReportVersion`: version, report
  id, when, the job, counts of files, persons, indicators and gaps, whether it is partial);
* ``GET .../reports/{version}``: one version as JSON (``latest`` names the newest);
* ``GET .../reports/{version}/export?format=...``: one rendering (`aima.reports.exports.render`:
  ``json``, ``csv-timeline``, ``csv-indicators``, ``csv-persons``, ``html``, ``pdf``) with its media type
  and ``Content-Disposition: attachment; filename="<case>-report-v<N>[-table].<ext>"``. Pictures in the
  HTML and the PDF are the file thumbnails and person crops, blurred for a file scored sensitive
  (`aima.reports.images`): an export never carries a sensitive original;
* ``POST .../reports``: 202; asks for a new version from the case's current results (after reviewer
  decisions or corrections to persons and speakers) by announcing ``io.aima.report.requested.v1``; the
  fuse function builds it, and it appears in the list (``Location``) with a version above
  ``after_version``; a case without files has nothing to report on (409).

Reading (the list and a version) needs ``case.read`` (every member, viewers and guests too, and the
tenant's admins; non-members 404) and writes one ``case.read`` record (object ``case/<id>/reports``
with the number of versions, or ``case/<id>/report/v<N>``). An export takes the case's findings out of
the platform: ``case.export`` (owners, analysts and admins; viewers and guests 403) and one
``case.export`` record naming the version and the format. Asking for a version is a change of the case:
``case.update`` (owners, analysts, admins), its record and its event written in one transaction (the
outbox), so the request is never announced unaudited nor audited unannounced. An unknown version is a
404 problem, an unknown format a 422.

Rendering a PDF takes seconds (WeasyPrint): it runs in a worker thread, one at a time per process, so
the event loop and the other requests' threads are never held by it.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Path, Query, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from aima.access.policy import Action
from aima.reports.exports import FORMATS, MEDIA_TYPES, ReportFormat, render
from aima.reports.images import ReportImages
from aima.reports.model import CaseReport
from aima.storage.objects import ObjectStore
from aima.storage.outbox import Outbox
from aima.storage.reports import ReportRepository
from aima.storage.scoped import scoped_session
from aima.telemetry.tracing import inject
from events.catalogue import ReportRequested, make_event
from functions.api.problems import Problem, problem_responses
from functions.api.schemas import CaseId
from functions.api.security import API_PREFIX, EVENT_SOURCE, Access, RouteTable, api_route, not_found

router = RouteTable(tags=["reports"])

REPORTS = "/cases/{case_id}/reports"
LATEST = "latest"
VersionRef = Annotated[
    str,
    Path(
        pattern=rf"^({LATEST}|[1-9][0-9]{{0,8}})$",
        description="A report version (1, 2, ...) or `latest` for the newest.",
        examples=["latest", "1"],
    ),
]
Format = Annotated[
    ReportFormat,
    Query(alias="format", description="The rendering: " + ", ".join(f"`{f}`" for f in FORMATS) + "."),
]
_PDF = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aima-report-pdf")
"""PDF renderings run one at a time per process, in a thread of their own: WeasyPrint's layout is
CPU-bound and not meant to run concurrently in threads, and a waiting rendering holds no thread."""


class ReportVersion(BaseModel):
    """One stored version of a case's report, without its content."""

    version: int
    report_id: str
    created_at: datetime
    job_id: str | None = Field(description="the analysis job it was built for (none: asked for later)")
    files: int
    persons: int
    indicators: int = Field(description="findings for human review")
    gaps: int = Field(description="what could not be seen or heard, and disagreements")
    partial: bool = Field(description="some file's steps did not all finish")


class ReportVersions(BaseModel):
    reports: list[ReportVersion] = Field(description="oldest first")


class ReportRequest(BaseModel):
    """A new report version was asked for; the fuse function builds it from the case's current results."""

    status: Literal["requested"] = "requested"
    case_id: str
    event_id: str = Field(description="the id of the `io.aima.report.requested.v1` event")
    requested_by: str
    after_version: int | None = Field(description="the newest version when asked (none: no report yet)")
    location: str = Field(description="where the new version will be listed")


def _export_responses() -> dict[int | str, Any]:
    content: dict[str, Any] = {}
    for fmt in FORMATS:
        media_type = MEDIA_TYPES[fmt].split(";")[0]
        schema = {"type": "object"} if media_type == "application/json" else {"type": "string"}
        if fmt == "pdf":
            schema = {"type": "string", "format": "binary"}
        content.setdefault(media_type, {"schema": schema})
    headers = {
        "Content-Disposition": {"description": 'attachment; filename="..."', "schema": {"type": "string"}}
    }
    return {
        200: {"description": "The report in the format asked for.", "content": content, "headers": headers}
    }


def _repository(access: Access) -> ReportRepository:
    return ReportRepository(access.services.stores.documents)


def _report(access: Access, case_id: str, version: str) -> CaseReport:
    """The case's report ``version`` (or the newest for ``latest``); 404 if it has none such."""
    access.require_case()
    reports = _repository(access)
    tenant_id = access.subject.tenant_id
    if version == LATEST:
        report = reports.latest(tenant_id, case_id)
        if report is None:
            raise not_found("report")
        return report
    report = reports.get(tenant_id, case_id, int(version))
    if report is None:
        raise not_found("report version")
    return report


def _summary(report: CaseReport) -> ReportVersion:
    return ReportVersion(
        version=report.version,
        report_id=report.report_id,
        created_at=report.created_at,
        job_id=report.job_id,
        files=len(report.files),
        persons=len(report.persons),
        indicators=len(report.indicators),
        gaps=len(report.gaps),
        partial=report.partial,
    )


def _object(report: CaseReport) -> str:
    return f"case/{report.case_id}/report/v{report.version}"


@api_route(router, "GET", REPORTS, action=Action.CASE_READ)
def list_reports(case_id: CaseId, access: Access) -> ReportVersions:
    """The case's report versions, oldest first, with what each holds (none yet: an empty list)."""
    access.require_case()
    reports = _repository(access)
    tenant_id = access.subject.tenant_id
    stored = [reports.get(tenant_id, case_id, n) for n in reports.versions(tenant_id, case_id)]
    found = [_summary(report) for report in stored if report is not None]
    access.audit(object=f"case/{case_id}/reports", detail={"versions": len(found)})
    return ReportVersions(reports=found)


@api_route(router, "GET", REPORTS + "/{version}", action=Action.CASE_READ)
def read_report(case_id: CaseId, version: VersionRef, access: Access) -> CaseReport:
    """One version of the case's report as JSON: files, timeline, persons, indicators with their review,
    gaps, the narrative citing them, and the signed chain of custody."""
    report = _report(access, case_id, version)
    access.audit(object=_object(report), detail={"version": report.version})
    return report


@api_route(
    router,
    "GET",
    REPORTS + "/{version}/export",
    action=Action.CASE_EXPORT,
    response_class=Response,
    responses=_export_responses(),
)
async def export_report(case_id: CaseId, version: VersionRef, fmt: Format, access: Access) -> Response:
    """One version of the case's report rendered as a download: JSON, a CSV table, HTML or PDF."""
    report = await run_in_threadpool(_report, access, case_id, version)
    objects = access.services.stores.objects
    rendering = functools.partial(_render, objects, report, fmt)
    if fmt == "pdf":
        context = contextvars.copy_context()  # the request's trace, in the rendering's logs
        body, media_type, filename = await asyncio.get_running_loop().run_in_executor(
            _PDF, functools.partial(context.run, rendering)
        )
    else:
        body, media_type, filename = await run_in_threadpool(rendering)
    audit = functools.partial(
        access.audit, object=_object(report), detail={"format": fmt, "version": report.version}
    )
    await run_in_threadpool(audit)
    disposition = f'attachment; filename="{filename}"'
    return Response(body, media_type=media_type, headers={"Content-Disposition": disposition})


def _render(objects: ObjectStore, report: CaseReport, fmt: ReportFormat) -> tuple[bytes, str, str]:
    images = ReportImages(objects, report)
    return render(report, fmt, thumbnail=images.thumbnail, crop=images.crop)


@api_route(
    router,
    "POST",
    REPORTS,
    action=Action.CASE_UPDATE,
    status_code=202,
    responses={
        202: {
            "description": "Asked for; the new version appears in the case's reports once built.",
            "headers": {
                "Location": {"description": "the case's report versions", "schema": {"type": "string"}}
            },
        },
        **problem_responses(409),
    },
)
def request_report(case_id: CaseId, access: Access, response: Response) -> ReportRequest:
    """Ask for a new report version from the case's current results (after reviewer decisions, renamed
    persons or speakers); the fuse function builds, signs and stores it."""
    access.require_case()
    services = access.services
    tenant_id, user_id = access.subject.tenant_id, access.subject.user_id
    if not services.media.list(access.scope, case_id):
        raise Problem(
            409, "no-media", "Nothing to report on", "The case has no files yet; upload media first."
        )
    versions = _repository(access).versions(tenant_id, case_id)
    after = versions[-1] if versions else None
    asked = ReportRequested(tenant_id=tenant_id, case_id=case_id, requested_by=user_id)
    event = make_event(asked, source=EVENT_SOURCE, subject=f"case/{case_id}", **inject())
    db = services.stores.db
    with scoped_session(db, access.scope) as session:
        Outbox(db).add(session, [event])
        access.audit(
            session,
            object=f"case/{case_id}/reports",
            detail={"requested": ReportRequested.TYPE, "event_id": event.id, "after_version": after},
        )
    location = f"{API_PREFIX}{REPORTS.format(case_id=case_id)}"
    response.headers["Location"] = location
    return ReportRequest(
        case_id=case_id, event_id=event.id, requested_by=user_id, after_version=after, location=location
    )
