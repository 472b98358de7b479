"""The Redis adapter of the cache port (cluster profile), over redis-py.

Keys live under ``{prefix}k:`` and locks under ``{prefix}l:`` (prefix default ``aima:``), so several
deployments can share a Redis and `RedisCache.delete_prefix` never touches a lock. Socket timeouts
are short and retries few, so a dead Redis raises within about a second instead of hanging.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import cast

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import LockNotOwnedError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from aima.storage import outages
from aima.storage.cache import Cache, CacheError, LockLost, LockTimeout

SOCKET_TIMEOUT = 1.0

# the adapter raises CacheError from these (outages looks at the cause)
outages.register("cache", RedisConnectionError, RedisTimeoutError)


@contextmanager
def _unavailable() -> Iterator[None]:
    """Redis errors leave the adapter as the port's `CacheError`, so callers need not know redis-py."""
    try:
        yield
    except RedisError as exc:
        raise CacheError(f"redis: {type(exc).__name__}: {exc}") from exc


SCAN_BATCH = 500
LOCK_POLL = 0.02


class RedisCache(Cache):
    """`Cache` on Redis; locks are redis-py's token-checked ``Lock`` (SET NX PX plus a Lua release)."""

    def __init__(self, url: str, *, prefix: str = "aima:", socket_timeout: float = SOCKET_TIMEOUT) -> None:
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), retries=1),
        )
        self._keys = f"{prefix}k:"
        self._lock_keys = f"{prefix}l:"

    def get(self, key: str) -> bytes | None:
        with _unavailable():
            return cast(bytes | None, self._client.get(self._keys + key))

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        with _unavailable():
            self._client.set(self._keys + key, value, px=None if ttl is None else _millis(ttl))

    def delete(self, key: str) -> None:
        with _unavailable():
            self._client.delete(self._keys + key)

    def delete_prefix(self, prefix: str) -> int:
        """Delete matching keys in batches found by SCAN (never KEYS, which blocks Redis)."""
        with _unavailable():
            return self._delete_prefix(prefix)

    def _delete_prefix(self, prefix: str) -> int:
        deleted = 0
        batch: list[bytes] = []
        for name in self._client.scan_iter(match=self._keys + _glob_escape(prefix) + "*", count=SCAN_BATCH):
            batch.append(name)
            if len(batch) == SCAN_BATCH:
                deleted += self._client.delete(*batch)
                batch.clear()
        if batch:
            deleted += self._client.delete(*batch)
        return deleted

    def incr(self, key: str, ttl: float | None = None) -> int:
        with _unavailable():
            return self._incr(key, ttl)

    def _incr(self, key: str, ttl: float | None) -> int:
        name = self._keys + key
        if ttl is None:
            return self._client.incr(name)
        pipe = self._client.pipeline(transaction=True)  # MULTI: create-with-expiry and INCR as one
        pipe.set(name, 0, px=_millis(ttl), nx=True)
        pipe.incr(name)
        return cast(int, pipe.execute()[1])

    @contextmanager
    def lock(self, name: str, timeout: float, *, blocking_timeout: float | None = None) -> Iterator[None]:
        wait = timeout if blocking_timeout is None else blocking_timeout
        lock = self._client.lock(
            self._lock_keys + name,
            timeout=timeout,
            sleep=LOCK_POLL,
            blocking_timeout=wait,
            thread_local=False,
        )
        with _unavailable():
            acquired = lock.acquire()
        if not acquired:
            raise LockTimeout(f"lock {name!r} not acquired within {wait} s")
        lost = False
        try:
            yield
        finally:
            try:
                lock.release()
            except LockNotOwnedError:
                lost = True
        if lost:  # reported only when the block itself succeeded
            raise LockLost(f"lock {name!r} expired after {timeout} s while held")

    def health(self) -> None:
        with _unavailable():
            self._client.ping()

    def close(self) -> None:
        self._client.close()


def _millis(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _glob_escape(text: str) -> str:
    """``text`` taken literally in a Redis MATCH pattern."""
    return "".join("\\" + char if char in "\\*?[]" else char for char in text)
