"""The user directory: tenants, users, the first admin, the embedded owner, password login and
provisioning of users from an external OIDC issuer."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import uuid
from collections.abc import Mapping
from typing import Any

from aima.access.scope import Scope
from aima.expiring import ExpiringMap
from aima.identity.errors import AuthenticationFailed, BootstrapRefused, UnknownUser, UserExists
from aima.identity.model import AuthMethod, GlobalRole, Kind, Principal, UserRecord
from aima.identity.passwords import (
    check_password_policy,
    dummy_verify,
    hash_password,
    needs_rehash,
    verify_password,
)
from aima.settings import Settings, SettingsError
from aima.storage.audit import AuditHook
from aima.storage.relational import Database, after_commit, transaction_lock
from aima.storage.schema import refresh_tokens, tenants, users, utcnow
from aima.storage.scoped import IDENTITY_LOOKUP, scoped_session, unscoped_session

log = logging.getLogger(__name__)

LOCAL_OWNER = "local-owner"
MAX_USERNAME = 200


def user_record(row: Mapping[Any, Any]) -> UserRecord:
    """A `UserRecord` from a row of ``users``."""
    return UserRecord(
        id=row["id"],
        tenant_id=row["tenant_id"],
        username=row["username"],
        email=row["email"],
        role=GlobalRole(row["role"]),
        kind=_kind(row["kind"]),
        disabled=bool(row["disabled"]),
        issuer=row["issuer"],
        subject=row["subject"],
        created_at=row["created_at"],
    )


def _new_user(
    tenant_id: str,
    username: str,
    role: GlobalRole,
    *,
    kind: Kind = "human",
    email: str | None = None,
    password_hash: str | None = None,
    issuer: str | None = None,
    subject: str | None = None,
) -> dict[str, Any]:
    """The ``users`` row of a new, enabled user."""
    return {
        "id": str(uuid.uuid4()),
        "tenant_id": tenant_id,
        "username": username,
        "email": email,
        "password_hash": password_hash,
        "role": role.value,
        "kind": kind,
        "disabled": False,
        "issuer": issuer,
        "subject": subject,
        "created_at": utcnow(),
    }


def principal_of(row: Mapping[Any, Any]) -> Principal:
    """The `Principal` of a row of ``users``; ``auth`` says how such a user signs in."""
    auth: AuthMethod
    if row["kind"] == "service":
        auth = "service"
    elif row["issuer"] is not None:
        auth = "oidc"
    elif row["password_hash"] is None:
        auth = "local"
    else:
        auth = "password"
    return Principal(
        user_id=row["id"],
        tenant_id=row["tenant_id"],
        username=row["username"],
        role=GlobalRole(row["role"]),
        kind=_kind(row["kind"]),
        auth=auth,
    )


def _kind(value: object) -> Kind:
    if value == "human":
        return "human"
    if value == "service":
        return "service"
    raise ValueError(f"unknown user kind {value!r}")


def _has_users(session: Any) -> bool:
    """Whether any user exists besides the embedded local owner (who cannot sign in)."""
    found = session.execute(users.select().where(users.c.username != LOCAL_OWNER).limit(1)).first()
    return found is not None


def _check_username(username: str) -> None:
    if not username or username != username.strip() or len(username) > MAX_USERNAME:
        raise ValueError(f"username must be 1-{MAX_USERNAME} characters without surrounding spaces")


class UserDirectory:
    """Tenants and users in the relational store.

    ``principal_ttl`` > 0 keeps each `principal` answer that long (`aima.expiring.ExpiringMap`): the
    gateway looks the caller up on every request. A change made through this directory (disable,
    a role from the external issuer) takes effect at once; one made by another process within the TTL.
    """

    def __init__(self, db: Database, *, principal_ttl: float = 0.0) -> None:
        self._db = db
        self._principals: ExpiringMap[str, Principal] = ExpiringMap(principal_ttl)

    def tenant_id(self, name: str) -> str | None:
        """The id of the tenant called ``name``, or None; never creates one."""
        with unscoped_session(self._db, reason=IDENTITY_LOOKUP, readonly=True) as s:
            found = s.execute(tenants.select().where(tenants.c.name == name)).first()
        return None if found is None else str(found.id)

    def ensure_tenant(self, name: str) -> str:
        """The id of the tenant called ``name``, created if missing."""
        try:
            with unscoped_session(self._db, reason=IDENTITY_LOOKUP) as s:
                found = s.execute(tenants.select().where(tenants.c.name == name)).first()
                if found is not None:
                    return str(found.id)
                tenant_id = str(uuid.uuid4())
                s.execute(tenants.insert().values(id=tenant_id, name=name, created_at=utcnow()))
                return tenant_id
        except Exception:
            # another process created it at the same moment (unique name)
            with unscoped_session(self._db, reason=IDENTITY_LOOKUP) as s:
                found = s.execute(tenants.select().where(tenants.c.name == name)).first()
            if found is None:
                raise
            return str(found.id)

    def create_user(
        self,
        tenant_id: str,
        username: str,
        password: str | None,
        role: GlobalRole | str,
        *,
        email: str | None = None,
        kind: Kind = "human",
        audit: AuditHook | None = None,
    ) -> UserRecord:
        """Create a user; humans with a password must meet the policy. Raises `UserExists`.

        ``audit`` runs in the insert's transaction, so the record commits with the user.
        """
        _check_username(username)
        role = GlobalRole(role)
        _kind(kind)
        if password is not None and kind == "human":
            check_password_policy(password)
        if self.by_username(username) is not None:
            raise UserExists(username)
        password_hash = None if password is None else hash_password(password)
        values = _new_user(tenant_id, username, role, kind=kind, email=email, password_hash=password_hash)
        try:
            with unscoped_session(self._db, reason=IDENTITY_LOOKUP) as s:
                s.execute(users.insert().values(values))
                if audit is not None:
                    audit(s)
        except Exception as exc:
            if self.by_username(username) is not None:
                raise UserExists(username) from exc
            raise
        log.info("user created", extra={"user_id": values["id"], "tenant_id": tenant_id, "role": role.value})
        return user_record(values)

    def bootstrap_admin(self, username: str, password: str, tenant_name: str) -> UserRecord:
        """Create the first admin; only while there is no user but the embedded local owner (who
        cannot sign in), else `BootstrapRefused`."""
        _check_username(username)
        check_password_policy(password)
        password_hash = hash_password(password)
        with unscoped_session(self._db, reason=IDENTITY_LOOKUP) as s:
            transaction_lock(s, "identity.bootstrap")  # concurrent bootstraps create one admin
            if _has_users(s):
                raise BootstrapRefused("users exist already; the first admin is created only once")
            tenant = s.execute(tenants.select().where(tenants.c.name == tenant_name)).first()
            tenant_id = str(tenant.id) if tenant is not None else str(uuid.uuid4())
            if tenant is None:
                s.execute(tenants.insert().values(id=tenant_id, name=tenant_name, created_at=utcnow()))
            values = _new_user(tenant_id, username, GlobalRole.ADMIN, password_hash=password_hash)
            s.execute(users.insert().values(values))
        log.info("first admin created", extra={"user_id": values["id"], "tenant_id": tenant_id})
        return user_record(values)

    def bootstrap_from_settings(self, settings: Settings) -> UserRecord | None:
        """Create the first admin from ``AIMA_BOOTSTRAP_ADMIN_USERNAME``/``_PASSWORD`` if both are
        set and there are no users yet; otherwise do nothing and return None."""
        username = settings.bootstrap_admin_username
        password = settings.bootstrap_admin_password
        if username is None and password is None:
            return None
        if username is None:
            raise SettingsError("AIMA_BOOTSTRAP_ADMIN_USERNAME", "required with the bootstrap password")
        if password is None:
            raise SettingsError("AIMA_BOOTSTRAP_ADMIN_PASSWORD", "required with the bootstrap username")
        with unscoped_session(self._db, reason=IDENTITY_LOOKUP, readonly=True) as s:
            if _has_users(s):
                return None
        try:
            return self.bootstrap_admin(username, password.get_secret_value(), settings.bootstrap_tenant)
        except BootstrapRefused:
            return None  # another replica bootstrapped first

    def ensure_local_owner(self, tenant_name: str = "local") -> Principal:
        """The single passwordless admin of the embedded profile (cannot sign in over HTTP)."""
        if self.by_username(LOCAL_OWNER) is None:
            tenant_id = self.ensure_tenant(tenant_name)
            with contextlib.suppress(UserExists):  # created concurrently
                self.create_user(tenant_id, LOCAL_OWNER, None, GlobalRole.ADMIN)
        record = self.by_username(LOCAL_OWNER)
        if record is None:
            raise UnknownUser(LOCAL_OWNER)
        return self.principal(record.id)

    def acting_local_owner(self, tenant_name: str) -> Principal | None:
        """The local owner, to act for the embedded CLI in ``tenant_name``, or None to act otherwise.

        The existing local owner if it belongs to that tenant; else, while the tenant has no admin yet,
        a new one (with the tenant); None once an admin exists there without a local owner (the CLI
        acts as an operator then) or when the local owner belongs to another tenant.
        """
        record = self.by_username(LOCAL_OWNER)
        if record is None:
            tenant_id = self.tenant_id(tenant_name)
            if tenant_id is not None and self._has_admin(tenant_id):
                return None
            return self.ensure_local_owner(tenant_name)
        if record.tenant_id != self.tenant_id(tenant_name) or record.disabled:
            return None
        return self.principal(record.id)

    def _has_admin(self, tenant_id: str) -> bool:
        with unscoped_session(self._db, reason=IDENTITY_LOOKUP, readonly=True) as s:
            found = s.execute(
                users.select()
                .where(
                    users.c.tenant_id == tenant_id,
                    users.c.role == GlobalRole.ADMIN.value,
                    users.c.disabled.is_(False),
                )
                .limit(1)
            ).first()
        return found is not None

    def list_users(self, tenant_id: str) -> list[UserRecord]:
        """The users of a tenant, by username."""
        with scoped_session(self._db, Scope.for_tenant(tenant_id, actor="identity")) as s:
            rows = s.execute(
                users.select().where(users.c.tenant_id == tenant_id).order_by(users.c.username)
            ).mappings()
            return [user_record(row) for row in rows]

    def get(self, user_id: str) -> UserRecord | None:
        """The user with this id, or None."""
        row = self._row("id", user_id)
        return None if row is None else user_record(row)

    def by_username(self, username: str) -> UserRecord | None:
        """The user with this username, or None."""
        row = self._row("username", username)
        return None if row is None else user_record(row)

    def disable(self, user_id: str, *, audit: AuditHook | None = None) -> None:
        """Disable a user and revoke all their refresh tokens; raises `UnknownUser`.

        ``audit`` runs in the same transaction.
        """
        now = utcnow()
        with unscoped_session(self._db, reason=IDENTITY_LOOKUP) as s:
            updated = s.execute(
                users.update().where(users.c.id == user_id).values(disabled=True).returning(users.c.id)
            ).first()
            if updated is None:
                raise UnknownUser(user_id)
            s.execute(
                refresh_tokens.update()
                .where(refresh_tokens.c.user_id == user_id, refresh_tokens.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            if audit is not None:
                audit(s)
        self._principals.invalidate(user_id)
        log.info("user disabled", extra={"user_id": user_id})

    def authenticate(self, username: str, password: str) -> Principal:
        """The principal for a correct username and password; `AuthenticationFailed` for an
        unknown user, a wrong password or a disabled user alike (in comparable time)."""
        row = self._row("username", username)
        if row is None or row["password_hash"] is None:
            dummy_verify(password)
            raise AuthenticationFailed()
        stored: str = row["password_hash"]
        if not verify_password(stored, password) or row["disabled"]:
            raise AuthenticationFailed()
        if needs_rehash(stored):
            with unscoped_session(self._db, reason=IDENTITY_LOOKUP) as s:
                s.execute(
                    users.update()
                    .where(users.c.id == row["id"], users.c.password_hash == stored)
                    .values(password_hash=hash_password(password))
                )
        return principal_of(row)

    def provision_external(
        self, issuer: str, subject: str, username: str, role: GlobalRole | str, tenant_name: str
    ) -> Principal:
        """The user for an external (issuer, subject), created on first sight; its role follows
        the issuer on every login. A disabled user raises `AuthenticationFailed`."""
        role = GlobalRole(role)
        principal = self._update_external(issuer, subject, role)
        if principal is not None:
            return principal
        tenant_id = self.ensure_tenant(tenant_name)
        name = username[:MAX_USERNAME].strip() or subject[:MAX_USERNAME]
        if self.by_username(name) is not None:
            # never adopt someone else's account by name: keep the identities apart
            suffix = hashlib.sha256(f"{issuer}\0{subject}".encode()).hexdigest()[:10]
            name = f"{name[: MAX_USERNAME - 11]}#{suffix}"
        values = _new_user(tenant_id, name, role, issuer=issuer, subject=subject)
        try:
            with unscoped_session(self._db, reason=IDENTITY_LOOKUP) as s:
                s.execute(users.insert().values(values))
        except Exception:
            # the same identity signed in concurrently
            principal = self._update_external(issuer, subject, role)
            if principal is None:
                raise
            return principal
        log.info("external user provisioned", extra={"user_id": values["id"], "issuer": issuer})
        return principal_of(values)

    def principal(self, user_id: str) -> Principal:
        """The principal of an enabled user; `AuthenticationFailed` if missing or disabled."""
        return self._principals.get_or_load(user_id, lambda: self._load_principal(user_id))

    def _load_principal(self, user_id: str) -> Principal:
        row = self._row("id", user_id)
        if row is None or row["disabled"]:
            raise AuthenticationFailed()
        return principal_of(row)

    def _update_external(self, issuer: str, subject: str, role: GlobalRole) -> Principal | None:
        with unscoped_session(self._db, reason=IDENTITY_LOOKUP) as s:
            row = (
                s.execute(users.select().where(users.c.issuer == issuer, users.c.subject == subject))
                .mappings()
                .first()
            )
            if row is None:
                return None
            if row["disabled"]:
                raise AuthenticationFailed()
            if row["role"] != role.value:
                s.execute(users.update().where(users.c.id == row["id"]).values(role=role.value))
                after_commit(s, lambda: self._principals.invalidate(row["id"]))
            return principal_of({**row, "role": role.value})

    def _row(self, column: str, value: str) -> Mapping[Any, Any] | None:
        with unscoped_session(self._db, reason=IDENTITY_LOOKUP, readonly=True) as s:
            return s.execute(users.select().where(users.c[column] == value)).mappings().first()
