"""Fixed-window rate limits per client address and per user, counted in the shared cache.

Every gateway replica increments the same counter ``ratelimit:<kind>:<identity>:<window number>``
(wall-clock windows, so replicas agree), which expires with its window. When the cache fails
(Redis down) the limiter is *degraded*: it either lets requests through (fail open) or refuses them
(fail closed), as configured. While degraded it does not touch the cache again until
``probe_interval`` has passed, so an outage costs one failed call per interval, not one per request.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from starlette.types import ASGIApp, Receive, Scope, Send

from aima.storage.cache import Cache
from functions.api.problems import Problem, request_id_of

Kind = Literal["user", "address"]
PROBE_INTERVAL = 1.0

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether one request may proceed; ``retry_after`` (s) when not; ``degraded`` if the cache failed."""

    allowed: bool
    retry_after: int = 0
    degraded: bool = False


class RateLimiterDegraded(RuntimeError):
    """The limiter cannot count requests (its cache is unavailable)."""


class RateLimiter:
    """Counts requests per user and per address in fixed windows of ``window`` seconds."""

    def __init__(
        self,
        cache: Cache,
        *,
        per_user: int,
        per_address: int,
        window: int,
        fail_open: bool,
        probe_interval: float = PROBE_INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._cache = cache
        self._limits: dict[str, int] = {"user": per_user, "address": per_address}
        self.window = window
        self.fail_open = fail_open
        self.probe_interval = probe_interval
        self._clock = clock
        self._guard = threading.Lock()
        self._degraded = False
        self._next_probe = 0.0  # time.monotonic() before which a degraded limiter skips the cache

    @property
    def healthy(self) -> bool:
        """False while the cache is failing."""
        return not self._degraded

    def hit(self, kind: Kind, identity: str) -> Verdict:
        """Count one request of ``identity`` (a user id or a client address) and judge it."""
        if self._degraded and time.monotonic() < self._next_probe:
            return self._degraded_verdict()
        now = self._clock()
        number, elapsed = divmod(now, self.window)
        try:
            count = self._cache.incr(f"ratelimit:{kind}:{identity}:{int(number)}", ttl=self.window)
        except Exception as exc:  # any failure of the cache adapter (redis-py raises its own types)
            self._fail(exc)
            return self._degraded_verdict()
        if self._degraded:
            self._recover()
        if count <= self._limits[kind]:
            return Verdict(allowed=True)
        return Verdict(allowed=False, retry_after=max(1, math.ceil(self.window - elapsed)))

    def health(self) -> None:
        """Readiness check: probe the cache; raise `RateLimiterDegraded` while it fails."""
        try:
            self._cache.health()
        except Exception as exc:
            self._fail(exc)
        else:
            if self._degraded:
                self._recover()
            return
        mode = "fail open" if self.fail_open else "fail closed: requests are refused"
        raise RateLimiterDegraded(f"rate limiter degraded ({mode})")

    def _degraded_verdict(self) -> Verdict:
        if self.fail_open:
            return Verdict(allowed=True, degraded=True)
        return Verdict(allowed=False, retry_after=max(1, math.ceil(self.probe_interval)), degraded=True)

    def _fail(self, exc: Exception) -> None:
        with self._guard:
            self._next_probe = time.monotonic() + self.probe_interval
            if self._degraded:
                return
            self._degraded = True
        log.warning(
            "rate limiter degraded (%s): cache unavailable: %s: %s",
            "fail open" if self.fail_open else "fail closed",
            type(exc).__name__,
            exc,
        )

    def _recover(self) -> None:
        with self._guard:
            if not self._degraded:
                return
            self._degraded = False
        log.info("rate limiter recovered: the cache answers again")


def problem_for(verdict: Verdict) -> Problem | None:
    """The problem of a refused request (429, or 503 when degraded and failing closed); None if allowed."""
    if verdict.allowed:
        return None
    headers = {"Retry-After": str(verdict.retry_after)}
    if verdict.degraded:
        detail = "Requests cannot be counted against their rate limit right now, so they are refused."
        return Problem(
            503, "rate-limiter-unavailable", "Service temporarily unavailable", detail, headers=headers
        )
    detail = f"Rate limit exceeded; retry after {verdict.retry_after} s."
    return Problem(429, "rate-limited", "Too many requests", detail, headers=headers)


def raise_for_verdict(verdict: Verdict) -> None:
    """Raise the `Problem` of a refused request (see `problem_for`); return if it is allowed."""
    problem = problem_for(verdict)
    if problem is not None:
        raise problem


class RateLimitMiddleware:
    """Applies the per-address limit to every HTTP request before routing or reading the body.

    The address is the one `RequestContextMiddleware` recorded (the ASGI client, which the server
    takes from trusted proxy headers when configured to). Paths under ``exempt_prefixes`` (probes,
    metrics) are not counted.
    """

    def __init__(self, app: ASGIApp, limiter: RateLimiter, *, exempt_prefixes: tuple[str, ...] = ()) -> None:
        self.app = app
        self.limiter = limiter
        self.exempt_prefixes = exempt_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt_prefixes):
            await self.app(scope, receive, send)
            return
        state = scope.get("state") or {}
        client = scope.get("client")
        address = state.get("client") or (client[0] if client else "unknown")
        problem = problem_for(self.limiter.hit("address", address))
        if problem is None:
            await self.app(scope, receive, send)
            return
        await problem.to_response(request_id_of(scope))(scope, receive, send)
