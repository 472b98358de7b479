"""The retention function's adapters: an HTTP app as Knative calls it, and what its bus worker subscribes to.

Run as a worker with ``run_worker(NAME, core.handle, SUBSCRIBES, bus, policy)``.
"""

from __future__ import annotations

from fastapi import FastAPI

from aima.config.service import ConfigService
from aima.settings import Settings
from aima.storage.audit import AuditLog
from aima.storage.cache import cache_from_url
from aima.storage.documents import DocumentStore
from aima.storage.objects import object_store_from_settings
from aima.storage.relational import Database
from aima.storage.retention import RetentionSweeper
from aima.telemetry.health import HealthRegistry
from events.bus import EventBus
from events.catalogue import RetentionSweepRequested
from functions.retention.core import RetentionCore
from functions.runtime.app import create_function_app

NAME = "retention"
SUBSCRIBES = (RetentionSweepRequested.TYPE,)


def build_core(settings: Settings) -> RetentionCore:
    """A core on the stores that ``settings`` name."""
    assert settings.cache_url is not None  # filled or required by the profile
    db = Database.from_settings(settings)
    audit = AuditLog(db)
    config = ConfigService(db, cache_from_url(settings.cache_url), audit)
    objects = object_store_from_settings(settings)
    documents = DocumentStore.from_settings(settings)
    return RetentionCore(RetentionSweeper(db, objects, documents, config, audit))


def create_app(core: RetentionCore, *, publisher: EventBus | None, health: HealthRegistry) -> FastAPI:
    """The HTTP adapter: ``POST /`` takes RetentionSweepRequested; emitted events go to ``publisher``."""
    return create_function_app(NAME, core.handle, publisher=publisher, health=health, accepts=SUBSCRIBES)
