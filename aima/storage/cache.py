"""The cache and lock port, with the in-process adapter of the embedded profile.

Both adapters (`MemoryCache` here, `aima.storage.cache_redis.RedisCache`) keep the same contract:
values are bytes; ``ttl`` is in seconds (None: no expiry); `Cache.incr` stores the count as its
decimal bytes and sets ``ttl`` only when it creates the key; `Cache.lock` is a mutual-exclusion
lock that expires after ``timeout`` seconds even if its holder died, raises `LockTimeout` when
not acquired within ``blocking_timeout``, and raises `LockLost` on release if it had expired.
"""

from __future__ import annotations

import abc
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

SWEEP_INTERVAL = 60.0


class CacheError(RuntimeError):
    """A cache or lock operation failed."""


class LockTimeout(CacheError):
    """The lock was not acquired within the blocking timeout."""


class LockLost(CacheError):
    """The lock expired while held, so exclusion was not guaranteed to the end."""


class Cache(abc.ABC):
    """Bytes by key with optional expiry, counters, and expiring locks (see module docstring)."""

    @abc.abstractmethod
    def get(self, key: str) -> bytes | None:
        """The value, or None if missing or expired."""

    @abc.abstractmethod
    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store ``value``, replacing any earlier value and expiry."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove the key if present."""

    @abc.abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Remove every key starting with ``prefix``; returns how many."""

    @abc.abstractmethod
    def incr(self, key: str, ttl: float | None = None) -> int:
        """Add one to the counter and return it; a new counter starts at 1 and expires after ``ttl``."""

    @abc.abstractmethod
    def lock(
        self, name: str, timeout: float, *, blocking_timeout: float | None = None
    ) -> AbstractContextManager[None]:
        """Hold lock ``name`` for the block, at most ``timeout`` s; wait up to ``blocking_timeout`` (default
        ``timeout``) for it, else raise `LockTimeout`."""

    @abc.abstractmethod
    def health(self) -> None:
        """Raise if the cache cannot be used."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections and resources."""


class MemoryCache(Cache):
    """A thread-safe in-process cache (the embedded profile's): one dict, expiry checked on access."""

    def __init__(self) -> None:
        self._values: dict[str, tuple[bytes, float | None]] = {}
        self._locks: dict[str, tuple[str, float]] = {}
        self._guard = threading.Condition()
        self._next_sweep = time.monotonic() + SWEEP_INTERVAL

    def get(self, key: str) -> bytes | None:
        with self._guard:
            return self._live(key, time.monotonic())

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        with self._guard:
            now = self._sweep()
            self._values[key] = (bytes(value), None if ttl is None else now + ttl)

    def delete(self, key: str) -> None:
        with self._guard:
            self._values.pop(key, None)

    def delete_prefix(self, prefix: str) -> int:
        with self._guard:
            now = time.monotonic()
            doomed = [key for key in self._values if key.startswith(prefix)]
            live = sum(1 for key in doomed if self._live(key, now) is not None)
            for key in doomed:
                self._values.pop(key, None)
            return live

    def incr(self, key: str, ttl: float | None = None) -> int:
        with self._guard:
            now = self._sweep()
            current = self._live(key, now)
            if current is None:
                count, expires = 1, (None if ttl is None else now + ttl)
            else:
                count, expires = int(current) + 1, self._values[key][1]
            self._values[key] = (str(count).encode(), expires)
            return count

    @contextmanager
    def lock(self, name: str, timeout: float, *, blocking_timeout: float | None = None) -> Iterator[None]:
        token = uuid.uuid4().hex
        wait = timeout if blocking_timeout is None else blocking_timeout
        with self._guard:
            give_up = time.monotonic() + wait
            while True:
                now = time.monotonic()
                held = self._locks.get(name)
                if held is None or held[1] <= now:
                    self._locks[name] = (token, now + timeout)
                    break
                if now >= give_up:
                    raise LockTimeout(f"lock {name!r} not acquired within {wait} s")
                self._guard.wait(min(give_up, held[1]) - now)
        try:
            yield
        finally:
            with self._guard:
                held = self._locks.get(name)
                lost = held is None or held[0] != token or held[1] <= time.monotonic()
                if held is not None and held[0] == token:
                    del self._locks[name]
                self._guard.notify_all()
        if lost:  # reported only when the block itself succeeded
            raise LockLost(f"lock {name!r} expired after {timeout} s while held")

    def health(self) -> None:
        """Always healthy: it lives in this process."""

    def close(self) -> None:
        with self._guard:
            self._values.clear()
            self._locks.clear()

    def _live(self, key: str, now: float) -> bytes | None:
        entry = self._values.get(key)
        if entry is None:
            return None
        if entry[1] is not None and entry[1] <= now:
            del self._values[key]
            return None
        return entry[0]

    def _sweep(self) -> float:
        """Drop expired keys now and then, so keys nobody reads again do not pile up."""
        now = time.monotonic()
        if now >= self._next_sweep:
            for key in [
                key for key, (_, expires) in self._values.items() if expires is not None and expires <= now
            ]:
                del self._values[key]
            self._next_sweep = now + SWEEP_INTERVAL
        return now


def cache_from_url(url: str) -> Cache:
    """``memory://`` for `MemoryCache`, ``redis://``/``rediss://`` for the Redis adapter."""
    if url.startswith("memory://"):
        return MemoryCache()
    if url.startswith(("redis://", "rediss://")):
        from aima.storage.cache_redis import RedisCache  # only the cluster profile needs redis-py

        return RedisCache(url)
    raise ValueError(f"unsupported cache URL: {url!r}")
