"""What the admin commands share: the kernel services, the tenant they work in and who is acting.

**One tenant.** Every command works in the tenant named by ``--tenant``, by default the bootstrap
tenant (``AIMA_BOOTSTRAP_TENANT``, ``default``): the tenant the first admin (``aima user add NAME
--admin``) and the gateway's start-up admin are created in. This holds for both profiles, so the
README's steps (first admin, then users, then cases) put everyone in one tenant and the admin sees
every user and case.

**Only ``aima user add`` creates a tenant** (it prints that it did). Any other command naming a tenant
that does not exist fails with one line and exit 1 and creates nothing, so a typo in ``--tenant``
cannot open an empty tenant whose empty audit chain then "verifies". The one exception is the
embedded profile's home, below.

**Who acts.** In a cluster the CLI is an operator's tool with database access (run inside the
cluster); it acts as ``cli:<os user>`` with admin rights in the tenant. Embedded, in the bootstrap
tenant, the passwordless local owner (``local-owner``, an admin that cannot sign in over HTTP) acts
instead, so a fresh installation works without any set-up: it is created, with the bootstrap tenant,
only while that tenant has no admin, and keeps acting once it exists (the first admin may still be
added then, and joins it). Once a real admin exists and no local owner does, the embedded CLI acts as
``cli:<os user>`` like in a cluster (``aima case create`` then needs ``--owner``). Every change either
makes is audit-logged like an API call.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar

import click

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


class UnknownTenant(click.ClickException):
    """The command names a tenant that does not exist (one line, exit 1)."""


@dataclass
class Kernel:
    """Lazily opened kernel services for one CLI invocation; ``create_tenant`` lets the command create
    its tenant (only ``aima user add`` does), and ``created_tenant`` then says whether it did."""

    settings: Settings
    tenant_name: str | None = None
    create_tenant: bool = False
    created_tenant: bool = field(default=False, init=False)
    _stores: Stores | None = field(default=None, init=False, repr=False)

    @property
    def tenant(self) -> str:
        """The name of the tenant the command works in."""
        return self.tenant_name or self.settings.bootstrap_tenant

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
        """The embedded local owner in the bootstrap tenant while it acts there, else ``cli:<user>``
        (see module docstring); raises `UnknownTenant`."""
        name = self.tenant
        if self.settings.profile == "embedded" and name == self.settings.bootstrap_tenant:
            owner = self.directory.acting_local_owner(name)
            if owner is not None:
                return Actor(owner.tenant_id, owner.username, owner.user_id)
        tenant_id = self.directory.tenant_id(name)
        if tenant_id is None:
            if not self.create_tenant:
                raise UnknownTenant(f"no tenant {name!r}; a tenant is created by `aima user add --tenant`")
            tenant_id = self.directory.ensure_tenant(name)
            self.created_tenant = True
        return Actor(tenant_id, operator(), None)

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

    def record_in(self, chain_id: str, action: str, *, object: str | None = None, **detail: object) -> None:
        """One audit record by ``cli:<os user>`` in a chain of no tenant (such as reading one)."""
        self.audit.record_now(
            tenant_id=chain_id,
            actor=operator(),
            action=action,
            outcome="allowed",
            object=object,
            detail={"via": "cli", **detail},
        )

    def close(self) -> None:
        if self._stores is not None:
            self._stores.close()


def operator() -> str:
    """Who the CLI acts as when no user does: ``cli:<os user>``."""
    return f"cli:{getpass.getuser()}"


class CaseSession:
    """One case command's kernel, the case it works on (checked to exist) and its audit records."""

    def __init__(self, k: Kernel, case_id: str) -> None:
        from aima.access.scope import Scope
        from aima.cli import CliError

        self.k = k
        self.case_id = case_id
        self.tenant_id = k.actor.tenant_id
        if k.cases.get(Scope.for_case(self.tenant_id, case_id, k.actor.name), case_id) is None:
            raise CliError(f"no case {case_id}")

    def record(self, action: str, object: str, *, failed: str | None = None, **detail: Any) -> None:
        """An audit record of the command, as the API writes one (``via: cli``)."""
        record_command(self.k, action, self.case_id, object, failed=failed, **detail)


def record_command(
    k: Kernel, action: str, case_id: str, object: str, *, failed: str | None = None, **detail: Any
) -> None:
    """An audit record of a command on a case in the acting user's tenant, as the API writes one
    (``via: cli``; ``failed``: the error of a refused command)."""
    k.audit.record_now(
        tenant_id=k.actor.tenant_id,
        actor=k.actor.name,
        action=action,
        outcome="failed" if failed else "allowed",
        object=object,
        case_id=case_id,
        detail={"via": "cli", **detail, **({"error": failed} if failed else {})},
    )


S = TypeVar("S", bound=CaseSession)


@contextmanager
def case_session(kind: type[S], case_id: str, tenant: str | None) -> Iterator[S]:
    """A session of ``kind`` on a kernel of its own, closed afterwards."""
    from aima.settings import load_settings

    k = Kernel(load_settings(), tenant)
    try:
        yield kind(k, case_id)
    finally:
        k.close()
