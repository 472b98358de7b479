"""``aima health``: one readiness report over every store and the bus."""

from __future__ import annotations

import contextlib

from aima.settings import Settings
from aima.storage.factory import Stores
from aima.telemetry.health import HealthRegistry, HealthReport
from events.factory import bus_from_settings


async def check_all(settings: Settings) -> HealthReport:
    """Open each component as configured and report which are up; never raises for a down one."""
    registry = HealthRegistry(timeout=settings.health_timeout)
    try:
        stores = Stores.open(settings, migrate=False)
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}"

        def failed() -> None:
            raise RuntimeError(message)

        registry.add("stores", failed)
        return await registry.report()
    for name, check in stores.health_checks().items():
        registry.add(name, check)
    bus = bus_from_settings(settings)
    with contextlib.suppress(Exception):  # bus.health() below reports the same failure
        await bus.start()
    registry.add("bus", bus.health)
    try:
        return await registry.report()
    finally:
        await bus.close()
        stores.close()
