"""EpochCache: answers kept per epoch, concurrent misses computed once, nothing kept without an epoch."""

from __future__ import annotations

import asyncio

import pytest

from remotegpu.application.shared.read_cache import EpochCache, Memo


async def test_an_answer_is_kept_for_its_epoch_only():
    cache, calls = EpochCache(), []

    async def compute(value):
        calls.append(value)
        return value

    assert await cache.get_or_compute(1, "k", lambda: compute("a")) == "a"
    assert await cache.get_or_compute(1, "k", lambda: compute("b")) == "a"  # same epoch: kept
    assert await cache.get_or_compute(2, "k", lambda: compute("c")) == "c"  # moved: computed again
    assert await cache.get_or_compute(1, "k", lambda: compute("d")) == "d"  # an older epoch is never served newer...
    assert await cache.get_or_compute(2, "k", lambda: compute("e")) == "c"  # ...nor does it replace the newer answers
    assert await cache.get_or_compute(None, "k", lambda: compute("f")) == "f"  # no epoch: nothing cached
    assert calls == ["a", "c", "d", "f"]


async def test_concurrent_misses_compute_once_and_a_failure_is_not_shared():
    cache, calls = EpochCache(), []
    gate = asyncio.Event()

    async def slow():
        calls.append(1)
        await gate.wait()
        return "v"

    tasks = [asyncio.create_task(cache.get_or_compute(5, "k", slow)) for _ in range(10)]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*tasks) == ["v"] * 10 and calls == [1]

    async def boom():
        await asyncio.sleep(0)
        raise ValueError("first request's own failure")

    async def fine():
        return "ok"

    first = asyncio.create_task(cache.get_or_compute(6, "x", boom))
    await asyncio.sleep(0)
    second = asyncio.create_task(cache.get_or_compute(6, "x", fine))
    with pytest.raises(ValueError):
        await first
    assert await second == "ok"


async def test_entries_are_bounded():
    cache = EpochCache(max_entries=3)
    for n in range(10):
        await cache.get_or_compute(1, n, lambda n=n: asyncio.sleep(0, n))
    assert len(cache._entries) == 3


def test_memo_derives_once_per_shared_answer_and_never_from_another():
    memo = Memo(max_entries=2)
    made = []

    def make(tag):
        made.append(tag)
        return f"doc of {tag}"

    answer = ["shared answer"]
    assert memo.get(answer, "viewer", lambda: make("a")) == "doc of a"
    assert memo.get(answer, "viewer", lambda: make("again")) == "doc of a"  # the same answer: kept
    assert memo.get(answer, "admin", lambda: make("b")) == "doc of b"  # another kind of caller
    # An equal but different answer (a newer epoch's) is not the same answer.
    assert memo.get(["shared answer"], "viewer", lambda: make("c")) == "doc of c"
    assert made == ["a", "b", "c"]
    assert len(memo._entries) <= 2
