"""The case repository: cases and their members, always read and written through a scoped session.

Every method takes the caller's `Scope`, so the scope guard confines it even where a WHERE is
missing: a case outside the scope is simply not found. Methods return plain dicts. Creating and
deleting a case write ``io.aima.case.created.v1`` / ``io.aima.case.deleted.v1`` to the outbox in the
same transaction, so the API, ``aima case create`` and ``aima analyze`` announce a case alike.

A case always has an owner. `CaseRepository.share` and `CaseRepository.unshare` refuse (`LastOwner`)
a change that would leave it without one: the only owner can neither leave nor take a lesser role,
whoever asks (admins included), until another member has been made owner — ownership is handed over,
never dropped. The check runs after the change, in its transaction, which first takes a lock on the
case's membership (`transaction_lock`: an advisory lock on PostgreSQL; SQLite's single writer
serialises anyway), so two owners stepping down at the same moment cannot both succeed.

A case may carry a ``language`` (an ISO 639-1 or 639-3 code, `LANGUAGE_PATTERN`): the language its
speech is transcribed in, forced over the detection per segment (issue #14). None detects.
"""

from __future__ import annotations

import enum
import re
import uuid
from typing import Any, Final, cast

from sqlalchemy import CursorResult, Result, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from aima.access.policy import CASE_ROLE_ACTIONS, Role, shareable_role
from aima.access.scope import Scope
from aima.expiring import ExpiringMap
from aima.storage.audit import AuditHook
from aima.storage.outbox import Outbox
from aima.storage.relational import Database, transaction_lock
from aima.storage.schema import case_members, cases, users, utcnow
from aima.storage.scoped import guard, scoped_session
from events.catalogue import CaseCreated, CaseDeleted, make_event
from events.envelope import CloudEvent, derived_event_id

MAX_NAME = 200
LANGUAGE_PATTERN = r"^[a-z]{2,3}$"
"""A case's language: an ISO 639-1 (``de``) or 639-3 (``gsw``) code, lower case."""
MAX_CONTEXT = 8000
"""Characters of a case's context: the analyst's free text that goes with its analysis."""
SOURCE = "/aima/kernel/cases"

Row = dict[str, Any]
Rows = list[Row]  # an alias, as `list` inside the class means CaseRepository.list


class Keep(enum.Enum):
    """The type of `KEEP`."""

    KEEP = enum.auto()


KEEP: Final = Keep.KEEP
"""`CaseRepository.update`: leave this value as it is (None would clear it)."""


class NotFound(LookupError):
    """The case or user does not exist within the scope."""


class LastOwner(Exception):
    """A change that would leave the case without an owner (see module docstring); nothing changed."""


