"""Identity types: global and case roles, the authenticated `Principal`, and `UserRecord`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

Kind = Literal["human", "service"]
AuthMethod = Literal["password", "oidc", "service", "local"]


class GlobalRole(StrEnum):
    """A user's role across the tenant."""

    ADMIN = "admin"
    USER = "user"
    GUEST = "guest"

    @property
    def rank(self) -> int:
        """Higher ranks carry more rights (admin > user > guest)."""
        return _RANKS[self]


_RANKS = {GlobalRole.ADMIN: 3, GlobalRole.USER: 2, GlobalRole.GUEST: 1}


class CaseRole(StrEnum):
    """A user's role in one case."""

    OWNER = "owner"
    ANALYST = "analyst"
    VIEWER = "viewer"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the user, their tenant and role, and how they authenticated."""

    user_id: str
    tenant_id: str
    username: str
    role: GlobalRole
    kind: Kind
    auth: AuthMethod


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A user as stored, without the password hash."""

    id: str
    tenant_id: str
    username: str
    email: str | None
    role: GlobalRole
    kind: Kind
    disabled: bool
    issuer: str | None
    subject: str | None
    created_at: datetime
