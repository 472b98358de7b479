"""The configuration service: versioned runtime settings per section, global or per tenant.

Every change inserts the section's next version (a whole, validated section) and its audit record
in one transaction. The effective configuration of a tenant is, section by section, the newest
tenant version, else the newest global version, else the defaults. It is cached (the `Cache` port,
Redis in the cluster profile) under a generation token that every change replaces, so a reader
racing a change can never pin an old value; entries also expire after ``cache_ttl`` seconds, which
bounds staleness when another process could not reach the cache to invalidate it.

The cache is an optimisation only: when it fails, reads fall back to the database and writes still
succeed, with one warning per outage; the cache is retried every ``cache_retry`` seconds and, once
back, starts a fresh generation before it is trusted again.

`ConfigService.set` writes ``io.aima.config.changed.v1`` to the outbox in the change's transaction;
every process receives it as a broadcast and calls `ConfigService.invalidate`, so a change applies
everywhere at once, not after ``cache_ttl``. Connection settings and secrets are not here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from aima.access.scope import Scope
from aima.config.schema import SECTIONS, RuntimeConfig
from aima.storage.audit import AuditLog
from aima.storage.cache import Cache
from aima.storage.config_store import ConfigStore, Stored
from aima.storage.outbox import Outbox
from aima.storage.relational import Database
from events.catalogue import ConfigChanged, make_event
from events.envelope import derived_event_id

log = logging.getLogger(__name__)
SOURCE = "/aima/kernel/config"

GENERATION_KEY = "config:generation"
CACHE_TTL = 60.0
CACHE_RETRY = 5.0


class InvalidConfig(ValueError):
    """A configuration value was refused; ``fields`` names the offending fields (``section.field``)."""

    def __init__(self, message: str, fields: list[str]) -> None:
        super().__init__(message)
        self.fields = fields


@dataclass(frozen=True)
class ConfigChange:
    """A stored change: the section, its level (None: global) and the new version."""

    key: str
    tenant_id: str | None
    version: int


class ConfigService:
    """Read, change and cache runtime settings (see module docstring)."""

    def __init__(
        self,
        db: Database,
        cache: Cache,
        audit: AuditLog,
        *,
        cache_ttl: float = CACHE_TTL,
        cache_retry: float = CACHE_RETRY,
    ) -> None:
        self._store = ConfigStore(db)
        self._outbox = Outbox(db)
        self._cache = cache
        self._audit = audit
        self._ttl = cache_ttl
        self._retry = cache_retry
        self._state = threading.Lock()
        self._down_at: float | None = None  # when the cache last failed; None while it works

    def effective(self, tenant_id: str) -> RuntimeConfig:
        """The tenant's effective configuration; from the cache when possible, never failing for it."""
        cached, key = self._cache_read(tenant_id)
        if cached is not None:
            return cached
        config = self._merge(self._store.newest(None), self._store.newest(tenant_id))
        if key is not None:
            self._cache_call(lambda: self._cache.set(key, config.model_dump_json().encode(), ttl=self._ttl))
        return config

    def get(self, key: str, tenant_id: str | None) -> Stored:
        """The section as it applies at this level, and the level's own version (0: inherited)."""
        model = _section(key)
        own = self._store.newest(tenant_id, key).get(key)
        if own is not None:
            return own
        inherited = self._store.newest(None, key).get(key) if tenant_id is not None else None
        return (inherited[0] if inherited else model().model_dump(mode="json")), 0

    def set(
        self,
        key: str,
        value: dict[str, Any],
        *,
        actor: str,
        tenant_id: str | None,
        audit_tenant_id: str,
        request_id: str | None = None,
        client: str | None = None,
        trace_id: str | None = None,
    ) -> ConfigChange:
        """Store ``value`` as the next version of section ``key`` (globally if ``tenant_id`` is None).

        The version, its audit record (``config.write`` in ``audit_tenant_id``, with the request's
        ``request_id``, ``client`` and ``trace_id``) and ``io.aima.config.changed.v1`` (in the outbox)
        commit together; the cache is invalidated afterwards. Raises `InvalidConfig` naming the field
        if the section model refuses the value.
        """
        model = _section(key)
        if not isinstance(value, dict):
            raise InvalidConfig(f"{key}: the value must be an object", [key])
        try:
            normalised = model.model_validate(value).model_dump(mode="json")
        except ValidationError as error:
            fields = [".".join((key, *map(str, e["loc"]))) for e in error.errors()]
            details = "; ".join(f"{f}: {e['msg']}" for f, e in zip(fields, error.errors(), strict=True))
            raise InvalidConfig(f"invalid configuration: {details}", fields) from None
        canonical = json.dumps(normalised, sort_keys=True, separators=(",", ":"))
        scope = Scope.for_tenant(audit_tenant_id, actor)
        with self._store.transaction(scope) as session:
            version = self._store.append(session, tenant_id, key, normalised, actor)
            self._audit.record(
                session,
                tenant_id=audit_tenant_id,
                actor=actor,
                action="config.write",
                outcome="allowed",
                object=f"config/{key}",
                request_id=request_id,
                client=client,
                trace_id=trace_id,
                detail={
                    "key": key,
                    "tenant_id": tenant_id,
                    "version": version,
                    "value_sha256": hashlib.sha256(canonical.encode()).hexdigest(),
                },
            )
            notice = ConfigChanged(tenant_id=tenant_id, key=key, version=version)
            event_id = derived_event_id(f"config:{tenant_id or '*'}:{key}", str(version))
            self._outbox.add(
                session, [make_event(notice, source=SOURCE, subject=f"config/{key}", event_id=event_id)]
            )
        self._cache_call(self._new_generation)
        return ConfigChange(key, tenant_id, version)

    def invalidate(self) -> None:
        """Forget every cached configuration (another process changed one: ``config.changed``)."""
        self._cache_call(self._new_generation)

    def history(self, key: str, tenant_id: str | None) -> list[dict[str, Any]]:
        """Every version of the section at this level, newest first, with changed_by and changed_at."""
        _section(key)
        return self._store.history(tenant_id, key)

    def _merge(
        self,
        global_values: dict[str, tuple[dict[str, Any], int]],
        tenant_values: dict[str, tuple[dict[str, Any], int]],
    ) -> RuntimeConfig:
        sections: dict[str, BaseModel] = {}
        for name, model in SECTIONS.items():
            for level, stored in (("tenant", tenant_values.get(name)), ("global", global_values.get(name))):
                if stored is None:
                    continue
                try:
                    sections[name] = model.model_validate(stored[0])
                    break
                except ValidationError:  # written under an older schema: skip to the next level
                    log.warning("stored %s configuration %s v%d no longer validates", level, name, stored[1])
        return RuntimeConfig.model_validate(sections)

    def _cache_read(self, tenant_id: str) -> tuple[RuntimeConfig | None, str | None]:
        """The cached configuration (or None) and the key to cache it under (None: cache unusable)."""
        with self._state:
            if self._down_at is not None and time.monotonic() - self._down_at < self._retry:
                return None, None
            recovering = self._down_at is not None
        try:
            # after an outage, cached values may predate changes made meanwhile: start a new generation
            generation = None if recovering else self._cache.get(GENERATION_KEY)
            if generation is None:
                generation = self._new_generation()
            key = f"config:{generation.decode()}:{tenant_id}"
            raw = self._cache.get(key)
        except Exception as error:  # adapters raise their driver's errors too: any failure means the database
            self._failed(error)
            return None, None
        self._recovered()
        if raw is None:
            return None, key
        try:
            return RuntimeConfig.model_validate_json(raw), key
        except ValidationError:  # cached by another version of the schema
            return None, key

    def _new_generation(self) -> bytes:
        generation = uuid.uuid4().hex.encode()
        self._cache.set(GENERATION_KEY, generation)
        return generation

    def _cache_call(self, call: Callable[[], object]) -> None:
        try:
            call()
        except Exception as error:  # the cache must never fail a read or a write
            self._failed(error)
        else:
            self._recovered()

    def _failed(self, error: Exception) -> None:
        with self._state:
            first = self._down_at is None
            self._down_at = time.monotonic()
        if first:
            log.warning("configuration cache unavailable, using the database: %s", error)

    def _recovered(self) -> None:
        with self._state:
            was_down, self._down_at = self._down_at is not None, None
        if was_down:
            log.info("configuration cache available again")


def _section(key: str) -> type[BaseModel]:
    try:
        return SECTIONS[key]
    except KeyError:
        raise InvalidConfig(f"unknown configuration section {key!r}", [key]) from None
