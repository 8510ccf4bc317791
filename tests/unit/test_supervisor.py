"""Supervised background tasks, on a fake clock: a task that raises is restarted with doubling backoff and
counted; one that keeps failing turns its health check false; cancellation stops it for good."""

from __future__ import annotations

import asyncio
import itertools

from kaito_ctrl import metrics
from kaito_ctrl.kube.clock import FakeClock
from kaito_ctrl.runtime.supervisor import SupervisedTask


def _restarts(name: str) -> float:
    return metrics.REGISTRY.get_sample_value("kaito_ctrl_task_restarts_total", {"task": name}) or 0.0


async def test_a_task_that_raises_is_restarted_with_backoff_and_counted() -> None:
    clock = FakeClock()
    runs: list[float] = []
    settled = asyncio.Event()

    async def flaky() -> None:
        runs.append(clock.monotonic())
        if len(runs) <= 3:
            raise ConnectionResetError("peer reset")
        settled.set()
        await asyncio.Event().wait()

    before = _restarts("flaky")
    task = SupervisedTask("flaky", flaky, clock=clock, base_delay=1.0, max_delay=60.0)
    running = asyncio.create_task(task.run())
    while not settled.is_set():
        await clock.advance(0.5)
    assert [b - a for a, b in itertools.pairwise(runs)] == [1.0, 2.0, 4.0]
    assert _restarts("flaky") - before == 3
    assert task.healthy()
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    assert running.cancelled()


async def test_a_task_that_keeps_failing_turns_its_health_check_false_then_recovers() -> None:
    clock = FakeClock()
    fail = True

    async def broken() -> None:
        if fail:
            raise RuntimeError("always")
        await asyncio.Event().wait()

    task = SupervisedTask(
        "broken", broken, clock=clock, base_delay=1.0, max_delay=4.0, failure_budget=3, budget_window=60.0
    )
    running = asyncio.create_task(task.run())
    await clock.advance(0)
    assert task.healthy()  # one failure is within the budget
    await clock.advance(1 + 2)
    assert not task.healthy()  # three failures within the window
    fail = False
    await clock.advance(4)  # the next restart runs and stays up
    await clock.advance(61)
    assert task.healthy()  # the failures aged out of the window
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)


async def test_a_task_that_returns_is_not_restarted() -> None:
    clock = FakeClock()
    calls = 0

    async def once() -> None:
        nonlocal calls
        calls += 1

    await asyncio.wait_for(SupervisedTask("once", once, clock=clock).run(), 1)
    assert calls == 1
