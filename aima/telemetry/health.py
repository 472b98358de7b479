"""Readiness checks of a process's dependencies (database, cache, bus, ...), bounded in time.

A check is a callable that returns (or returns an awaitable) when its component works and raises
when it does not; what it returns is ignored. Plain callables run in a worker thread so a blocking
driver never stalls the event loop; every check is bounded by a timeout. A check still running
from an earlier report is awaited again rather than started twice, so a hanging driver holds at
most one thread per check.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from aima.settings import get_settings
from aima.telemetry.logging import mask_text
from aima.telemetry.metrics import COMPONENT_UP

Check = Callable[[], object]  # returns or awaits to anything (e.g. PING's True); raises when down


class ComponentHealth(BaseModel):
    """The result of one component's check."""

    status: Literal["up", "down"]
    critical: bool
    latency_ms: float
    error: str | None = None


class HealthReport(BaseModel):
    """All components; ``degraded`` if any is down, ``ready`` unless a critical one is down."""

    status: Literal["ok", "degraded"]
    ready: bool
    components: dict[str, ComponentHealth]


@dataclass
class _Registered:
    check: Check
    critical: bool
    running: asyncio.Task[None] | None = None


class HealthRegistry:
    """Named checks run concurrently by `report`, which never raises."""

    def __init__(self, timeout: float | None = None, cache_seconds: float = 1.0) -> None:
        self.timeout = timeout if timeout is not None else get_settings().health_timeout
        self.cache_seconds = cache_seconds
        self._checks: dict[str, _Registered] = {}
        self._cached: tuple[float, HealthReport] | None = None

    def add(self, name: str, check: Check, *, critical: bool = True) -> None:
        """Register (or replace) the check of component ``name``."""
        self._checks[name] = _Registered(check, critical)
        self._cached = None

    async def report(self) -> HealthReport:
        """Run every check (or reuse a report younger than ``cache_seconds``)."""
        if self._cached is not None and time.monotonic() - self._cached[0] < self.cache_seconds:
            return self._cached[1]
        names = list(self._checks)
        results = await asyncio.gather(*(self._run(self._checks[name]) for name in names))
        components = dict(zip(names, results, strict=True))
        for name, component in components.items():
            COMPONENT_UP.labels(name).set(1 if component.status == "up" else 0)
        down = [c for c in components.values() if c.status == "down"]
        report = HealthReport(
            status="degraded" if down else "ok",
            ready=not any(c.critical for c in down),
            components=components,
        )
        self._cached = (time.monotonic(), report)
        return report

    async def _run(self, entry: _Registered) -> ComponentHealth:
        started = time.perf_counter()
        error: str | None = None
        try:
            running = entry.running
            if running is None or running.done() or running.get_loop() is not asyncio.get_running_loop():
                running = entry.running = asyncio.ensure_future(_call(entry.check))
                running.add_done_callback(_consume)
            await asyncio.wait_for(asyncio.shield(running), self.timeout)
        except TimeoutError:
            error = f"timed out after {self.timeout:g}s"
        except Exception as exc:
            error = mask_text(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        return ComponentHealth(
            status="down" if error else "up",
            critical=entry.critical,
            latency_ms=round((time.perf_counter() - started) * 1000, 2),
            error=error,
        )


async def _call(check: Check) -> None:
    if inspect.iscoroutinefunction(check):
        await check()
        return
    result = await asyncio.to_thread(check)
    if inspect.isawaitable(result):
        await result


def _consume(task: asyncio.Task[None]) -> None:
    """Retrieve a finished check's exception so asyncio does not warn it was never retrieved."""
    if not task.cancelled():
        task.exception()
