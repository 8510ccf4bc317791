"""Leader election against an in-memory Lease store with apiserver-like optimistic concurrency, on a fake
clock: no sleeps, deterministic time."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import aiohttp
import pytest

from kaito_ctrl.kube.clock import FakeClock
from kaito_ctrl.kube.errors import Conflict, NotFound
from kaito_ctrl.kube.leaderelection import LeaderElectionConfig, LeaderElector
from kaito_ctrl.kube.resources import Resource


class FakeLeases:
    def __init__(self) -> None:
        self.objs: dict[str, dict[str, Any]] = {}
        self.rv = 0
        self.fail = False
        # What a failing call raises: by default what the first tests assumed; the fail-closed tests use others.
        self.error: Exception = OSError("apiserver unreachable")
        self.hang = False  # a black-holed connection: calls never return

    async def get(self, res: Resource, name: str, namespace: str | None = None) -> dict[str, Any]:
        await self._maybe_fail()
        if name not in self.objs:
            raise NotFound(404, "NotFound", name)
        return copy.deepcopy(self.objs[name])

    async def create(
        self, res: Resource, obj: dict[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        await self._maybe_fail()
        name = obj["metadata"]["name"]
        if name in self.objs:
            raise Conflict(409, "AlreadyExists", name)
        self.rv += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.objs[name] = obj
        return copy.deepcopy(obj)

    async def replace(self, res: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        await self._maybe_fail()
        name = obj["metadata"]["name"]
        if self.objs[name]["metadata"]["resourceVersion"] != obj["metadata"].get("resourceVersion"):
            raise Conflict(409, "Conflict", "stale")
        self.rv += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.objs[name] = obj
        return copy.deepcopy(obj)

    async def _maybe_fail(self) -> None:
        if self.hang:
            await asyncio.Event().wait()
        if self.fail:
            raise self.error


def _cfg(identity: str, **kw: Any) -> LeaderElectionConfig:
    return LeaderElectionConfig(name="lead", namespace="ns", identity=identity, **kw)


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        _cfg("a", lease_duration=10, renew_deadline=10).validate()
    with pytest.raises(ValueError):
        _cfg("a", renew_deadline=2, retry_period=2).validate()


async def test_only_one_acquires_and_the_other_takes_over_after_expiry_by_local_time() -> None:
    clock = FakeClock()
    store = FakeLeases()
    a = LeaderElector(store, _cfg("a"), clock=clock)
    b = LeaderElector(store, _cfg("b"), clock=clock)
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    assert store.objs["lead"]["spec"]["holderIdentity"] == "a"
    # b observed the record now; it stays held until 15 s of *b's* time passes without a change.
    await clock.advance(14)
    assert not await b.try_acquire_or_renew()
    await clock.advance(1.5)
    assert await b.try_acquire_or_renew()
    spec = store.objs["lead"]["spec"]
    assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1


async def test_renewals_by_the_holder_keep_others_out() -> None:
    clock = FakeClock()
    store = FakeLeases()
    a = LeaderElector(store, _cfg("a"), clock=clock)
    b = LeaderElector(store, _cfg("b"), clock=clock)
    assert await a.try_acquire_or_renew()
    for _ in range(20):
        await clock.advance(2)
        assert await a.try_acquire_or_renew()
        assert not await b.try_acquire_or_renew()
    assert store.objs["lead"]["spec"]["leaseTransitions"] == 0


async def test_leadership_is_lost_after_renew_deadline_without_success() -> None:
    clock = FakeClock()
    store = FakeLeases()
    a = LeaderElector(store, _cfg("a"), clock=clock)
    started, stopped = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(a.run(started.set, stopped.set))
    await asyncio.sleep(0)
    await asyncio.wait_for(started.wait(), 1)
    assert a.is_leader
    store.fail = True
    for _ in range(5):
        await clock.advance(2.0)
    # After 10 s (renew deadline) of failing renewals, leadership is gone.
    await asyncio.wait_for(stopped.wait(), 1)
    assert not a.is_leader
    await task


async def test_release_on_cancel_lets_a_successor_in_at_once() -> None:
    clock = FakeClock()
    store = FakeLeases()
    a = LeaderElector(store, _cfg("a", release_on_cancel=True), clock=clock)
    b = LeaderElector(store, _cfg("b"), clock=clock)
    started = asyncio.Event()
    task = asyncio.create_task(a.run(started.set, lambda: None))
    await asyncio.wait_for(started.wait(), 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert store.objs["lead"]["spec"]["holderIdentity"] == ""
    assert await b.try_acquire_or_renew()


@pytest.mark.parametrize(
    "error",
    [
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientPayloadError("truncated"),
        RuntimeError("something nobody anticipated"),
        ValueError("bad json"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_any_renewal_error_ends_leadership_within_the_renew_deadline(error: Exception) -> None:
    clock = FakeClock()
    store = FakeLeases()
    a = LeaderElector(store, _cfg("a"), clock=clock)
    started, stopped = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(a.run(started.set, stopped.set))
    await asyncio.wait_for(started.wait(), 1)
    store.fail, store.error = True, error
    lost_by = clock.monotonic() + a.config.renew_deadline + a.config.retry_period
    while not stopped.is_set():
        assert clock.monotonic() <= lost_by, "still leading past the renew deadline"
        await clock.advance(0.5)
    assert not a.is_leader and task.done() and task.exception() is None


async def test_a_black_holed_renewal_ends_leadership_at_the_renew_deadline() -> None:
    clock = FakeClock()
    store = FakeLeases()
    a = LeaderElector(store, _cfg("a"), clock=clock)
    started, stopped = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(a.run(started.set, stopped.set))
    await asyncio.wait_for(started.wait(), 1)
    await clock.advance(2.0)  # one successful renewal
    assert a.is_leader and not stopped.is_set()
    last_success = clock.monotonic()
    store.hang = True
    while not stopped.is_set():
        await clock.advance(0.25)
        assert clock.monotonic() <= last_success + a.config.renew_deadline + 0.25
    assert not a.is_leader
    await task


async def test_an_elector_that_crashes_does_not_claim_to_lead() -> None:
    clock = FakeClock()
    store = FakeLeases()
    a = LeaderElector(store, _cfg("a"), clock=clock)
    started = asyncio.Event()

    def boom() -> None:
        raise RuntimeError("on_stopped bug")

    task = asyncio.create_task(a.run(started.set, boom))
    await asyncio.wait_for(started.wait(), 1)
    store.fail = True
    while not task.done():
        await clock.advance(1.0)
    with pytest.raises(RuntimeError):
        task.result()
    assert not a.is_leader
