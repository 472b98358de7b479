"""`Deps`: the services of one process, opened once from `Settings` and shared by its functions.

A spec's ``build`` and ``app`` take a `Deps` and pick what they use; everything is opened on first
use, so a function that needs no vector store never starts Milvus Lite. The bus signs every event
it publishes (`events.signing.SigningBus`), and the configuration service is the one that
``io.aima.config.changed.v1`` notices invalidate.
"""

from __future__ import annotations

from functools import cached_property

from fastapi import FastAPI

from aima.config.service import ConfigService
from aima.identity.keys import KeyRing
from aima.identity.tokens import TokenService
from aima.identity.users import UserDirectory
from aima.settings import Settings
from aima.storage.audit import AuditLog
from aima.storage.factory import Stores
from aima.storage.outbox import Outbox
from aima.storage.relational import Database
from events.bus import EventBus, RetryPolicy
from events.factory import bus_from_settings, retry_policy_from_settings
from events.relay import OutboxRelay
from events.signing import EventSigner, SigningBus
from inference.pool import ModelPool


class Deps:
    """Lazily opened services of one process (see module docstring)."""

    def __init__(
        self, settings: Settings, *, bus: EventBus | None = None, stores: Stores | None = None
    ) -> None:
        self.settings = settings
        self._raw_bus = bus
        self._stores = stores
        self.local_apps: dict[str, FastAPI] = {}
        """HTTP apps of functions served in this very process, by name (called in-process)."""

    @cached_property
    def stores(self) -> Stores:
        """Every store. Embedded, the schema is migrated on open; in a cluster ``aima migrate`` runs
        once per release (a Job), not in every replica's cold start."""
        return self._stores or Stores.open(self.settings, migrate=self.settings.profile == "embedded")

    @property
    def db(self) -> Database:
        return self.stores.db

    @cached_property
    def audit(self) -> AuditLog:
        return AuditLog(self.db)

    @cached_property
    def config(self) -> ConfigService:
        """The runtime configuration, cached in this process's cache and invalidated by notices."""
        return ConfigService(self.db, self.stores.cache, self.audit)

    @cached_property
    def tokens(self) -> TokenService:
        """Tokens on the shared key ring (functions verify; the gateway also issues)."""
        return TokenService.from_settings(self.settings, self.db, UserDirectory(self.db))

    @property
    def keyring(self) -> KeyRing:
        return self.tokens.keyring

    @cached_property
    def signer(self) -> EventSigner:
        return EventSigner(self.keyring)

    @cached_property
    def bus(self) -> SigningBus:
        """The bus chosen by settings (not started), signing what it publishes."""
        return SigningBus(self._raw_bus or bus_from_settings(self.settings), self.signer)

    @cached_property
    def outbox(self) -> Outbox:
        return Outbox(self.db)

    @cached_property
    def relay(self) -> OutboxRelay:
        return OutboxRelay(self.outbox, self.bus)

    @cached_property
    def models(self) -> ModelPool:
        """The models of this process, one per task, created on first use from ``AIMA_MODELS__*``."""
        return ModelPool.from_settings(self.settings)

    @property
    def retry_policy(self) -> RetryPolicy:
        return retry_policy_from_settings(self.settings)

    def close(self) -> None:
        """Release the models and the stores (the bus is closed by whoever started it)."""
        if "models" in self.__dict__:
            self.models.close()
        if "stores" in self.__dict__ and self._stores is None:
            self.stores.close()
