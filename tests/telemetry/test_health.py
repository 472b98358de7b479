"""Health checks against real Redis servers: up, down when stopped, up again when restarted."""

from __future__ import annotations

import asyncio
import threading
import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from aima.settings import get_settings
from aima.telemetry.health import HealthRegistry
from aima.telemetry.metrics import REGISTRY
from tests.support import RedisServer


def component_up(name: str) -> float | None:
    return REGISTRY.get_sample_value("aima_component_up", {"component": name})


def redis_ping(port: int) -> redis.Redis:
    """A client that fails fast: no retries, short socket timeouts."""
    return redis.Redis(
        host="127.0.0.1",
        port=port,
        socket_connect_timeout=0.5,
        socket_timeout=0.5,
        retry=Retry(NoBackoff(), 0),
    )


async def test_the_real_redis_reports_up() -> None:
    client = redis_ping(6379)
    health = HealthRegistry(timeout=2.0, cache_seconds=0)
    health.add("redis", client.ping)

    report = await health.report()

    assert report.status == "ok"
    assert report.ready
    assert report.components["redis"].status == "up"
    assert report.components["redis"].error is None
    assert report.components["redis"].latency_ms > 0
    assert component_up("redis") == 1
    client.close()


async def test_a_stopped_redis_is_down_and_up_again_after_a_restart(own_redis: RedisServer) -> None:
    client = redis_ping(own_redis.port)
    health = HealthRegistry(timeout=1.0, cache_seconds=0)
    health.add("cache", client.ping)
    health.add("always", lambda: None)
    assert (await health.report()).status == "ok"

    own_redis.stop()
    started = time.monotonic()
    report = await health.report()
    elapsed = time.monotonic() - started

    assert elapsed < 1.0 + 0.5
    assert report.status == "degraded"
    assert not report.ready
    assert report.components["cache"].status == "down"
    assert report.components["cache"].error
    assert report.components["always"].status == "up"
    assert component_up("cache") == 0

    own_redis.start()
    report = await health.report()
    assert report.status == "ok"
    assert report.components["cache"].status == "up"
    assert component_up("cache") == 1
    client.close()


async def test_a_hanging_check_is_down_within_the_timeout_and_runs_once() -> None:
    release = threading.Event()
    calls = 0

    def hang() -> None:
        nonlocal calls
        calls += 1
        release.wait(10)

    async def hang_async() -> None:
        await asyncio.sleep(10)

    health = HealthRegistry(timeout=0.3, cache_seconds=0)
    health.add("blocking-driver", hang)
    health.add("async-driver", hang_async)
    try:
        for _ in range(2):
            started = time.monotonic()
            report = await health.report()
            assert time.monotonic() - started < 0.3 + 0.4
            assert report.status == "degraded"
            for name in ("blocking-driver", "async-driver"):
                assert report.components[name].status == "down"
                assert report.components[name].error == "timed out after 0.3s"
        assert calls == 1  # the second report awaited the still-running first call
    finally:
        release.set()


async def test_a_blocking_check_does_not_stall_the_event_loop() -> None:
    health = HealthRegistry(timeout=2.0, cache_seconds=0)
    health.add("slow", lambda: time.sleep(0.5))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    report = await health.report()
    task.cancel()
    assert report.components["slow"].status == "up"
    assert ticks >= 20  # the loop kept running while the check blocked its thread


async def test_failures_are_reported_not_raised_and_non_critical_ones_keep_it_ready() -> None:
    async def bus_check() -> None:
        raise ConnectionError("bus at nats://aima:hunter2@nats:4222 unreachable")

    def vision() -> None:
        raise ValueError("no endpoint")

    health = HealthRegistry(timeout=1.0, cache_seconds=0)
    health.add("vision", vision, critical=False)
    report = await health.report()
    assert report.status == "degraded"
    assert report.ready
    assert report.components["vision"].error == "ValueError: no endpoint"
    assert report.components["vision"].critical is False

    health.add("bus", bus_check)
    report = await health.report()
    assert not report.ready
    error = report.components["bus"].error or ""
    assert error.startswith("ConnectionError: bus at nats://aima:")
    assert "hunter2" not in error


async def test_reports_are_cached_briefly() -> None:
    calls = 0

    def counted() -> None:
        nonlocal calls
        calls += 1

    health = HealthRegistry(timeout=1.0, cache_seconds=60)
    health.add("db", counted)
    first = await health.report()
    assert await health.report() is first
    assert calls == 1
    health.add("cache", counted)  # a new check invalidates the cached report
    assert set((await health.report()).components) == {"db", "cache"}
    assert calls == 3


def test_the_default_timeout_comes_from_settings() -> None:
    assert HealthRegistry().timeout == get_settings().health_timeout == 2.0
