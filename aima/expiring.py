"""`ExpiringMap`: a small thread-safe memo whose entries expire, for lookups repeated on every request.

What the gateway reads on every request (a user's principal, their case memberships) changes
rarely; an `ExpiringMap` keeps each answer for ``ttl`` seconds. The owner of the data calls
`ExpiringMap.invalidate` (or `clear`) when it changes it, so a change made through the same object
takes effect at once; one made elsewhere (another process, a replica) within ``ttl``. A load that
raced an invalidation is not stored: `ExpiringMap.get_or_load` keeps an answer only if no
invalidation happened while it was loading. ``ttl`` 0 turns the memo off: every call loads.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

DEFAULT_MAX_ENTRIES = 10_000


class ExpiringMap(Generic[K, V]):
    """Values by key, each kept ``ttl`` seconds after it was loaded; at most ``max_entries`` (the least
    recently stored go first)."""

    def __init__(
        self,
        ttl: float,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl < 0:
            raise ValueError("ttl must not be negative")
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._generation = 0
        self._lock = threading.Lock()

    def get_or_load(self, key: K, load: Callable[[], V]) -> V:
        """The value kept for ``key``, or ``load()`` (kept unless invalidated meanwhile). Exceptions
        of ``load`` propagate and nothing is kept."""
        if self.ttl == 0:
            return load()
        now = self._clock()
        with self._lock:
            found = self._entries.get(key)
            if found is not None and found[0] > now:
                return found[1]
            generation = self._generation
        value = load()
        with self._lock:
            if generation == self._generation:
                self._store(key, value, now)
        return value

    def _store(self, key: K, value: V, now: float) -> None:
        self._entries[key] = (now + self.ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def get(self, key: K) -> V | None:
        """The value kept for ``key``, or None if there is none (or it expired)."""
        if self.ttl == 0:
            return None
        with self._lock:
            found = self._entries.get(key)
        return found[1] if found is not None and found[0] > self._clock() else None

    def put(self, key: K, value: V) -> None:
        """Keep ``value`` for ``key`` (for values that no invalidation concerns; else `get_or_load`)."""
        if self.ttl == 0:
            return
        with self._lock:
            self._store(key, value, self._clock())

    def invalidate(self, key: K) -> None:
        """Forget ``key``; loads running now are not kept either."""
        with self._lock:
            self._generation += 1
            self._entries.pop(key, None)

    def clear(self) -> None:
        """Forget everything; loads running now are not kept either."""
        with self._lock:
            self._generation += 1
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
