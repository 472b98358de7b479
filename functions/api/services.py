"""`ApiServices`: everything the gateway's routes use, wired from `Settings` once per process."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx

from aima.config.service import ConfigService
from aima.identity.keys import KeyRing
from aima.identity.oidc import ExternalIssuer, external_issuer_from_settings
from aima.identity.oidc_signin import OidcSignIn, oidc_signin_from_settings
from aima.identity.playback import PlaybackTickets
from aima.identity.tokens import TokenService
from aima.identity.users import UserDirectory
from aima.model_settings import ModelTask
from aima.settings import Settings
from aima.storage.audit import AuditLog
from aima.storage.cases import CaseRepository
from aima.storage.factory import Stores
from aima.storage.media import MediaRepository
from aima.storage.outbox import Outbox
from aima.storage.scoped import guard
from aima.telemetry.health import HealthRegistry
from events.bus import EventBus
from events.factory import bus_from_settings
from events.relay import OutboxRelay
from functions.api.auditing import AuditWriter
from functions.api.forwarding import IngestClient
from functions.api.ratelimit import RateLimiter
from inference.pool import ModelPool


@dataclass
class ApiServices:
    """The stores, bus, identity, audit (and its batching writer), repositories, configuration, rate
    limiter, health checks and the client of the ingest function."""

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
    ingest: IngestClient
    relay: OutboxRelay
    playback: PlaybackTickets
    """Tickets for the signed, short-lived URLs a media player fetches a file's bytes with."""
    external: ExternalIssuer | None = None
    signin: OidcSignIn | None = None
    """The OIDC sign-in of the review workspace, where ``AIMA_OIDC_CLIENT_ID`` is set."""
    models: ModelPool | None = None
    """The models of the gateway's own work (the text embedder for search queries)."""
    own_models: bool = False

    @classmethod
    def open(
        cls,
        settings: Settings,
        *,
        stores: Stores | None = None,
        bus: EventBus | None = None,
        ingest_transport: httpx.AsyncBaseTransport | None = None,
        relay: OutboxRelay | None = None,
        models: ModelPool | None = None,
    ) -> ApiServices:
        """Open the stores (migrated) and the bus (not started: see `start`) chosen by ``settings``;
        ingest is called at ``settings.function_urls["ingest"]`` (through ``ingest_transport`` if given).

        The scope guard is switched on, the first admin is created from ``AIMA_BOOTSTRAP_ADMIN_*``
        when there is no user yet, and the embedded profile gets its local owner.
        """
        stores = stores or Stores.open(settings)
        db = stores.db
        guard(db)
        directory = UserDirectory(db, principal_ttl=settings.access_cache_ttl)
        directory.bootstrap_from_settings(settings)
        if settings.profile == "embedded":
            directory.ensure_local_owner(settings.bootstrap_tenant)  # the CLI's tenant (aima.cli.context)
        external = external_issuer_from_settings(settings, directory)
        tokens = TokenService.from_settings(settings, db, directory, external)
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
        # the gateway uses the cache for the rate limiter and the configuration cache only, and the
        # configuration falls back to the database: when the limiter fails open, a cache outage (and
        # the limiter it degrades) is worth reporting, not a reason to take the gateway out of service
        optional = {"cache", "rate-limiter"} if settings.rate_limit_fail_open else set()
        for name, check in stores.health_checks().items():
            health.add(name, check, critical=name not in optional)
        health.add("bus", bus.health)
        health.add("rate-limiter", limiter.health, critical="rate-limiter" not in optional)
        own_models = models is None
        models = models or ModelPool.from_settings(settings)
        # search answers 503 without its text embedder; the gateway's other routes do not need it
        for name, check in models.readiness_checks([ModelTask.TEXT_EMBEDDER]).items():
            health.add(name, check, critical=False)
        return cls(
            settings=settings,
            stores=stores,
            bus=bus,
            directory=directory,
            keyring=tokens.keyring,
            tokens=tokens,
            audit=audit,
            audit_writer=AuditWriter(db, audit),
            cases=CaseRepository(db, memberships_ttl=settings.access_cache_ttl),
            media=MediaRepository(db),
            config=ConfigService(db, stores.cache, audit),
            limiter=limiter,
            health=health,
            ingest=IngestClient.from_settings(settings, tokens=tokens, transport=ingest_transport),
            external=external,
            signin=oidc_signin_from_settings(settings, external, tokens.keyring),
            relay=relay or OutboxRelay(Outbox(db), bus),
            playback=PlaybackTickets(tokens.keyring, directory, issuer=settings.jwt_issuer),
            models=models,
            own_models=own_models,
        )

    async def start(self) -> None:
        """Connect the bus (idempotent) and open the vector store, which the stores open lazily and
        which takes longer than a readiness check may; the app's lifespan calls it."""
        await self.bus.start()
        await self.relay.start()  # publishes what the gateway's changes wrote to the outbox
        await asyncio.to_thread(lambda: self.stores.vectors)

    async def close(self) -> None:
        """Close the bus, the audit writer (after what is queued), the HTTP clients and every store."""
        await self.relay.stop()
        await self.bus.close()
        await self.ingest.close()
        await asyncio.to_thread(self.audit_writer.close)
        if self.external is not None:
            self.external.close()
        if self.models is not None and self.own_models:
            await asyncio.to_thread(self.models.close)
        self.stores.close()
