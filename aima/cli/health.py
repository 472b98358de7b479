"""``aima health``: one readiness report over every store and the bus."""

from __future__ import annotations

from aima.settings import Settings
from aima.storage.factory import Stores
from aima.telemetry.health import HealthRegistry, HealthReport
from events.factory import bus_from_settings


async def check_all(settings: Settings) -> HealthReport:
    """Open each component as configured and report which are up; never raises for a down one."""
    registry = HealthRegistry(timeout=settings.health_timeout)
    try:
        stores = Stores.open(settings, migrate=False)
    except Exception as exc:  # noqa: BLE001 - reported as a down component, not a crash
        message = f"{type(exc).__name__}: {exc}"

        def failed() -> None:
            raise RuntimeError(message)

        registry.add("stores", failed)
        return await registry.report()
    for name, check in stores.health_checks().items():
        registry.add(name, check)
    bus = bus_from_settings(settings)
    try:
        await bus.start()
    except Exception:  # noqa: BLE001, S110 - health() below reports the same failure
        pass
    registry.add("bus", bus.health)
    try:
        return await registry.report()
    finally:
        await bus.close()
        stores.close()