class CaseRepository:
    """Cases and memberships of one database (see module docstring).

    ``memberships_ttl`` > 0 keeps each `memberships` answer that long (`aima.expiring.ExpiringMap`):
    the gateway builds every request's scope from it. Creating, sharing, unsharing and deleting
    through this repository take effect at once; the same changes by another process within the TTL.
    """

    def __init__(self, db: Database, *, memberships_ttl: float = 0.0) -> None:
        self._db = db
        self._outbox = Outbox(db)
        self._memberships: ExpiringMap[tuple[str, str], dict[str, str]] = ExpiringMap(memberships_ttl)
        guard(db)

    def create(
        self,
        scope: Scope,
        name: str,
        owner_user_id: str,
        retention_days: int | None = None,
        *,
        language: str | None = None,
        context: str | None = None,
        case_id: str | None = None,
        audit: AuditHook | None = None,
    ) -> Row:
        """Create a case with ``owner_user_id`` as its owner, in one transaction.

        The scope must be tenant-wide (a new case is in no narrower scope yet; the guard refuses the
        insert otherwise), and the owner must be a user of the tenant who may own cases. ``case_id``
        (default: a new UUID) lets the caller name the case in its ``audit`` record, which is
        written in the same transaction. ``language`` forces the language of the case's speech;
        ``context`` is the analyst's free text that goes with the analysis (`MAX_CONTEXT` characters).
        """
        name = _check_name(name)
        if retention_days is not None and retention_days < 1:
            raise ValueError("retention_days must be at least 1")
        language = _check_language(language)
        context = _check_context(context)
        case_id = case_id or str(uuid.uuid4())
        now = utcnow()
        with scoped_session(self._db, scope) as session:
            _member_role(session, owner_user_id, "owner")
            session.execute(
                insert(cases).values(
                    id=case_id,
                    tenant_id=scope.tenant_id,
                    name=name,
                    retention_days=retention_days,
                    language=language,
                    context=context,
                    created_at=now,
                    updated_at=now,
                )
            )
            session.execute(
                insert(case_members).values(
                    case_id=case_id,
                    user_id=owner_user_id,
                    tenant_id=scope.tenant_id,
                    role="owner",
                    created_at=now,
                )
            )
            row = dict(session.execute(select(cases).where(cases.c.id == case_id)).mappings().one())
            if audit is not None:
                audit(session)
            created = CaseCreated(tenant_id=scope.tenant_id, case_id=case_id, name=name)
            self._outbox.add(session, [_event(created, case_id)])
        self._memberships.invalidate((scope.tenant_id, owner_user_id))
        return row

    def list(self, scope: Scope) -> Rows:
        """Every case in the scope, oldest first."""
        with scoped_session(self._db, scope) as session:
            rows = session.execute(select(cases).order_by(cases.c.created_at, cases.c.id)).mappings()
            return [dict(row) for row in rows]

    def get(self, scope: Scope, case_id: str) -> Row | None:
        """The case, or None if it does not exist in the scope."""
        with scoped_session(self._db, scope, readonly=True) as session:
            row = session.execute(select(cases).where(cases.c.id == case_id)).mappings().first()
            return None if row is None else dict(row)

    def rename(self, scope: Scope, case_id: str, name: str, *, audit: AuditHook | None = None) -> bool:
        """Give the case a new name; False if it does not exist in the scope.

        ``audit`` (here and in the other changes) runs in the change's transaction once it succeeded.
        """
        return self.update(scope, case_id, name=name, audit=audit)

    def update(
        self,
        scope: Scope,
        case_id: str,
        *,
        name: str | Keep = KEEP,
        language: str | Keep | None = KEEP,
        context: str | Keep | None = KEEP,
        audit: AuditHook | None = None,
    ) -> bool:
        """Change the case's name, language and/or context (None clears them) in one transaction; what
        is `KEEP` stays. False if the case does not exist in the scope; with nothing to change, whether
        it does (and ``audit`` runs all the same)."""
        values: dict[str, Any] = {}
        if not isinstance(name, Keep):
            values["name"] = _check_name(name)
        if not isinstance(language, Keep):
            values["language"] = _check_language(language)
        if not isinstance(context, Keep):
            values["context"] = _check_context(context)
        with scoped_session(self._db, scope) as session:
            if not values:
                found = session.execute(select(cases.c.id).where(cases.c.id == case_id)).first()
                return _audited(session, found is not None, audit)
            result = session.execute(update(cases).where(cases.c.id == case_id).values(values))
            return _audited(session, _changed(result), audit)

    def delete_rows(self, scope: Scope, case_id: str, *, audit: AuditHook | None = None) -> bool:
        """Delete the case's rows (media, jobs and members cascade); False if not in the scope.

        Objects, vectors and documents of the case live in other stores; the caller purges those
        (`aima.storage.factory.Stores.purge_case`).
        """
        with scoped_session(self._db, scope) as session:
            deleted = _audited(
                session, _changed(session.execute(delete(cases).where(cases.c.id == case_id))), audit
            )
            if deleted:
                gone = CaseDeleted(tenant_id=scope.tenant_id, case_id=case_id)
                self._outbox.add(session, [_event(gone, case_id)])
        if deleted:
            self._memberships.clear()  # every member's
        return deleted

    def share(
        self, scope: Scope, case_id: str, user_id: str, role: str, *, audit: AuditHook | None = None
    ) -> None:
        """Make ``user_id`` (a user of the same tenant) a member with ``role``, or change its role.

        Raises `NotFound` for a case or user outside the scope, ValueError for a role the user
        cannot hold (guests can only be viewers), `LastOwner` for taking the only owner's ownership.
        """
        with scoped_session(self._db, scope) as session:
            if session.execute(select(cases.c.id).where(cases.c.id == case_id)).first() is None:
                raise NotFound(f"case {case_id} not found")
            _member_role(session, user_id, role)
            _lock_members(session, case_id)
            was_owner = _role_of(session, case_id, user_id) == "owner"
            values = {
                "case_id": case_id,
                "user_id": user_id,
                "tenant_id": scope.tenant_id,
                "role": role,
                "created_at": utcnow(),
            }
            keys = [case_members.c.case_id, case_members.c.user_id]
            dialect = session.get_bind().dialect.name
            upsert = (sqlite_insert if dialect == "sqlite" else pg_insert)(case_members).values(values)
            session.execute(upsert.on_conflict_do_update(index_elements=keys, set_={"role": role}))
            if was_owner and role != "owner":
                _keep_an_owner(session, case_id, user_id)
            _audited(session, True, audit)
        self._memberships.invalidate((scope.tenant_id, user_id))

    def unshare(self, scope: Scope, case_id: str, user_id: str, *, audit: AuditHook | None = None) -> bool:
        """End the membership; False if there was none in the scope. Raises `LastOwner` for the
        case's only owner."""
        with scoped_session(self._db, scope) as session:
            _lock_members(session, case_id)
            was_owner = _role_of(session, case_id, user_id) == "owner"
            result = session.execute(
                delete(case_members).where(
                    case_members.c.case_id == case_id, case_members.c.user_id == user_id
                )
            )
            changed = _changed(result)
            if changed and was_owner:
                _keep_an_owner(session, case_id, user_id)
            ended = _audited(session, changed, audit)
        self._memberships.invalidate((scope.tenant_id, user_id))
        return ended

    def members(self, scope: Scope, case_id: str) -> Rows:
        """The case's members (user_id, username, role, created_at); empty if not in the scope."""
        with scoped_session(self._db, scope) as session:
            rows = session.execute(
                select(
                    case_members.c.user_id, users.c.username, case_members.c.role, case_members.c.created_at
                )
                .join_from(case_members, users, case_members.c.user_id == users.c.id)
                .where(case_members.c.case_id == case_id)
                .order_by(users.c.username)
            ).mappings()
            return [dict(row) for row in rows]

    def memberships(self, tenant_id: str, user_id: str) -> dict[str, str]:
        """case_id -> role for every case ``user_id`` is a member of in ``tenant_id``.

        This is what a user's scope is built from, so it cannot itself run in that scope: it reads
        tenant-wide, but only this user's membership rows (ids and roles, no case content).
        """
        kept = self._memberships.get_or_load(
            (tenant_id, user_id), lambda: self._load_memberships(tenant_id, user_id)
        )
        return dict(kept)

    def _load_memberships(self, tenant_id: str, user_id: str) -> dict[str, str]:
        scope = Scope.for_tenant(tenant_id, f"system:memberships:{user_id}")
        with scoped_session(self._db, scope, readonly=True) as session:
            rows = session.execute(
                select(case_members.c.case_id, case_members.c.role).where(case_members.c.user_id == user_id)
            )
            return {case_id: role for case_id, role in rows}


