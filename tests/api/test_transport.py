"""The gateway's transport layer on a small FastAPI app: problems, middleware, rate limits (real Redis)."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import BaseModel, Field

from aima.settings import Settings, load_settings
from aima.storage.cache import Cache, MemoryCache
from aima.storage.cache_redis import RedisCache
from aima.telemetry.health import HealthRegistry
from aima.telemetry.logging import setup_logging
from aima.telemetry.metrics import REGISTRY
from aima.telemetry.tracing import setup_tracing
from functions.api.middleware import API_CSP, DOCS_CSP, REQUEST_ID, install_middleware
from functions.api.problems import (
    INTERNAL_DETAIL,
    PROBLEM_JSON,
    Problem,
    install_problem_handlers,
    problem_responses,
)
from functions.api.ratelimit import RateLimiter, RateLimiterDegraded, Verdict, raise_for_verdict
from tests.support import RedisServer

ORIGIN = "https://app.example"
ADDRESS = "203.0.113.7"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_SPAN}-01"
LEAK = "db at 10.0.0.5 refused user aima_rw"
WINDOW = 60
WINDOW_START = 1_700_000_040.0  # a multiple of WINDOW


class Clock:
    """Wall-clock seconds the limiter sees, 10 s into a window unless moved."""

    def __init__(self) -> None:
        self.now = WINDOW_START + 10

    def __call__(self) -> float:
        return self.now


class Item(BaseModel):
    name: str
    count: int = Field(ge=0)
    secret: str = Field(min_length=12)


class Gateway:
    """A gateway-shaped app with the transport layer and a few dummy routes, plus clients for it."""

    def __init__(self, settings: Settings, limiter: RateLimiter, *, native_tracing: bool = True) -> None:
        self.limiter = limiter
        self.seen: list[str] = []
        self.app = app = FastAPI(title="transport-test", telemetry={"tracing": native_tracing})
        install_problem_handlers(app)
        install_middleware(app, settings, rate_limiter=limiter, body_limit_exempt=("/uploads",))

        @app.get("/items/{item_id}")
        async def get_item(item_id: int, request: Request) -> dict[str, Any]:
            state = request.scope["state"]
            return {"id": item_id, **{key: state[key] for key in ("request_id", "client", "trace_id")}}

        @app.post("/items", status_code=201, responses=problem_responses(409))
        async def create_item(item: Item) -> dict[str, str]:
            self.seen.append("create")
            return {"name": item.name}

        @app.post("/echo")
        async def echo(request: Request) -> dict[str, int]:
            self.seen.append("echo")
            return {"size": len(await request.body())}

        @app.post("/uploads/raw")
        async def upload(request: Request) -> dict[str, int]:
            return {"size": len(await request.body())}

        @app.get("/boom")
        async def boom() -> None:
            raise RuntimeError(LEAK)

        @app.get("/conflict")
        async def conflict() -> None:
            raise Problem(
                409,
                "case-closed",
                "Case closed",
                "Case c1 is closed.",
                headers={"X-Case": "c1"},
                extensions={"case_id": "c1", "status": 999},
            )

        @app.get("/me")
        async def me(request: Request) -> dict[str, str]:
            user = request.headers["x-user"]
            request.state.user_id = user
            raise_for_verdict(limiter.hit("user", user))
            return {"user": user}

        @app.get("/cached")
        async def cached() -> Response:
            return Response(
                b"{}", media_type="application/json", headers={"Cache-Control": "private, max-age=60"}
            )

        @app.get("/healthz")
        async def healthz() -> dict[str, str]:
            return {"status": "alive"}

    def client(self, address: str = ADDRESS, base_url: str = "http://api") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=(address, 40000))
        return httpx.AsyncClient(transport=transport, base_url=base_url)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        profile="embedded",
        data_dir=tmp_path / "aima",
        cors_origins=[ORIGIN],
        max_request_bytes=1024,
        rate_limit_per_user=2,
        rate_limit_per_address=3,
        rate_limit_window=WINDOW,
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


def limiter_for(cache: Cache, settings: Settings, clock: Clock, **overrides: Any) -> RateLimiter:
    options: dict[str, Any] = {
        "per_user": settings.rate_limit_per_user,
        "per_address": settings.rate_limit_per_address,
        "window": settings.rate_limit_window,
        "fail_open": settings.rate_limit_fail_open,
        "clock": clock,
    }
    return RateLimiter(cache, **(options | overrides))


@pytest.fixture
def gateway(settings: Settings, clock: Clock) -> Gateway:
    return Gateway(settings, limiter_for(MemoryCache(), settings, clock, per_address=1000))


@pytest.fixture
async def api(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway.client() as client:
        yield client


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def problem(response: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    """The problem body, after checking the status, media type, type and instance."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:aima:problem:{kind}"
    assert body["status"] == status
    assert body["instance"] == response.headers[REQUEST_ID]
    return body


