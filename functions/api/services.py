"""`ApiServices`: everything the gateway's routes use, wired from `Settings` once per process."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aima.config.service import ConfigService
from aima.identity.keys import KeyRing
from aima.identity.oidc import ExternalIssuer, external_issuer_from_settings
from aima.identity.tokens import TokenService
from aima.identity.users import UserDirectory
from aima.settings import Settings
from aima.storage.audit import AuditLog
from aima.storage.cases import CaseRepository
from aima.storage.factory import Stores
from aima.storage.media import MediaRepository
from aima.storage.scoped import guard
from aima.telemetry.health import HealthRegistry
from events.bus import EventBus
from events.factory import bus_from_settings
from functions.api.auditing import AuditWriter
from functions.api.ratelimit import RateLimiter

MIN_KEY_RETENTION_S = 86400
"""Rotated signing keys verify at least this long: the longest service token an admin can issue."""


@dataclass
class ApiServices:
    """The stores, bus, identity, audit (and its batching writer), repositories, configuration, rate
    limiter and health checks."""

    settings: Settings
    stores: Stores
    bus: EventBus
    directory: UserDirectory
    keyring: KeyRing
    tokens: TokenService
    audit: AuditLog
    audit_writer: AuditWriter
    cases: CaseRepository
    media: MediaRepository
    config: ConfigService
    limiter: RateLimiter
    health: HealthRegistry
    external: ExternalIssuer | None = None

    @classmethod
    def open(
        cls, settings: Settings, *, stores: Stores | None = None, bus: EventBus | None = None
    ) -> ApiServices:
        """Open the stores (migrated) and the bus (not started: see `start`) chosen by ``settings``.

        The scope guard is switched on, the first admin is created from ``AIMA_BOOTSTRAP_ADMIN_*``
        when there is no user yet, and the embedded profile gets its local owner.
        """
        stores = stores or Stores.open(settings)
        db = stores.db
        guard(db)
        directory = UserDirectory(db)
        directory.bootstrap_from_settings(settings)
        if settings.profile == "embedded":
            directory.ensure_local_owner()
        assert settings.key_encryption_secret is not None  # filled or required by the profile
        keyring = KeyRing(
            db,
            encryption_secret=settings.key_encryption_secret.get_secret_value(),
            lifetime_s=settings.signing_key_lifetime,
            retain_s=max(MIN_KEY_RETENTION_S, settings.access_token_ttl),
        )
        external = external_issuer_from_settings(settings, directory)
        tokens = TokenService(
            db,
            keyring,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            access_ttl=settings.access_token_ttl,
            refresh_ttl=settings.refresh_token_ttl,
            directory=directory,
            external=external,
        )
        audit = AuditLog(db)
        limiter = RateLimiter(
            stores.cache,
            per_user=settings.rate_limit_per_user,
            per_address=settings.rate_limit_per_address,
            window=settings.rate_limit_window,
            fail_open=settings.rate_limit_fail_open,
        )
        bus = bus or bus_from_settings(settings)
        health = HealthRegistry(timeout=settings.health_timeout)
        for name, check in stores.health_checks().items():
            health.add(name, check)
        health.add("bus", bus.health)
        # failing open, a degraded limiter lets requests through: worth reporting, not a reason to stop
        health.add("rate-limiter", limiter.health, critical=not settings.rate_limit_fail_open)
        return cls(
            settings=settings,
            stores=stores,
            bus=bus,
            directory=directory,
            keyring=keyring,
            tokens=tokens,
            audit=audit,
            audit_writer=AuditWriter(db, audit),
            cases=CaseRepository(db),
            media=MediaRepository(db),
            config=ConfigService(db, stores.cache, audit),
            limiter=limiter,
            health=health,
            external=external,
        )

    async def start(self) -> None:
        """Connect the bus (idempotent) and open the vector store, which the stores open lazily and
        which takes longer than a readiness check may; the app's lifespan calls it."""
        await self.bus.start()
        await asyncio.to_thread(lambda: self.stores.vectors)

    async def close(self) -> None:
        """Close the bus, the audit writer (after what is queued), the external issuer's HTTP client and
        every store."""
        await self.bus.close()
        await asyncio.to_thread(self.audit_writer.close)
        if self.external is not None:
            self.external.close()
        self.stores.close()