def _member_role(session: Session, user_id: str, case_role: str) -> None:
    """Raise unless ``user_id`` is a user in the session's tenant who may hold ``case_role``."""
    if case_role not in CASE_ROLE_ACTIONS:
        raise ValueError(f"unknown case role {case_role!r}")
    role: Role | None = session.scalar(select(users.c.role).where(users.c.id == user_id))
    if role is None:
        raise NotFound(f"user {user_id} not found")
    if not shareable_role(role, case_role):
        raise ValueError(f"a {role} cannot be a case {case_role}")


def _lock_members(session: Session, case_id: str) -> None:
    """Serialise the membership changes of one case until the transaction ends."""
    transaction_lock(session, f"aima.case-members:{case_id}")


def _role_of(session: Session, case_id: str, user_id: str) -> str | None:
    """``user_id``'s role on the case, or None."""
    role: str | None = session.scalar(
        select(case_members.c.role).where(
            case_members.c.case_id == case_id, case_members.c.user_id == user_id
        )
    )
    return role


def _keep_an_owner(session: Session, case_id: str, user_id: str) -> None:
    """Raise `LastOwner` (rolling the change back) if the case has no owner left once ``user_id``
    stopped being one."""
    left = session.scalar(
        select(func.count())
        .select_from(case_members)
        .where(case_members.c.case_id == case_id, case_members.c.role == "owner")
    )
    if not left:
        raise LastOwner(
            f"user {user_id} is the only owner of case {case_id}; make another member owner first, "
            "then change or end this membership"
        )


def _event(data: CaseCreated | CaseDeleted, case_id: str) -> CloudEvent:
    """A case's lifecycle event; its id derived from the case, so every creator announces it alike."""
    event_id = derived_event_id(case_id, data.TYPE)
    return make_event(data, source=SOURCE, subject=f"case/{case_id}", event_id=event_id)


def _audited(session: Session, changed: bool, audit: AuditHook | None) -> bool:
    """Run ``audit`` in the session's transaction if something ``changed``; return ``changed``."""
    if changed and audit is not None:
        audit(session)
    return changed


def _check_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= MAX_NAME:
        raise ValueError(f"a case name has 1 to {MAX_NAME} characters")
    return name


def _check_context(context: str | None) -> str | None:
    if context is None or not context.strip():
        return None
    if len(context) > MAX_CONTEXT:
        raise ValueError(f"a case context is at most {MAX_CONTEXT} characters")
    if any(ord(c) < 32 and c not in "\n\t" for c in context):
        raise ValueError("a case context may not contain control characters")
    return context.strip()


def _check_language(language: str | None) -> str | None:
    if language is not None and not re.fullmatch(LANGUAGE_PATTERN, language):
        raise ValueError(
            f"a case language is an ISO 639-1 or 639-3 code (2 or 3 lower-case letters), not {language!r}"
        )
    return language


def _changed(result: Result[Any]) -> bool:
    """Whether an UPDATE or DELETE hit exactly one row."""
    return cast(CursorResult[Any], result).rowcount == 1
