"""The ingest function: files into a case (the gateway forwards uploads to its internal HTTP API)."""

from __future__ import annotations

from fastapi import FastAPI

from aima.storage.cases import CaseRepository
from aima.storage.jobs import JobRepository
from aima.storage.media import MediaRepository
from events.catalogue import JobCreated, MediaUploaded
from events.envelope import CloudEvent
from functions.ingest.app import create_app
from functions.ingest.core import IngestCore
from functions.runtime.deps import Deps
from functions.runtime.host import readiness
from functions.runtime.spec import FunctionSpec, Resources

NEEDS = ("database", "objects", "documents", "bus")


def build_core(deps: Deps) -> IngestCore:
    """The ingest core on the process's stores. What it commits to the outbox it publishes at once
    through the relay (which marks it published; its sweep takes over while the bus is down)."""
    stores = deps.stores
    relay = deps.relay

    async def publish(event: CloudEvent) -> None:
        await relay.publish([event])

    return IngestCore(
        stores.objects,
        MediaRepository(stores.db),
        JobRepository(stores.db),
        deps.config,
        bus_publish=publish,
        documents=stores.documents,
        cases=CaseRepository(stores.db),
        audit=deps.audit,
    )


def app(deps: Deps) -> FastAPI:
    """The internal upload API; only the gateway (with a token it minted for the request) may call it."""
    return create_app(build_core(deps), tokens=deps.tokens, health=readiness(deps, NEEDS), audit=deps.audit)


SPEC = FunctionSpec(
    name="ingest",
    description="type from content, streamed single, bulk and resumable (tus 1.0) uploads with SHA-256",
    emits=(MediaUploaded, JobCreated),
    app=app,
    needs=NEEDS,
    resources=Resources(cpu="1", memory="512Mi", concurrency=16, timeout_s=3600),
    port=8081,
)
