"""The manager fails closed: losing the lease, or the elector task ending for any reason, cancels reconciles
in flight and leader-only tasks at once (no drain) and makes ``run`` return False so the process exits
non-zero; a voluntary stop still drains. In-memory lease store and a fake clock: no sleeps."""

from __future__ import annotations

import asyncio
from typing import Any

from kaito_ctrl.kube.clock import FakeClock
from kaito_ctrl.kube.leaderelection import LeaderElectionConfig
from kaito_ctrl.runtime.controller import Controller
from kaito_ctrl.runtime.handlers import Request
from kaito_ctrl.runtime.manager import Manager
from tests.unit.test_leaderelection import FakeLeases


class _Reconciler:
    """A reconcile that starts and then waits to be let go (or cancelled)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.cancelled = False
        self.finished = False

    async def __call__(self, request: Request) -> None:
        self.started.set()
        try:
            await self.release.wait()
            self.finished = True
        except asyncio.CancelledError:
            self.cancelled = True
            raise


def _manager(clock: FakeClock, store: FakeLeases) -> tuple[Manager, _Reconciler, asyncio.Event]:
    manager = Manager(
        object(),  # type: ignore[arg-type]  # no informers are registered, so the client is never used
        leader_election=LeaderElectionConfig(name="lead", namespace="ns", identity="a"),
        lease_client=store,
        drain_timeout=3600,  # a drain would hang the test: losing the lease must not wait for it
        clock=clock,
    )
    reconciler = _Reconciler()
    manager.add_controller(Controller("c", reconciler, clock=clock))
    leader_task_cancelled = asyncio.Event()

    async def leader_only() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            leader_task_cancelled.set()
            raise

    manager.add_runnable(leader_only, needs_leader=True)
    return manager, reconciler, leader_task_cancelled


async def _leading(manager: Manager, reconciler: _Reconciler) -> None:
    # Queued before the controller starts; its worker takes it once this replica leads.
    manager.controllers[0].enqueue(Request("ns", "w"))
    await asyncio.wait_for(reconciler.started.wait(), 2)
    assert manager.is_leader


async def _run_until_done(task: asyncio.Task[Any], clock: FakeClock, limit: float) -> None:
    start = clock.monotonic()
    while not task.done():
        assert clock.monotonic() - start <= limit, "the manager kept running"
        await clock.advance(0.5)


async def test_a_lost_lease_cancels_in_flight_work_at_once_and_exits_nonzero() -> None:
    clock, store = FakeClock(), FakeLeases()
    manager, reconciler, leader_task_cancelled = _manager(clock, store)
    task = asyncio.create_task(manager.run())
    await _leading(manager, reconciler)
    store.fail = True
    await _run_until_done(task, clock, 15)
    assert task.result() is False
    assert reconciler.cancelled and not reconciler.finished
    assert leader_task_cancelled.is_set()


async def test_an_elector_that_crashes_is_loss_of_leadership() -> None:
    clock, store = FakeClock(), FakeLeases()
    manager, reconciler, _ = _manager(clock, store)
    task = asyncio.create_task(manager.run())
    await _leading(manager, reconciler)
    assert manager.elector is not None

    async def crash() -> None:
        raise RuntimeError("a bug in renewal")

    # The renew loop itself raising (not a failed attempt, which is caught): the task ends with an exception.
    manager.elector.clock = _CrashingClock(clock, crash)  # type: ignore[assignment]
    await _run_until_done(task, clock, 15)
    assert task.result() is False
    assert reconciler.cancelled and not reconciler.finished


async def test_a_voluntary_stop_drains_in_flight_work() -> None:
    clock, store = FakeClock(), FakeLeases()
    manager, reconciler, _ = _manager(clock, store)
    task = asyncio.create_task(manager.run())
    await _leading(manager, reconciler)
    manager.stop()
    for _ in range(20):
        await asyncio.sleep(0)
    assert not task.done(), "a SIGTERM stop waits for the reconcile in flight"
    reconciler.release.set()
    assert await asyncio.wait_for(task, 2) is True
    assert reconciler.finished and not reconciler.cancelled


class _CrashingClock:
    """The fake clock, except that the next sleep raises: a bug inside the renew loop."""

    def __init__(self, clock: FakeClock, crash: Any) -> None:
        self._clock = clock
        self._crash = crash

    def monotonic(self) -> float:
        return self._clock.monotonic()

    def now(self) -> float:
        return self._clock.now()

    async def sleep(self, seconds: float) -> None:
        await self._crash()


async def test_a_background_task_that_raises_is_restarted_and_has_a_health_check() -> None:
    clock, store = FakeClock(), FakeLeases()
    manager, reconciler, _ = _manager(clock, store)
    runs = 0
    restarted = asyncio.Event()

    async def gc_like() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise ConnectionResetError("reset by peer")  # what a GC loop meets on a dropped connection
        restarted.set()
        await asyncio.Event().wait()

    manager.add_runnable(gc_like, needs_leader=False, name="gc-like")
    task = asyncio.create_task(manager.run())
    await _leading(manager, reconciler)
    while not restarted.is_set():
        await clock.advance(0.5)
    assert runs == 2
    assert (await manager.healthz.run())["task:gc-like"] is True
    manager.stop()
    reconciler.release.set()
    assert await asyncio.wait_for(task, 2) is True