def access_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    return [line for line in lines if line["logger"] == "aima.access"]


# --- problem details -----------------------------------------------------------------------


async def test_framework_errors_are_problems(api: httpx.AsyncClient) -> None:
    missing = problem(await api.get("/nowhere"), 404, "not-found")
    assert missing["title"] == "Not Found"

    wrong_method = await api.delete("/items/1")
    assert problem(wrong_method, 405, "method-not-allowed")["title"] == "Method Not Allowed"
    assert wrong_method.headers["allow"] == "GET"

    invalid = await api.post("/items", json={"name": "x", "count": -1, "secret": "hunter2"})
    body = problem(invalid, 422, "validation-failed")
    assert sorted(e["loc"] for e in body["errors"]) == [["body", "count"], ["body", "secret"]]
    assert {e["type"] for e in body["errors"]} == {"greater_than_equal", "string_too_short"}
    assert "hunter2" not in invalid.text  # inputs are not echoed
    assert problem(await api.get("/items/abc"), 422, "validation-failed")["errors"] == [
        {
            "loc": ["path", "item_id"],
            "msg": "Input should be a valid integer, unable to parse string as an integer",
            "type": "int_parsing",
        }
    ]


async def test_a_raised_problem_keeps_its_headers_and_extensions(api: httpx.AsyncClient) -> None:
    response = await api.get("/conflict")
    body = problem(response, 409, "case-closed")
    assert (body["title"], body["detail"], body["case_id"]) == ("Case closed", "Case c1 is closed.", "c1")
    assert body["status"] == 409  # an extension cannot override a standard member
    assert response.headers["x-case"] == "c1"


