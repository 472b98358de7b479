"""`aima.expiring.ExpiringMap`: expiry, invalidation (also of a load that raced it), bounds, off."""

from __future__ import annotations

import threading

import pytest

from aima.expiring import ExpiringMap


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Loader:
    """Counts its calls and answers with the call number."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        return self.calls


def test_a_value_is_kept_for_its_ttl_then_loaded_again() -> None:
    clock, load = Clock(), Loader()
    memo: ExpiringMap[str, int] = ExpiringMap(2.0, clock=clock)
    assert memo.get_or_load("k", load) == 1
    clock.now += 1.9
    assert memo.get_or_load("k", load) == 1
    assert memo.get("k") == 1
    clock.now += 0.2
    assert memo.get("k") is None
    assert memo.get_or_load("k", load) == 2
    assert load.calls == 2


def test_invalidate_and_clear_forget() -> None:
    load = Loader()
    memo: ExpiringMap[str, int] = ExpiringMap(60.0)
    memo.get_or_load("a", load)
    memo.get_or_load("b", load)
    memo.invalidate("a")
    assert memo.get("a") is None
    assert memo.get("b") == 2
    memo.clear()
    assert len(memo) == 0
    assert memo.get_or_load("b", load) == 3


def test_a_load_that_raced_an_invalidation_is_not_kept() -> None:
    """The value was read before the change it would hide: it is answered once, never kept."""
    memo: ExpiringMap[str, str] = ExpiringMap(60.0)

    def stale_load() -> str:
        memo.invalidate("k")  # the change commits while this load is under way
        return "stale"

    assert memo.get_or_load("k", stale_load) == "stale"
    assert memo.get("k") is None
    assert memo.get_or_load("k", lambda: "fresh") == "fresh"
    assert memo.get("k") == "fresh"


def test_a_failed_load_keeps_nothing() -> None:
    memo: ExpiringMap[str, int] = ExpiringMap(60.0)

    def failing() -> int:
        raise LookupError("gone")

    with pytest.raises(LookupError):
        memo.get_or_load("k", failing)
    assert memo.get("k") is None


def test_the_oldest_entries_make_room() -> None:
    memo: ExpiringMap[int, int] = ExpiringMap(60.0, max_entries=3)
    for key in range(5):
        memo.put(key, key)
    assert len(memo) == 3
    assert [memo.get(k) for k in range(5)] == [None, None, 2, 3, 4]


def test_ttl_zero_turns_it_off_and_bad_arguments_are_refused() -> None:
    load = Loader()
    memo: ExpiringMap[str, int] = ExpiringMap(0)
    assert [memo.get_or_load("k", load) for _ in range(3)] == [1, 2, 3]
    memo.put("k", 9)
    assert memo.get("k") is None
    with pytest.raises(ValueError, match="negative"):
        ExpiringMap(-1)
    with pytest.raises(ValueError, match="max_entries"):
        ExpiringMap(1, max_entries=0)


def test_threads_share_one_map() -> None:
    memo: ExpiringMap[int, int] = ExpiringMap(60.0, max_entries=50)
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for i in range(2000):
                key = (i + offset) % 80
                assert memo.get_or_load(key, lambda key=key: key * 2) == key * 2
                if i % 7 == 0:
                    memo.invalidate(key)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(memo) <= 50
