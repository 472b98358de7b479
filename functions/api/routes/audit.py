"""The tenant's audit log, for its admins: query, export (JSON or CSV, streamed) and chain check.

``?chain=anonymous`` (failed sign-ins, refused tokens and deliveries) and ``?chain=system``
(housekeeping such as the retention sweep's removal of leftovers) read the audit chains of no tenant
instead (`aima.storage.audit.CHAINS`). They may hold traces of every tenant's users (client addresses,
attempted case ids), so only the operators may read them: the admins of the bootstrap tenant
(``AIMA_BOOTSTRAP_TENANT``, where the first admin is created); other admins get 403. Reading one is
audited in the reader's own chain, with the chain named in the record's detail.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from fastapi import Query
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime, BeforeValidator

from aima.access.policy import Action
from aima.storage.audit import MAX_QUERY_LIMIT
from functions.api.problems import Problem
from functions.api.schemas import NO_NUL, AuditPage, AuditRecord, AuditVerification
from functions.api.security import Access, RouteTable, api_route

router = RouteTable(tags=["audit"])
ISO_8601 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")

CaseFilter = Annotated[str | None, Query(max_length=36, pattern=NO_NUL, description="Records of this case.")]
ActorFilter = Annotated[
    str | None, Query(max_length=200, pattern=NO_NUL, description="Records of this actor.")
]
ActionFilter = Annotated[str | None, Query(max_length=100, pattern=NO_NUL, description="e.g. case.read")]
Chain = Annotated[
    Literal["anonymous", "system"] | None,
    Query(description="A chain of no tenant instead of the caller's (operators only, see the module)."),
]


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
    chain: Chain = None,
) -> AuditPage:
    """The tenant's records (or ``chain``'s) matching the filters, newest first."""
    records = access.services.audit.query(
        _chain_id(access, chain),
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
    chain: Chain = None,
) -> StreamingResponse:
    """Every matching record of the tenant (or ``chain``), oldest first, streamed as one JSON array
    or CSV with a header row."""
    chunks = access.services.audit.export(
        _chain_id(access, chain), fmt, case_id=case_id, actor=actor, action=action, since=since, until=until
    )
    disposition = f'attachment; filename="audit.{fmt}"'
    return StreamingResponse(
        chunks, media_type=MEDIA_TYPES[fmt], headers={"Content-Disposition": disposition}
    )


@api_route(router, "GET", "/audit/verify", action=Action.AUDIT_READ)
def verify_audit(access: Access, chain: Chain = None) -> AuditVerification:
    """Check the tenant's hash chain (or ``chain``): edited, removed, reordered or truncated records
    are reported."""
    problems = access.services.audit.verify(_chain_id(access, chain))
    return AuditVerification(ok=not problems, problems=problems)


def _chain_id(access: Access, chain: str | None) -> str:
    """The chain the request reads: the caller's tenant's, or ``chain`` for an operator (403 else)."""
    if chain is None:
        return access.subject.tenant_id
    services = access.services
    operators = services.directory.tenant_id(services.settings.bootstrap_tenant)
    if access.subject.tenant_id != operators:
        detail = (
            f"The {chain} chain belongs to no tenant; only admins of the bootstrap tenant "
            f"({services.settings.bootstrap_tenant!r}) may read it."
        )
        access.audit(outcome="denied", detail={"chain": chain, "reason": "not an operator"})
        raise Problem(403, "forbidden", "Forbidden", detail)
    access.audit(object=f"audit/{chain}", detail={"chain": chain})
    return chain
