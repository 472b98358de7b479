"""The probe function's adapters: an HTTP app as Knative calls it, and what its bus worker subscribes to.

Run as a worker with ``run_worker(NAME, core.handle, SUBSCRIBES, bus, policy)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from fastapi import FastAPI

from aima.config.service import ConfigService
from aima.settings import Settings
from aima.storage.audit import AuditLog
from aima.storage.cache import cache_from_url
from aima.storage.documents import DocumentStore
from aima.storage.media import MediaRepository
from aima.storage.objects import object_store_from_settings
from aima.storage.relational import Database
from aima.telemetry.health import HealthRegistry
from events.bus import EventBus
from events.catalogue import MediaUploaded
from functions.probe.core import ProbeCore, ProbeLimits
from functions.runtime.app import create_function_app

NAME = "probe"
SUBSCRIBES = (MediaUploaded.TYPE,)


def build_core(settings: Settings, limits: ProbeLimits | None = None) -> ProbeCore:
    """A core on the stores that ``settings`` name; without fixed ``limits``, each tenant's duration
    limit and frame density come from the runtime configuration (``limits.max_duration_s``,
    ``analysis.max_frames_per_minute``)."""
    assert settings.cache_url is not None  # filled or required by the profile
    objects = object_store_from_settings(settings)
    documents = DocumentStore.from_settings(settings)
    db = Database.from_settings(settings)
    media = MediaRepository(db)
    if limits is not None:
        return ProbeCore(objects, documents, media, limits=limits)
    config = ConfigService(db, cache_from_url(settings.cache_url), AuditLog(db))
    return ProbeCore(objects, documents, media, limits_for=tenant_limits(config))


def tenant_limits(config: ConfigService, base: ProbeLimits | None = None) -> Callable[[str], ProbeLimits]:
    """Each tenant's probe limits: ``base`` with the configured duration limit and frame density."""

    def limits_for(tenant_id: str) -> ProbeLimits:
        effective = config.effective(tenant_id)
        return replace(
            base or ProbeLimits(),
            max_duration_s=float(effective.limits.max_duration_s),
            max_frames_per_minute=effective.analysis.max_frames_per_minute,
        )

    return limits_for


def create_app(core: ProbeCore, *, publisher: EventBus | None, health: HealthRegistry) -> FastAPI:
    """The HTTP adapter: ``POST /`` takes MediaUploaded CloudEvents; emitted events go to ``publisher``."""
    return create_function_app(NAME, core.handle, publisher=publisher, health=health, accepts=SUBSCRIBES)