async def test_an_unexpected_error_is_a_generic_500_and_logged_with_its_trace(
    api: httpx.AsyncClient, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    setup_tracing("aima-test")
    setup_logging(service="api")
    response = await api.get("/boom", headers={"traceparent": TRACEPARENT})

    body = problem(response, 500, "internal-error")
    assert body["detail"] == INTERNAL_DETAIL
    for internal in (LEAK, "RuntimeError", "Traceback", "boom"):
        assert internal not in response.text
    assert response.headers["x-content-type-options"] == "nosniff"
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    [error] = [line for line in lines if line["level"] == "ERROR"]
    assert error["trace_id"] == TRACE_ID
    assert error["request_id"] == body["instance"]
    assert f"RuntimeError: {LEAK}" in error["exception"]
    [access] = [line for line in lines if line["logger"] == "aima.access"]
    assert (access["status"], access["route"], access["trace_id"]) == (500, "/boom", TRACE_ID)


async def test_without_the_middleware_the_handlers_still_answer_500_as_a_problem() -> None:
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError(LEAK)

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        response = await client.get("/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json() == {
        "type": "urn:aima:problem:internal-error",
        "title": "Internal server error",
        "status": 500,
        "detail": INTERNAL_DETAIL,
    }


def test_problem_responses_document_problem_json(gateway: Gateway) -> None:
    schema = gateway.app.openapi()
    declared = schema["paths"]["/items"]["post"]["responses"]["409"]
    assert declared["content"][PROBLEM_JSON]["schema"] == {"$ref": "#/components/schemas/ProblemModel"}
    assert {"type", "title", "status"} <= set(schema["components"]["schemas"]["ProblemModel"]["required"])


# --- body size -----------------------------------------------------------------------------


async def chunks(count: int, size: int = 256) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield b"x" * size


async def test_a_declared_oversized_body_is_refused_before_the_route_runs(
    api: httpx.AsyncClient, gateway: Gateway
) -> None:
    response = await api.post("/echo", content=b"x" * 1025)
    assert "1024 bytes" in problem(response, 413, "content-too-large")["detail"]
    assert gateway.seen == []
    assert (await api.post("/echo", content=b"x" * 1024)).json() == {"size": 1024}


async def test_a_streamed_oversized_body_is_cut_off_while_read(
    api: httpx.AsyncClient, gateway: Gateway
) -> None:
    assert (await api.post("/echo", content=chunks(4))).json() == {"size": 1024}  # chunked, at the limit

    problem(await api.post("/echo", content=chunks(5)), 413, "content-too-large")
    # FastAPI turns the failed read of a JSON body into a 400; the limiter answers 413 instead
    streamed_json = await api.post("/items", content=chunks(50), headers={"content-type": "application/json"})
    problem(streamed_json, 413, "content-too-large")
    assert gateway.seen == ["echo", "echo"]


async def test_exempt_prefixes_stream_larger_bodies(api: httpx.AsyncClient) -> None:
    assert (await api.post("/uploads/raw", content=chunks(40))).json() == {"size": 40 * 256}
    assert (await api.post("/uploads/raw", content=b"x" * 5000)).json() == {"size": 5000}


# --- request context, access log, security headers, CORS ------------------------------------


async def test_request_ids_are_kept_when_well_formed_and_made_otherwise(api: httpx.AsyncClient) -> None:
    kept = await api.get("/items/1", headers={REQUEST_ID: "req-42.a:b"})
    assert kept.headers[REQUEST_ID] == "req-42.a:b"
    assert kept.json()["request_id"] == "req-42.a:b"
    assert kept.json()["client"] == ADDRESS
    replaced = await api.get("/items/1", headers={REQUEST_ID: "not ok <script>"})
    assert len(replaced.headers[REQUEST_ID]) == 32
    assert replaced.json()["request_id"] == replaced.headers[REQUEST_ID]
    made = await api.get("/nowhere")
    assert made.json()["instance"] == made.headers[REQUEST_ID] != replaced.headers[REQUEST_ID]


@pytest.mark.parametrize("native_tracing", [True, False], ids=["fastapi-span", "own-span"])
async def test_a_server_span_continues_the_callers_trace(
    settings: Settings, clock: Clock, native_tracing: bool
) -> None:
    """FastAPI's built-in server span is reused when it runs; without it the middleware starts one."""
    exporter = InMemorySpanExporter()
    provider = setup_tracing("aima-test", exporter)
    gateway = Gateway(settings, limiter_for(MemoryCache(), settings, clock), native_tracing=native_tracing)
    async with gateway.client() as api:
        response = await api.get("/items/42", headers={"traceparent": TRACEPARENT})
        await api.get("/boom")
    assert response.json()["trace_id"] == TRACE_ID
    provider.force_flush()
    [span] = [s for s in exporter.get_finished_spans() if s.name == "GET /items/{item_id}"]
    assert span.kind is SpanKind.SERVER
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == PARENT_SPAN
    assert span.attributes is not None
    assert span.attributes["http.route"] == "/items/{item_id}"
    assert span.attributes["http.response.status_code"] == 200
    assert span.attributes["client.address"] == ADDRESS
    assert span.attributes["aima.request_id"] == response.headers[REQUEST_ID]
    [failed] = [s for s in exporter.get_finished_spans() if s.name == "GET /boom"]
    assert failed.status.status_code is StatusCode.ERROR
    assert [event.name for event in failed.events] == ["exception"]


async def test_one_json_access_line_per_request_with_the_route_template(
    api: httpx.AsyncClient, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    setup_tracing("aima-test")
    setup_logging(service="api")
    labels = {"service": "api", "method": "GET", "route": "/items/{item_id}", "status": "200"}
    before = REGISTRY.get_sample_value("aima_http_requests_total", labels) or 0
    capsys.readouterr()

    response = await api.get("/items/12345", headers={"traceparent": TRACEPARENT})
    await api.get("/me", headers={"x-user": "u-7"})

    first, second = access_lines(capsys)
    assert first["method"] == "GET"
    assert first["route"] == "/items/{item_id}"
    assert first["status"] == 200
    assert isinstance(first["duration_ms"], float)
    assert first["request_id"] == response.headers[REQUEST_ID]
    assert first["client"] == ADDRESS
    assert first["trace_id"] == TRACE_ID
    assert "user_id" not in first
    assert "12345" not in json.dumps(first)  # ids stay out of the route label
    assert (second["route"], second["user_id"]) == ("/me", "u-7")
    assert REGISTRY.get_sample_value("aima_http_requests_total", labels) == before + 1


async def test_security_headers_are_on_every_response(gateway: Gateway) -> None:
    async with gateway.client() as api:
        for response in (await api.get("/items/1"), await api.get("/nowhere")):
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["x-frame-options"] == "DENY"
            assert response.headers["referrer-policy"] == "no-referrer"
            assert response.headers["content-security-policy"] == API_CSP
            assert response.headers["cross-origin-resource-policy"] == "same-origin"
            assert "camera=()" in response.headers["permissions-policy"]
            assert response.headers["cache-control"] == "no-store"
            assert "strict-transport-security" not in response.headers
        assert (await api.get("/docs")).headers["content-security-policy"] == DOCS_CSP
        assert (await api.get("/cached")).headers["cache-control"] == "private, max-age=60"
        proxied = await api.get("/items/1", headers={"x-forwarded-proto": "https"})
        assert proxied.headers["strict-transport-security"].startswith("max-age=")
    async with gateway.client(base_url="https://api") as secure:
        assert "strict-transport-security" in (await secure.get("/items/1")).headers


async def test_cors_admits_the_configured_origin_only(api: httpx.AsyncClient) -> None:
    def preflight(origin: str) -> dict[str, str]:
        return {
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type",
        }

    allowed = await api.options("/items", headers=preflight(ORIGIN))
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert allowed.headers["access-control-allow-credentials"] == "true"
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()

    refused = await api.options("/items", headers=preflight("https://evil.example"))
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers

    simple = await api.get("/items/1", headers={"origin": ORIGIN})
    assert simple.headers["access-control-allow-origin"] == ORIGIN
    assert REQUEST_ID in simple.headers["access-control-expose-headers"]
    foreign = await api.get("/items/1", headers={"origin": "https://evil.example"})
    assert "access-control-allow-origin" not in foreign.headers


async def test_a_wildcard_origin_is_admitted_without_credentials(settings: Settings, clock: Clock) -> None:
    wildcard = settings.model_copy(update={"cors_origins": ["*"]})
    gateway = Gateway(wildcard, limiter_for(MemoryCache(), settings, clock))
    async with gateway.client() as api:
        response = await api.get("/items/1", headers={"origin": "https://anywhere.example"})
    assert response.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in response.headers


# --- rate limits, over the in-process cache and the real Redis -------------------------------


@pytest.fixture(params=["memory", "redis"])
def cache(request: pytest.FixtureRequest) -> Iterator[Cache]:
    if request.param == "memory":
        yield MemoryCache()
        return
    store = RedisCache(request.getfixturevalue("redis_url"), prefix=f"test-{uuid.uuid4().hex[:8]}:")
    yield store
    store.close()


async def test_the_address_limit_answers_429_with_retry_after(
    cache: Cache, settings: Settings, clock: Clock
) -> None:
    gateway = Gateway(settings, limiter_for(cache, settings, clock))
    async with gateway.client() as api, gateway.client("198.51.100.9") as other:
        for _ in range(3):
            assert (await api.get("/items/1")).status_code == 200
        refused = await api.get("/items/1", headers={"origin": ORIGIN})
        assert problem(refused, 429, "rate-limited")["title"] == "Too many requests"
        assert refused.headers["retry-after"] == "50"
        assert refused.headers["access-control-allow-origin"] == ORIGIN  # a browser may read it
        assert (await api.get("/healthz")).status_code == 200  # probes are not counted
        assert (await other.get("/items/1")).status_code == 200

        clock.now += WINDOW  # the next window
        assert (await api.get("/items/1")).status_code == 200


async def test_the_user_limit_is_applied_through_hit_and_raise_for_verdict(
    cache: Cache, settings: Settings, clock: Clock
) -> None:
    limiter = limiter_for(cache, settings, clock, per_address=100)
    assert [limiter.hit("user", "carol") for _ in range(3)] == [
        Verdict(allowed=True),
        Verdict(allowed=True),
        Verdict(allowed=False, retry_after=50),
    ]
    clock.now += 45
    assert limiter.hit("user", "carol").retry_after == 5

    gateway = Gateway(settings, limiter)
    async with gateway.client() as api:
        for _ in range(2):
            assert (await api.get("/me", headers={"x-user": "alice"})).status_code == 200
        refused = await api.get("/me", headers={"x-user": "alice"})
        assert problem(refused, 429, "rate-limited")["detail"] == "Rate limit exceeded; retry after 5 s."
        assert refused.headers["retry-after"] == "5"
        assert (await api.get("/me", headers={"x-user": "bob"})).status_code == 200


async def test_a_redis_outage_fails_open_or_closed_and_limits_return_with_redis(
    own_redis: RedisServer, settings: Settings, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    cache = RedisCache(own_redis.url)
    lenient = limiter_for(cache, settings, clock, fail_open=True, probe_interval=0.2)
    strict = limiter_for(cache, settings, clock, fail_open=False, probe_interval=0.2)
    open_gateway, closed_gateway = Gateway(settings, lenient), Gateway(settings, strict)
    readiness = HealthRegistry(timeout=2.0, cache_seconds=0)
    readiness.add("rate-limiter", lenient.health, critical=False)
    async with open_gateway.client() as open_api, closed_gateway.client("198.51.100.9") as closed_api:
        assert (await open_api.get("/items/1")).status_code == 200
        assert (await closed_api.get("/items/1")).status_code == 200

        own_redis.stop()
        with caplog.at_level(logging.WARNING, logger="functions.api.ratelimit"):
            for _ in range(6):  # twice the address limit: nothing is counted
                assert (await open_api.get("/items/1")).status_code == 200
            assert lenient.hit("user", "alice") == Verdict(allowed=True, degraded=True)
        warnings = [r for r in caplog.records if "degraded (fail open)" in r.getMessage()]
        assert len(warnings) == 1  # once per outage, not per request
        assert not lenient.healthy
        report = await readiness.report()
        assert report.ready
        assert (
            report.components["rate-limiter"].error
            == "RateLimiterDegraded: rate limiter degraded (fail open)"
        )

        refused = await closed_api.get("/items/1")
        assert problem(refused, 503, "rate-limiter-unavailable")
        assert refused.headers["retry-after"] == "1"
        assert strict.hit("user", "alice") == Verdict(allowed=False, retry_after=1, degraded=True)
        with pytest.raises(Problem) as raised:
            raise_for_verdict(strict.hit("user", "alice"))
        assert raised.value.status == 503

        own_redis.start()  # same port, empty
        await asyncio.sleep(0.25)  # past the probe interval
        for api in (open_api, closed_api):
            assert [(await api.get("/items/1")).status_code for _ in range(4)] == [200, 200, 200, 429]
        assert lenient.healthy
        assert strict.healthy
        lenient.health()
        assert (await readiness.report()).components["rate-limiter"].status == "up"

        own_redis.stop()
        with pytest.raises(RateLimiterDegraded, match=r"fail closed"):
            strict.health()  # readiness notices an outage without any traffic
        assert not strict.healthy
    cache.close()
