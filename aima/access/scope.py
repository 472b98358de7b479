"""The data scope a unit of work runs in: one tenant and, unless tenant-wide, a set of cases.

The data layer (``aima.storage.scoped``) adds the scope to every statement on tenant tables, so a
query that forgets its ``WHERE`` still sees only the scope's rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from aima.access.policy import Subject


@dataclass(frozen=True)
class Scope:
    """``tenant_id`` plus ``case_ids`` (None: every case of the tenant); ``actor`` names who acts."""

    tenant_id: str
    case_ids: frozenset[str] | None
    actor: str

    @classmethod
    def for_tenant(cls, tenant_id: str, actor: str) -> Scope:
        """Every case of the tenant: admins, tenant-wide system jobs, creating a case."""
        return cls(tenant_id, None, actor)

    @classmethod
    def for_case(cls, tenant_id: str, case_id: str, actor: str) -> Scope:
        """Exactly one case, such as a function processing that case's media."""
        return cls(tenant_id, frozenset({case_id}), actor)

    @classmethod
    def for_subject(cls, subject: Subject, member_of: Iterable[str]) -> Scope:
        """What ``subject`` may see: the whole tenant for admins, else the cases it is a member of."""
        if subject.role == "admin":
            return cls.for_tenant(subject.tenant_id, subject.user_id)
        return cls(subject.tenant_id, frozenset(member_of), subject.user_id)

    def allows_case(self, case_id: str) -> bool:
        """Whether rows of ``case_id`` (within this tenant) are inside the scope."""
        return self.case_ids is None or case_id in self.case_ids
