"""The gateway on a Redis of its own (rate limiter and configuration cache) that dies and comes back.

While Redis is down, configuration is read from and written to the database, readiness reports the
cache and the rate limiter down (critical only when the limiter fails closed), requests pass when
the limiter fails open and get 503 with ``Retry-After`` when it fails closed, and nothing answers
500. With Redis back on the same port, readiness recovers and the per-user limit applies again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from functions.api.app import create_app
from functions.api.services import ApiServices
from tests.api.conftest import PASSWORD, api_settings, client_for, login, unique
from tests.api.test_transport import problem
from tests.support import RedisServer

PER_USER = 5
WINDOW = 86400  # one window for the whole test: the count cannot roll over between two requests
THRESHOLDS = "/api/v1/config/thresholds"


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=[True, False], ids=["fail-open", "fail-closed"])
async def gateway(
    request: pytest.FixtureRequest, own_redis: RedisServer, tmp_path: Path
) -> AsyncIterator[tuple[ApiServices, httpx.AsyncClient]]:
    settings = api_settings(
        tmp_path,
        cache_url=own_redis.url,
        rate_limit_per_user=PER_USER,
        rate_limit_window=WINDOW,
        rate_limit_fail_open=request.param,
    )
    services = ApiServices.open(settings)
    services.health.cache_seconds = 0  # every /readyz runs the checks
    async with client_for(create_app(services)) as client:
        yield services, client
    await services.close()


async def readiness(client: httpx.AsyncClient, status: int) -> dict[str, Any]:
    response = await client.get("/readyz")
    assert response.status_code == status, response.text
    report: dict[str, Any] = response.json()
    return report


async def test_the_gateway_outlives_a_redis_outage_and_limits_again_once_it_is_back(
    gateway: tuple[ApiServices, httpx.AsyncClient], own_redis: RedisServer
) -> None:
    services, client = gateway
    fail_open = services.settings.rate_limit_fail_open
    admin = services.directory.create_user(
        services.directory.ensure_tenant(unique("acme")), unique("admin"), PASSWORD, "admin"
    )
    headers = {"Authorization": f"Bearer {(await login(client, admin.username))['access_token']}"}

    # healthy: ready, configuration read and cached in Redis
    healthy = await readiness(client, 200)
    assert healthy["status"] == "ok"
    assert {healthy["components"][name]["status"] for name in ("cache", "rate-limiter")} == {"up"}
    before = await client.get("/api/v1/config", headers=headers)
    assert before.status_code == 200
    default_face_match = before.json()["thresholds"]["face_match"]
    probe = redis.Redis.from_url(own_redis.url)
    assert any(key.startswith(b"aima:k:config:") for key in probe.scan_iter())
    assert any(key.startswith(b"aima:k:ratelimit:user:") for key in probe.scan_iter())
    probe.close()

    own_redis.stop()
    report = await readiness(client, 200 if fail_open else 503)
    assert report["status"] == "degraded"
    assert report["ready"] is fail_open
    for name in ("cache", "rate-limiter"):
        component = report["components"][name]
        assert component["status"] == "down"
        assert component["critical"] is not fail_open
    assert report["components"]["cache"]["error"].startswith("CacheError: redis: ConnectionError")
    mode = "fail open" if fail_open else "fail closed: requests are refused"
    assert (
        report["components"]["rate-limiter"]["error"]
        == f"RateLimiterDegraded: rate limiter degraded ({mode})"
    )
    assert report["components"]["database"]["status"] == "up"

    changed = default_face_match / 2
    calls = [
        ("GET", "/api/v1/config", None),
        ("PUT", THRESHOLDS, {"face_match": changed}),
        ("GET", THRESHOLDS, None),
        ("GET", "/api/v1/config", None),
        ("GET", "/api/v1/cases", None),
    ]
    responses = [await client.request(m, path, headers=headers, json=body) for m, path, body in calls]
    if fail_open:
        assert [r.status_code for r in responses] == [200] * len(calls)
        assert responses[1].json() == responses[2].json()
        assert responses[2].json()["value"]["face_match"] == changed
        assert responses[3].json()["thresholds"]["face_match"] == changed  # from the database
    else:
        for response in responses:
            assert problem(response, 503, "rate-limiter-unavailable")
            assert response.headers["retry-after"] == "1"
        assert (await client.get("/healthz")).status_code == 200  # probes are not limited

    own_redis.start()  # same port, empty
    recovered = await readiness(client, 200)
    assert recovered["status"] == "ok"
    assert {recovered["components"][name]["status"] for name in ("cache", "rate-limiter")} == {"up"}
    statuses = [(await client.get("/api/v1/cases", headers=headers)).status_code for _ in range(PER_USER + 1)]
    assert statuses == [200] * PER_USER + [429]
    refused = await client.get("/api/v1/cases", headers=headers)
    body = problem(refused, 429, "rate-limited")
    assert 1 <= int(refused.headers["retry-after"]) <= WINDOW
    assert body["detail"] == f"Rate limit exceeded; retry after {refused.headers['retry-after']} s."
    configured = await client.get(THRESHOLDS, headers={"Authorization": headers["Authorization"]})
    assert configured.status_code == 429  # the limit covers every authenticated route
