"""One cache contract, run over MemoryCache and RedisCache (the real Redis on loopback)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis

from aima.storage import cache as cache_module
from aima.storage.cache import Cache, CacheError, LockLost, LockTimeout, MemoryCache, cache_from_url
from aima.storage.cache_redis import RedisCache


@pytest.fixture(params=["memory", "redis"])
def cache(request: pytest.FixtureRequest) -> Iterator[Cache]:
    adapter: Cache = (
        MemoryCache() if request.param == "memory" else RedisCache(request.getfixturevalue("redis_url"))
    )
    yield adapter
    adapter.close()


def test_get_set_delete(cache: Cache) -> None:
    assert cache.get("k") is None
    cache.set("k", b"\x00value")
    assert cache.get("k") == b"\x00value"
    cache.set("k", b"other")
    assert cache.get("k") == b"other"
    cache.delete("k")
    cache.delete("k")  # deleting a missing key is fine
    assert cache.get("k") is None


def test_values_expire_after_their_ttl_and_a_plain_set_clears_it(cache: Cache) -> None:
    cache.set("short", b"1", ttl=0.2)
    cache.set("kept", b"1", ttl=0.2)
    cache.set("kept", b"2")
    assert cache.get("short") == b"1"
    time.sleep(0.35)
    assert cache.get("short") is None
    assert cache.get("kept") == b"2"


def test_incr_counts_and_sets_the_ttl_only_on_creation(cache: Cache) -> None:
    assert [cache.incr("hits") for _ in range(3)] == [1, 2, 3]
    assert cache.get("hits") == b"3"

    assert cache.incr("window", ttl=0.4) == 1
    time.sleep(0.25)
    assert cache.incr("window", ttl=0.4) == 2  # does not extend the window
    time.sleep(0.25)
    assert cache.incr("window", ttl=0.4) == 1


def test_delete_prefix_removes_only_matching_keys(cache: Cache) -> None:
    for key in ["case:1:a", "case:1:b", "case:10:a", "case:2:a", "other", "x*y:1", "xzy:1"]:
        cache.set(key, b"v")

    assert cache.delete_prefix("case:1:") == 2
    assert cache.delete_prefix("x*y") == 1  # glob characters are taken literally
    assert cache.delete_prefix("nothing") == 0

    assert [
        k
        for k in ["case:1:a", "case:1:b", "case:10:a", "case:2:a", "other", "x*y:1", "xzy:1"]
        if cache.get(k)
    ] == [
        "case:10:a",
        "case:2:a",
        "other",
        "xzy:1",
    ]


def test_delete_prefix_handles_many_keys(cache: Cache) -> None:
    for n in range(1200):
        cache.set(f"bulk:{n}", b"v")
    assert cache.delete_prefix("bulk:") == 1200
    assert cache.get("bulk:7") is None


def test_delete_prefix_leaves_locks_alone(cache: Cache) -> None:
    with cache.lock("case:1:", timeout=5):
        cache.set("case:1:x", b"v")
        assert cache.delete_prefix("case:1:") == 1
        with pytest.raises(LockTimeout), cache.lock("case:1:", timeout=5, blocking_timeout=0.05):
            pass


def test_lock_excludes_a_second_thread(cache: Cache) -> None:
    log: list[str] = []
    holding = threading.Event()

    def worker(name: str, wait_first: bool) -> None:
        if wait_first:
            holding.wait(5)
        with cache.lock("job:1", timeout=5, blocking_timeout=5):
            log.append(f"{name} in")
            holding.set()
            time.sleep(0.2)
            log.append(f"{name} out")

    threads = [
        threading.Thread(target=worker, args=("a", False)),
        threading.Thread(target=worker, args=("b", True)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert log == ["a in", "a out", "b in", "b out"]


def test_lock_timeout_when_held_elsewhere(cache: Cache) -> None:
    with cache.lock("job:2", timeout=5):
        began = time.monotonic()
        with pytest.raises(LockTimeout), cache.lock("job:2", timeout=5, blocking_timeout=0.2):
            pass
        waited = time.monotonic() - began
        assert 0.15 <= waited < 1.5
        with cache.lock("job:3", timeout=5, blocking_timeout=0):  # other names are independent
            pass
    with cache.lock("job:2", timeout=5, blocking_timeout=0):  # released: free again
        pass


def test_an_expired_lock_is_taken_by_others_and_reported_lost(cache: Cache) -> None:
    def outlive_the_lock(error: Exception | None) -> None:
        with cache.lock("job:4", timeout=0.2):
            time.sleep(0.35)
            with cache.lock("job:4", timeout=5, blocking_timeout=0):  # expired, so free for others
                pass
            if error is not None:
                raise error

    with pytest.raises(LockLost):
        outlive_the_lock(None)
    with pytest.raises(KeyError):  # an error in the block wins over LockLost
        outlive_the_lock(KeyError("boom"))


def test_health(cache: Cache) -> None:
    cache.health()


def test_memory_cache_sweeps_expired_keys_nobody_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_module, "SWEEP_INTERVAL", 0.0)
    memory = MemoryCache()
    for n in range(10):
        memory.set(f"tmp:{n}", b"v", ttl=0.05)
    time.sleep(0.1)
    memory.set("fresh", b"v")
    assert list(memory._values) == ["fresh"]


def test_redis_keys_are_namespaced_by_prefix(redis_url: str) -> None:
    first, second = RedisCache(redis_url, prefix="one:"), RedisCache(redis_url, prefix="two:")
    first.set("k", b"1")
    assert second.get("k") is None
    assert second.delete_prefix("") == 0
    assert first.get("k") == b"1"
    assert redis.Redis.from_url(redis_url).get("one:k:k") == b"1"
    first.close()
    second.close()


def test_dead_redis_fails_fast_with_the_ports_error() -> None:
    dead = RedisCache("redis://127.0.0.1:1/0")
    began = time.monotonic()
    with pytest.raises(CacheError, match="ConnectionError"):
        dead.health()
    for call in (lambda: dead.get("k"), lambda: dead.set("k", b"v"), lambda: dead.incr("k", ttl=1)):
        with pytest.raises(CacheError):
            call()
    assert time.monotonic() - began < 3
    dead.close()


def test_cache_from_url(redis_url: str) -> None:
    assert isinstance(cache_from_url("memory://"), MemoryCache)
    remote = cache_from_url(redis_url)
    assert isinstance(remote, RedisCache)
    remote.health()
    remote.close()
    with pytest.raises(ValueError, match="unsupported"):
        cache_from_url("memcached://localhost")
