"""The client's token bucket on an injected clock: the burst passes at once, beyond it callers wait their turn,
woken in batches at slot ends, and the rate never exceeds qps."""

from __future__ import annotations

import asyncio

import pytest

from kaito_ctrl.kube.clock import FakeClock
from kaito_ctrl.kube.throttle import TokenBucket


async def _acquire_all(bucket: TokenBucket, clock: FakeClock, n: int, run_for: float) -> list[float]:
    done: list[float] = []

    async def one() -> None:
        await bucket.acquire()
        done.append(clock.monotonic())

    tasks = [asyncio.create_task(one()) for _ in range(n)]
    for _ in range(5):
        await asyncio.sleep(0)
    steps = int(run_for / 0.01)
    for _ in range(steps):
        await clock.advance(0.01)
    await asyncio.gather(*tasks)
    return done


async def test_the_burst_passes_at_once_and_the_rest_waits_in_batches() -> None:
    clock = FakeClock(start=1000.0)
    bucket = TokenBucket(qps=10, burst=5, clock=clock, batch=4)
    done = await _acquire_all(bucket, clock, 25, 3.0)
    start = 1000.0
    assert sorted(done)[:5] == [start] * 5, "the burst does not wait"
    waited = sorted(d - start for d in done)[5:]
    # Reservations fall due every 0.1 s; each caller wakes at the end of its 0.4 s slot, four or so together.
    assert all(abs(w / 0.4 - round(w / 0.4)) < 1e-6 for w in waited), waited
    assert len(set(round(w, 6) for w in waited)) <= 6, "woken in batches, not one by one"


@pytest.mark.parametrize("batch", [1, 4, 16])
async def test_the_rate_never_exceeds_qps(batch: int) -> None:
    clock = FakeClock(start=1000.0)
    qps, burst = 20.0, 3
    bucket = TokenBucket(qps=qps, burst=burst, clock=clock, batch=batch)
    done = sorted(d - 1000.0 for d in await _acquire_all(bucket, clock, 60, 5.0))
    for i, t in enumerate(done):
        # The (i+1)-th request cannot pass before the burst plus the tokens earned by then allow it.
        assert i + 1 <= burst + qps * t + 1e-6, (i, t)
    # And batching costs at most one slot of latency: all 60 are through by their reservation plus batch / qps.
    assert done[-1] <= (60 - burst) / qps + batch / qps + 1e-6


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="batch"):
        TokenBucket(qps=10, burst=1, batch=0)
