"""What the admin commands share: the kernel services and who is acting.

Embedded, the actor is the local owner (no login). In a cluster the CLI is an operator's tool with
database access (run inside the cluster); it acts as ``cli:<os user>`` with admin rights in the
tenant named by ``--tenant``, and every change it makes is audit-logged like an API call.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass, field
from functools import cached_property

from aima.config.service import ConfigService
from aima.identity.users import UserDirectory
from aima.settings import Settings
from aima.storage.audit import AuditLog
from aima.storage.cases import CaseRepository
from aima.storage.factory import Stores
from aima.storage.media import MediaRepository


@dataclass
class Actor:
    """Who the CLI acts as: a tenant, a display name for the audit log and (embedded) a user id."""

    tenant_id: str
    name: str
    user_id: str | None


@dataclass
class Kernel:
    """Lazily opened kernel services for one CLI invocation."""

    settings: Settings
    tenant_name: str | None = None
    _stores: Stores | None = field(default=None, init=False, repr=False)

    @property
    def stores(self) -> Stores:
        if self._stores is None:
            self._stores = Stores.open(self.settings)
        return self._stores

    @cached_property
    def directory(self) -> UserDirectory:
        return UserDirectory(self.stores.db)

    @cached_property
    def cases(self) -> CaseRepository:
        return CaseRepository(self.stores.db)

    @cached_property
    def media(self) -> MediaRepository:
        return MediaRepository(self.stores.db)

    @cached_property
    def audit(self) -> AuditLog:
        return AuditLog(self.stores.db)

    @cached_property
    def config(self) -> ConfigService:
        return ConfigService(self.stores.db, self.stores.cache, self.audit)

    @cached_property
    def actor(self) -> Actor:
        """The local owner when embedded (unless --tenant names another tenant), else ``cli:<user>``."""
        if self.settings.profile == "embedded" and self.tenant_name is None:
            owner = self.directory.ensure_local_owner()
            return Actor(owner.tenant_id, owner.username, owner.user_id)
        tenant = self.tenant_name or self.settings.bootstrap_tenant
        return Actor(self.directory.ensure_tenant(tenant), f"cli:{getpass.getuser()}", None)

    def record(self, action: str, *, object: str | None = None, case_id: str | None = None) -> None:
        """One audit record for a change or read the CLI performed."""
        self.audit.record_now(
            tenant_id=self.actor.tenant_id,
            actor=self.actor.name,
            action=action,
            outcome="allowed",
            object=object,
            case_id=case_id,
            detail={"via": "cli"},
        )

    def close(self) -> None:
        if self._stores is not None:
            self._stores.close()
