"""The authorisation policy: who may do what, as one pure function of subject, action and resource.

Rules, in order: `Action.PUBLIC` needs no subject; every other action needs one, and a resource of
another tenant is denied whatever the role (admins administer their own tenant only). Admins may
do everything in their tenant. Users may create and list cases, read the runtime configuration and
act on a case as far as their membership role allows (viewer < analyst < owner). Guests may list
cases and read the cases shared with them; their membership counts as viewer at most, whatever
the stored role says. User management, the audit log and configuration changes are for admins.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

Role = Literal["admin", "user", "guest"]
CaseRole = Literal["owner", "analyst", "viewer"]
Kind = Literal["human", "service"]
ActionKind = Literal["read", "change", "export", "delete", "public", "auth"]


class Action(StrEnum):
    """Everything the API can be asked to do."""

    CASE_CREATE = "case.create"
    CASE_LIST = "case.list"
    CASE_READ = "case.read"
    CASE_UPDATE = "case.update"
    CASE_DELETE = "case.delete"
    CASE_SHARE = "case.share"
    CASE_EXPORT = "case.export"
    MEDIA_UPLOAD = "media.upload"
    MEDIA_READ = "media.read"
    MEDIA_DELETE = "media.delete"
    ANALYSIS_RUN = "analysis.run"
    USER_LIST = "user.list"
    USER_CREATE = "user.create"
    USER_DISABLE = "user.disable"
    AUDIT_READ = "audit.read"
    AUDIT_EXPORT = "audit.export"
    CONFIG_READ = "config.read"
    CONFIG_WRITE = "config.write"
    PUBLIC = "public"  # no subject needed: login, refresh, JWKS, health
    AUTHENTICATED = "authenticated"  # any valid subject: logout, own profile


ACTION_KIND: dict[Action, ActionKind] = {
    Action.CASE_CREATE: "change",
    Action.CASE_LIST: "read",
    Action.CASE_READ: "read",
    Action.CASE_UPDATE: "change",
    Action.CASE_DELETE: "delete",
    Action.CASE_SHARE: "change",
    Action.CASE_EXPORT: "export",
    Action.MEDIA_UPLOAD: "change",
    Action.MEDIA_READ: "read",
    Action.MEDIA_DELETE: "delete",
    Action.ANALYSIS_RUN: "change",
    Action.USER_LIST: "read",
    Action.USER_CREATE: "change",
    Action.USER_DISABLE: "change",
    Action.AUDIT_READ: "read",
    Action.AUDIT_EXPORT: "export",
    Action.CONFIG_READ: "read",
    Action.CONFIG_WRITE: "change",
    Action.PUBLIC: "public",
    Action.AUTHENTICATED: "auth",
}
"""What an action does, for the audit trail and the API's route table."""

_VIEWER = frozenset({Action.CASE_READ, Action.MEDIA_READ})
_ANALYST = _VIEWER | {Action.CASE_UPDATE, Action.MEDIA_UPLOAD, Action.ANALYSIS_RUN, Action.CASE_EXPORT}
_OWNER = _ANALYST | {Action.CASE_SHARE, Action.CASE_DELETE, Action.MEDIA_DELETE}
CASE_ROLE_ACTIONS: dict[CaseRole, frozenset[Action]] = {
    "viewer": _VIEWER,
    "analyst": _ANALYST,
    "owner": _OWNER,
}
"""The case actions each membership role permits."""

_CASE_ACTIONS = _OWNER
_TENANT_ACTIONS: dict[Role, frozenset[Action]] = {
    "admin": frozenset(Action),
    "user": frozenset({Action.CASE_CREATE, Action.CASE_LIST, Action.CONFIG_READ, Action.AUTHENTICATED}),
    "guest": frozenset({Action.CASE_LIST, Action.AUTHENTICATED}),
}


@dataclass(frozen=True)
class Subject:
    """Who asks: the authenticated principal, reduced to what the policy needs."""

    user_id: str
    tenant_id: str
    role: Role
    kind: Kind = "human"


@dataclass(frozen=True)
class Resource:
    """What is asked about: a tenant, optionally one case and the subject's membership role on it."""

    tenant_id: str
    case_id: str | None = None
    case_role: CaseRole | None = None


@dataclass(frozen=True)
class Decision:
    """The answer, with a short reason for logs and audit records."""

    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


def decide(subject: Subject | None, action: Action, resource: Resource | None = None) -> Decision:
    """May ``subject`` do ``action`` on ``resource`` (default: its own tenant, no case)?"""
    if action is Action.PUBLIC:
        return Decision(True, "public")
    if subject is None:
        return Decision(False, "not authenticated")
    resource = resource or Resource(subject.tenant_id)
    if resource.tenant_id != subject.tenant_id:
        return Decision(False, "different tenant")
    if action in _TENANT_ACTIONS[subject.role]:
        return Decision(True, f"{subject.role} may {action}")
    if action not in _CASE_ACTIONS:
        return Decision(False, f"{action} needs a role above {subject.role}")
    if resource.case_id is None:
        return Decision(False, f"{action} needs a case")
    case_role = resource.case_role
    if case_role is None:
        return Decision(False, "not a member of the case")
    if subject.role == "guest":
        case_role = "viewer"  # a guest's membership counts as viewer at most
    if action in CASE_ROLE_ACTIONS[case_role]:
        return Decision(True, f"case {case_role} may {action}")
    return Decision(False, f"case {case_role} may not {action}")


def shareable_role(subject_role: Role, case_role: str) -> bool:
    """May a user with global role ``subject_role`` become a member with ``case_role``?

    Guests can only be viewers.
    """
    if case_role not in CASE_ROLE_ACTIONS:
        return False
    return subject_role != "guest" or case_role == "viewer"
