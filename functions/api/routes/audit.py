"""The tenant's audit log, for its admins: query, export (JSON or CSV, streamed) and chain check."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from fastapi import Query
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime, BeforeValidator

from aima.access.policy import Action
from aima.storage.audit import MAX_QUERY_LIMIT
from functions.api.schemas import NO_NUL, AuditPage, AuditRecord, AuditVerification
from functions.api.security import Access, RouteTable, api_route

router = RouteTable(tags=["audit"])
ISO_8601 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")

CaseFilter = Annotated[str | None, Query(max_length=36, pattern=NO_NUL, description="Records of this case.")]
ActorFilter = Annotated[
    str | None, Query(max_length=200, pattern=NO_NUL, description="Records of this actor.")
]
ActionFilter = Annotated[str | None, Query(max_length=100, pattern=NO_NUL, description="e.g. case.read")]


def _iso_8601(value: object) -> object:
    """Only ISO 8601 text is a time here (pydantic would also read numbers as Unix times)."""
    if isinstance(value, str) and not ISO_8601.match(value):
        raise ValueError("expected an ISO 8601 date and time with a UTC offset")
    return value


Time = Annotated[AwareDatetime, BeforeValidator(_iso_8601)]
Since = Annotated[Time | None, Query(description="From this time on (inclusive), ISO 8601 with offset.")]
Until = Annotated[Time | None, Query(description="Before this time, ISO 8601 with offset.")]
MEDIA_TYPES = {"json": "application/json", "csv": "text/csv"}
EXPORT_CONTENT = {
    "application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/AuditRecord"}}},
    "text/csv": {"schema": {"type": "string"}},
}


@api_route(router, "GET", "/audit", action=Action.AUDIT_READ)
def query_audit(
    access: Access,
    case_id: CaseFilter = None,
    actor: ActorFilter = None,
    action: ActionFilter = None,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, Query(ge=1, le=MAX_QUERY_LIMIT)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> AuditPage:
    """The tenant's records matching the filters, newest first."""
    records = access.services.audit.query(
        access.subject.tenant_id,
        case_id=case_id,
        actor=actor,
        action=action,
        since=since,
        until=until,
        limit=limit,
        offset=offset,
    )
    return AuditPage(records=[AuditRecord.model_validate(r) for r in records], limit=limit, offset=offset)


@api_route(
    router,
    "GET",
    "/audit/export",
    action=Action.AUDIT_EXPORT,
    response_class=StreamingResponse,
    responses={200: {"description": "The matching records, oldest first.", "content": EXPORT_CONTENT}},
)
def export_audit(
    access: Access,
    fmt: Annotated[Literal["json", "csv"], Query(alias="format")] = "json",
    case_id: CaseFilter = None,
    actor: ActorFilter = None,
    action: ActionFilter = None,
    since: Since = None,
    until: Until = None,
) -> StreamingResponse:
    """Every matching record, oldest first, streamed as one JSON array or CSV with a header row."""
    chunks = access.services.audit.export(
        access.subject.tenant_id, fmt, case_id=case_id, actor=actor, action=action, since=since, until=until
    )
    disposition = f'attachment; filename="audit.{fmt}"'
    return StreamingResponse(
        chunks, media_type=MEDIA_TYPES[fmt], headers={"Content-Disposition": disposition}
    )


@api_route(router, "GET", "/audit/verify", action=Action.AUDIT_READ)
def verify_audit(access: Access) -> AuditVerification:
    """Check the tenant's hash chain: edited, removed, reordered or truncated records are reported."""
    problems = access.services.audit.verify(access.subject.tenant_id)
    return AuditVerification(ok=not problems, problems=problems)
