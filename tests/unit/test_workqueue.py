"""Workqueue guarantees, checked as properties over random interleavings (hypothesis) and with a fake clock."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kaito_ctrl.kube.clock import FakeClock
from kaito_ctrl.kube.ratelimit import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    MaxOfRateLimiter,
    default_controller_rate_limiter,
)
from kaito_ctrl.kube.workqueue import ShutDown, WorkQueue

ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 4)),
        st.tuples(st.just("get"), st.integers(0, 3)),  # worker index
        st.tuples(st.just("done"), st.integers(0, 3)),
    ),
    max_size=60,
)


def _run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(ops)
def test_no_key_processed_twice_at_once_and_readd_gives_one_more_run(script: list[tuple[str, int]]) -> None:
    async def main() -> None:
        q: WorkQueue[int] = WorkQueue(clock=FakeClock())
        holding: dict[int, int] = {}  # worker -> item
        added_while_processing: dict[int, int] = {}
        runs: dict[int, int] = {}
        for op, arg in script:
            if op == "add":
                if arg in holding.values():
                    added_while_processing[arg] = 1  # several adds still mean one more run
                q.add(arg)
            elif op == "get" and arg not in holding and len(q):
                item = await q.get()
                assert item not in holding.values(), "a key handed to two workers at once"
                holding[arg] = item
                runs[item] = runs.get(item, 0) + 1
            elif op == "done" and arg in holding:
                item = holding.pop(arg)
                q.done(item)
                if added_while_processing.pop(item, 0):
                    # Exactly one more run: the item is queued again, once.
                    assert list(q._queue).count(item) == 1
        # Drain: every queued item comes out exactly once more, and nothing else.
        queued = list(q._queue)
        assert len(queued) == len(set(queued))

    _run(main())


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 20), min_size=1, max_size=40))
def test_shutdown_with_drain_waits_for_items_in_flight(items: list[int]) -> None:
    async def main() -> None:
        q: WorkQueue[int] = WorkQueue(clock=FakeClock())
        for i in items:
            q.add(i)
        finished: list[int] = []
        release = asyncio.Event()

        async def worker() -> None:
            while True:
                try:
                    item = await q.get()
                except ShutDown:
                    return
                await release.wait()
                finished.append(item)
                q.done(item)

        workers = [asyncio.create_task(worker()) for _ in range(3)]
        for _ in range(5):
            await asyncio.sleep(0)
        in_flight = set(q.processing())
        drain = asyncio.create_task(q.shutdown_with_drain(timeout=5))
        await asyncio.sleep(0)
        assert not drain.done(), "drain must wait while items are processing"
        q.add(999)  # refused after shutdown
        release.set()
        assert await drain
        await asyncio.gather(*workers)
        assert in_flight <= set(finished)
        assert 999 not in finished

    _run(main())


async def test_get_blocks_until_add_and_raises_after_shutdown() -> None:
    q: WorkQueue[str] = WorkQueue(clock=FakeClock())
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    assert not getter.done()
    q.add("a")
    assert await asyncio.wait_for(getter, 1) == "a"
    q.shutdown()
    with pytest.raises(ShutDown):
        await q.get()


async def test_add_after_keeps_the_earliest_time() -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock=clock)
    q.add_after("x", 10)
    q.add_after("x", 3)
    q.add_after("x", 20)
    assert len(q) == 0 and q.waiting() == 1
    await clock.advance(2.9)
    assert len(q) == 0
    await clock.advance(0.2)
    assert len(q) == 1 and q.waiting() == 0
    await clock.advance(30)
    assert len(q) == 1  # not added again by the later deadlines


async def test_add_rate_limited_backs_off_exponentially_and_forget_resets() -> None:
    clock = FakeClock()
    limiter = ItemExponentialFailureRateLimiter(0.005, 1000)
    q: WorkQueue[str] = WorkQueue(clock=clock, rate_limiter=limiter)
    delays = [limiter.when("k") for _ in range(5)]
    assert delays == [0.005, 0.01, 0.02, 0.04, 0.08]
    assert q.num_requeues("k") == 5
    q.forget("k")
    assert q.num_requeues("k") == 0
    q.add_rate_limited("k")
    await clock.advance(0.004)
    assert len(q) == 0
    await clock.advance(0.002)
    assert len(q) == 1


def test_exponential_limiter_caps_at_max() -> None:
    limiter = ItemExponentialFailureRateLimiter(0.005, 1000)
    for _ in range(100):
        d = limiter.when("k")
    assert d == 1000


def test_bucket_limiter_allows_burst_then_paces_at_qps() -> None:
    clock = FakeClock()
    bucket = BucketRateLimiter(10, 100, clock)
    assert all(bucket.when(i) == 0 for i in range(100))
    assert bucket.when("next") == pytest.approx(0.1)
    assert bucket.when("after") == pytest.approx(0.2)


def test_default_limiter_is_max_of_both() -> None:
    clock = FakeClock()
    limiter = default_controller_rate_limiter(clock)
    assert isinstance(limiter, MaxOfRateLimiter)
    # The first failures are dominated by the per-item backoff; once the bucket is empty it dominates.
    assert limiter.when("a") == 0.005
    for i in range(200):
        limiter.when(f"item-{i}")
    assert limiter.when("b") > 0.005
