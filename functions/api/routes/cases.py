"""Cases, their members, media and export.

A subject that is no member of a case gets 404 for it (`security.Gate.authorize`); admins see every
case of their tenant, and a case of another tenant is simply not found in their scope.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fastapi import Response

from aima.access.policy import Action
from aima.storage.cases import KEEP, LastOwner, NotFound
from functions.api.problems import Problem, problem_responses
from functions.api.schemas import (
    CaseCreate,
    CaseExport,
    CaseId,
    CaseOut,
    CaseUpdate,
    MediaOut,
    MemberIn,
    MemberOut,
    UserId,
)
from functions.api.security import Access, RouteTable, api_route, not_found

router = RouteTable(tags=["cases"])


@api_route(router, "GET", "/cases", action=Action.CASE_LIST)
def list_cases(access: Access) -> list[CaseOut]:
    """The cases the caller may see (all of the tenant for admins), oldest first."""
    return [CaseOut.model_validate(row) for row in access.services.cases.list(access.scope)]


@api_route(router, "POST", "/cases", action=Action.CASE_CREATE, status_code=201)
def create_case(body: CaseCreate, access: Access) -> CaseOut:
    """Open a case; the caller becomes its owner. Announces ``io.aima.case.created.v1``."""
    case_id = str(uuid.uuid4())
    subject = access.subject
    try:
        row = access.services.cases.create(
            access.tenant_scope,
            body.name,
            subject.user_id,
            body.retention_days,
            language=body.language,
            context=body.context,
            case_id=case_id,
            audit=access.hook(case_id=case_id, object=f"case/{case_id}"),
        )
    except ValueError as exc:
        raise unprocessable(exc) from None
    return CaseOut.model_validate(row)


@api_route(router, "GET", "/cases/{case_id}", action=Action.CASE_READ)
def get_case(case_id: CaseId, access: Access) -> CaseOut:
    row = access.services.cases.get(access.scope, case_id)
    if row is None:
        raise not_found("case")
    return CaseOut.model_validate(row)


@api_route(router, "PATCH", "/cases/{case_id}", action=Action.CASE_UPDATE)
def update_case(case_id: CaseId, body: CaseUpdate, access: Access) -> CaseOut:
    """Change what the body names: ``name``, ``language`` and ``context`` (``null`` clears those two).
    One audit record; its detail names the members sent (and the language, never the name or the
    context's text)."""
    cases = access.services.cases
    sent = body.model_fields_set
    detail: dict[str, object] = {"changed": sorted(sent)}
    if "language" in sent:
        detail["language"] = body.language
    try:
        updated = cases.update(
            access.scope,
            case_id,
            name=body.name if body.name is not None else KEEP,
            language=body.language if "language" in sent else KEEP,
            context=body.context if "context" in sent else KEEP,
            audit=access.hook(object=f"case/{case_id}", detail=detail),
        )
    except ValueError as exc:
        raise unprocessable(exc) from None
    row = cases.get(access.scope, case_id) if updated else None
    if row is None:
        raise not_found("case")
    return CaseOut.model_validate(row)


@api_route(router, "DELETE", "/cases/{case_id}", action=Action.CASE_DELETE, status_code=204)
def delete_case(case_id: CaseId, access: Access) -> Response:
    """Delete the case and everything of it: objects, vectors, documents, cache entries and rows
    (media, jobs, members). Its audit records stay. Announces ``io.aima.case.deleted.v1``.

    The other stores are purged first, so a failure leaves the case in place to delete again; the
    purge is repeated after the rows are gone for whatever the pipeline wrote meanwhile.
    """
    access.require_case()
    services = access.services
    purged = services.stores.purge_case(case_id)
    hook = access.hook(object=f"case/{case_id}", detail={"purged": purged})
    if not services.cases.delete_rows(access.scope, case_id, audit=hook):
        raise not_found("case")
    services.stores.purge_case(case_id)
    return Response(status_code=204)


@api_route(router, "GET", "/cases/{case_id}/members", action=Action.CASE_READ)
def list_members(case_id: CaseId, access: Access) -> list[MemberOut]:
    access.require_case()
    return [MemberOut.model_validate(row) for row in access.services.cases.members(access.scope, case_id)]


@api_route(
    router,
    "PUT",
    "/cases/{case_id}/members/{user_id}",
    action=Action.CASE_SHARE,
    responses=problem_responses(409),
)
def share_case(case_id: CaseId, user_id: UserId, body: MemberIn, access: Access) -> MemberOut:
    """Make a user of the tenant a member with ``role``, or change its role (guests: viewer only).

    The case's only owner keeps ``owner`` (409 ``last-owner``) until another member was made owner.
    """
    access.require_case()
    cases = access.services.cases
    hook = access.hook(object=f"user/{user_id}", detail={"role": body.role})
    try:
        cases.share(access.scope, case_id, user_id, body.role, audit=hook)
    except NotFound:  # the case exists: the user is not one of the tenant's
        raise not_found("user") from None
    except LastOwner as exc:
        raise last_owner(exc) from None
    except ValueError as exc:
        raise unprocessable(exc) from None
    member = next((row for row in cases.members(access.scope, case_id) if row["user_id"] == user_id), None)
    if member is None:  # removed meanwhile
        raise not_found("member")
    return MemberOut.model_validate(member)


@api_route(
    router,
    "DELETE",
    "/cases/{case_id}/members/{user_id}",
    action=Action.CASE_SHARE,
    status_code=204,
    responses=problem_responses(409),
)
def unshare_case(case_id: CaseId, user_id: UserId, access: Access) -> Response:
    """End a membership; the case's only owner cannot leave (409 ``last-owner``): hand it over first."""
    hook = access.hook(object=f"user/{user_id}")
    try:
        ended = access.services.cases.unshare(access.scope, case_id, user_id, audit=hook)
    except LastOwner as exc:
        raise last_owner(exc) from None
    if not ended:
        raise not_found("member")
    return Response(status_code=204)


@api_route(router, "GET", "/cases/{case_id}/media", action=Action.MEDIA_READ)
def list_media(case_id: CaseId, access: Access) -> list[MediaOut]:
    """The case's files, oldest first."""
    access.require_case()
    return [MediaOut.model_validate(file) for file in access.services.media.list(access.scope, case_id)]


@api_route(router, "GET", "/cases/{case_id}/export", action=Action.CASE_EXPORT)
def export_case(case_id: CaseId, access: Access) -> CaseExport:
    """The case, its members and its media rows as one JSON document (audited as an export)."""
    services = access.services
    row = services.cases.get(access.scope, case_id)
    if row is None:
        raise not_found("case")
    return CaseExport(
        case=CaseOut.model_validate(row),
        members=[MemberOut.model_validate(m) for m in services.cases.members(access.scope, case_id)],
        media=[MediaOut.model_validate(m) for m in services.media.list(access.scope, case_id)],
        exported_at=datetime.now(UTC),
        exported_by=access.subject.user_id,
    )


def unprocessable(exc: Exception) -> Problem:
    """A 422 problem for a value the kernel refused."""
    return Problem(422, "invalid-value", "Invalid value", str(exc))


def last_owner(exc: LastOwner) -> Problem:
    """A 409 problem for a change that would leave the case without an owner."""
    return Problem(409, "last-owner", "Case would have no owner", f"{exc}.")
