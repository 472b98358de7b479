"""The probe function's adapters: an HTTP app as Knative calls it, and what its bus worker subscribes to.

Run as a worker with ``run_worker(NAME, core.handle, SUBSCRIBES, bus, policy)``.
"""

from __future__ import annotations

from fastapi import FastAPI

from aima.settings import Settings
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
    """A core on the stores that ``settings`` name."""
    objects = object_store_from_settings(settings)
    documents = DocumentStore.from_settings(settings)
    media = MediaRepository(Database.from_settings(settings))
    return ProbeCore(objects, documents, media, limits=limits or ProbeLimits())


def create_app(core: ProbeCore, *, publisher: EventBus | None, health: HealthRegistry) -> FastAPI:
    """The HTTP adapter: ``POST /`` takes MediaUploaded CloudEvents; emitted events go to ``publisher``."""
    return create_function_app(NAME, core.handle, publisher=publisher, health=health, accepts=SUBSCRIBES)
