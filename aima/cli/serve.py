"""``aima serve``: run the gateway or one function under uvicorn, wired from `Settings`.

* ``api``: the public gateway (its lifespan starts the bus and closes the services);
* ``ingest``: the internal upload API; it verifies service tokens against the shared key ring and
  publishes ``MediaUploaded`` on the bus;
* ``probe``, ``retention``: the function's HTTP adapter (CloudEvents at ``POST /``) and, when the bus
  is NATS, its bus consumer too. On the in-process bus of the embedded profile events do not cross
  processes: ``aima analyze`` runs the whole pipeline in one process instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import click
import uvicorn
from fastapi import FastAPI

from aima.identity.tokens import TokenService
from aima.identity.users import UserDirectory
from aima.settings import Settings, load_settings
from aima.storage.relational import Database
from aima.telemetry.health import HealthRegistry
from aima.telemetry.logging import setup_logging
from aima.telemetry.tracing import setup_tracing
from events.bus import EventBus, Handler, Subscription
from events.factory import bus_from_settings, retry_policy_from_settings
from functions.runtime.worker import instrument

SERVICES = ("api", "ingest", "probe", "retention")
DEFAULT_PORTS = {"api": 8080, "ingest": 8081, "probe": 8082, "retention": 8083}


@dataclass
class Served:
    """An app to serve, the bus its process publishes on (None: the app's lifespan owns it) and the
    subscription of its bus consumer, if it runs one."""

    app: FastAPI
    bus: EventBus | None = None
    subscription: Subscription | None = None


def token_service(settings: Settings, db: Database) -> TokenService:
    """A `TokenService` on the shared key ring, as the gateway opens it (verification only here)."""
    return TokenService.from_settings(settings, db, UserDirectory(db))


def ingest_app(settings: Settings, bus: EventBus) -> FastAPI:
    """The ingest function's HTTP app on the stores ``settings`` name, publishing on ``bus``."""
    from functions.ingest.app import build_core, create_app

    db = Database.from_settings(settings)
    db.migrate()
    health = HealthRegistry(timeout=settings.health_timeout)
    health.add("database", db.health)
    health.add("bus", bus.health)
    return create_app(
        build_core(settings, bus_publish=bus.publish), tokens=token_service(settings, db), health=health
    )


def _api(settings: Settings) -> Served:
    from functions.api.app import create_app
    from functions.api.services import ApiServices

    return Served(create_app(ApiServices.open(settings), close_services=True))


def _ingest(settings: Settings) -> Served:
    bus = bus_from_settings(settings)
    return Served(ingest_app(settings, bus), bus)


def _probe(settings: Settings) -> Served:
    from functions.probe.app import NAME, SUBSCRIBES, build_core, create_app

    bus = bus_from_settings(settings)
    core = build_core(settings)
    app = create_app(core, publisher=bus, health=_bus_health(settings, bus))
    return Served(app, bus, _subscription(settings, NAME, core.handle, SUBSCRIBES))


def _retention(settings: Settings) -> Served:
    from functions.retention.app import NAME, SUBSCRIBES, build_core, create_app

    bus = bus_from_settings(settings)
    core = build_core(settings)
    app = create_app(core, publisher=bus, health=_bus_health(settings, bus))
    return Served(app, bus, _subscription(settings, NAME, core.handle, SUBSCRIBES))


def _bus_health(settings: Settings, bus: EventBus) -> HealthRegistry:
    health = HealthRegistry(timeout=settings.health_timeout)
    health.add("bus", bus.health)
    return health


def _subscription(
    settings: Settings, name: str, handler: Handler, types: tuple[str, ...]
) -> Subscription | None:
    if settings.bus != "nats":
        return None
    policy = retry_policy_from_settings(settings)
    wrapped = instrument(name, handler, max_deliver=policy.max_deliver)
    return Subscription(consumer=name, types=types, handler=wrapped, policy=policy)


BUILDERS: dict[str, Callable[[Settings], Served]] = {
    "api": _api,
    "ingest": _ingest,
    "probe": _probe,
    "retention": _retention,
}


def build(name: str, settings: Settings) -> Served:
    """What ``aima serve NAME`` runs; logging and tracing are set up for it."""
    setup_logging(settings.log_level, settings.log_json, service=name)
    setup_tracing(settings.service_name)
    return BUILDERS[name](settings)


async def serve(served: Served, host: str, port: int) -> None:
    """Serve until SIGINT/SIGTERM: start the bus (and the consumer), run uvicorn, close the bus."""
    server = uvicorn.Server(
        uvicorn.Config(served.app, host=host, port=port, log_config=None, access_log=False)
    )
    if served.bus is None:
        await server.serve()
        return
    await served.bus.start()
    try:
        if served.subscription is not None:
            await served.bus.subscribe(served.subscription)
        await server.serve()
    finally:
        with contextlib.suppress(Exception):
            await served.bus.close()


@click.command("serve")
@click.argument("service", type=click.Choice(SERVICES))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Default: api 8080, ingest 8081, probe 8082, retention 8083.",
)
def serve_command(service: str, host: str, port: int | None) -> None:
    """Run the gateway or a function under uvicorn, configured from AIMA_* settings."""
    settings = load_settings()
    port = DEFAULT_PORTS[service] if port is None else port
    asyncio.run(serve(build(service, settings), host, port))
