"""Controller result handling, worker survival, structlog context and enqueue helpers."""

from __future__ import annotations

import asyncio

import structlog

from kaito_ctrl.kube.clock import FakeClock
from kaito_ctrl.kube.errors import TerminalError
from kaito_ctrl.kube.informer import DeletedFinalStateUnknown
from kaito_ctrl.kube.ratelimit import ItemExponentialFailureRateLimiter
from kaito_ctrl.runtime.controller import Controller, Result
from kaito_ctrl.runtime.handlers import (
    GENERATION_CHANGED,
    Request,
    enqueue_for_owner,
    enqueue_mapped,
    unwrap,
)


async def _until(pred: object, clock: FakeClock | None = None) -> None:
    for _ in range(200):
        if pred():  # type: ignore[operator]
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


async def test_results_errors_and_terminal_errors() -> None:
    clock = FakeClock()
    calls: dict[str, int] = {}

    async def reconcile(req: Request) -> Result | None:
        calls[req.name] = calls.get(req.name, 0) + 1
        if req.name == "boom" and calls[req.name] < 3:
            raise KeyError("a bug")  # must not kill the worker
        if req.name == "terminal":
            raise TerminalError("bad input")
        if req.name == "later" and calls[req.name] == 1:
            return Result(requeue_after=30)
        return None

    ctrl = Controller(
        "t", reconcile, workers=2, clock=clock, rate_limiter=ItemExponentialFailureRateLimiter(1, 100)
    )
    ctrl.start()
    for name in ("ok", "boom", "terminal", "later"):
        ctrl.enqueue(Request("ns", name))
    await _until(lambda: calls.get("ok") == 1 and calls.get("terminal") == 1 and calls.get("later") == 1)
    assert calls.get("boom") == 1
    await clock.advance(1.0)  # first retry after 1 s
    await _until(lambda: calls.get("boom") == 2)
    await clock.advance(2.0)  # second retry after 2 s
    await _until(lambda: calls.get("boom") == 3)
    assert ctrl.queue.num_requeues(Request("ns", "boom")) == 0, "success forgets the backoff"
    await clock.advance(30)
    await _until(lambda: calls.get("later") == 2)
    await clock.advance(1000)
    for _ in range(20):
        await asyncio.sleep(0)
    assert calls["terminal"] == 1, "terminal errors are not retried"
    assert calls["ok"] == 1
    await ctrl.stop(1)


async def test_reconcile_id_and_key_are_bound_into_logs() -> None:
    seen: list[dict[str, object]] = []

    async def reconcile(req: Request) -> None:
        seen.append(dict(structlog.contextvars.get_contextvars()))

    ctrl = Controller("logs", reconcile, clock=FakeClock())
    ctrl.start()
    ctrl.enqueue(Request("ns", "a"))
    ctrl.enqueue(Request("ns", "b"))
    await _until(lambda: len(seen) == 2)
    assert {s["key"] for s in seen} == {"ns/a", "ns/b"}
    assert all(s["controller"] == "logs" for s in seen)
    assert seen[0]["reconcile_id"] != seen[1]["reconcile_id"]
    await ctrl.stop(1)


def test_owner_handler_matches_group_and_kind_and_only_the_controller() -> None:
    handler = enqueue_for_owner("kaito.sh", "Workspace")
    child = {
        "metadata": {
            "namespace": "ns",
            "name": "dep",
            "ownerReferences": [
                {"apiVersion": "kaito.sh/v1alpha1", "kind": "Workspace", "name": "w", "controller": True},
                {"apiVersion": "kaito.sh/v1beta1", "kind": "Workspace", "name": "other"},
            ],
        }
    }
    assert handler.requests_for(child) == {Request("ns", "w")}
    assert enqueue_for_owner("apps", "Workspace").requests_for(child) == set()


def test_mapped_handler_unions_old_and_new_and_tombstones_unwrap() -> None:
    def by_label(obj: dict) -> list[Request]:  # type: ignore[type-arg]
        ws = obj["metadata"].get("labels", {}).get("kaito.sh/workspace")
        return [Request("ns", ws)] if ws else []

    handler = enqueue_mapped(by_label)
    old = {"metadata": {"name": "n", "labels": {"kaito.sh/workspace": "a"}}}
    new = {"metadata": {"name": "n", "labels": {"kaito.sh/workspace": "b"}}}
    assert handler.requests_for(old, new) == {Request("ns", "a"), Request("ns", "b")}
    assert unwrap(DeletedFinalStateUnknown("n", old)) is old


def test_generation_changed_predicate() -> None:
    a = {"metadata": {"generation": 1, "resourceVersion": "1"}}
    b = {"metadata": {"generation": 1, "resourceVersion": "2"}}
    c = {"metadata": {"generation": 2, "resourceVersion": "3"}}
    assert not GENERATION_CHANGED.update(a, b)
    assert GENERATION_CHANGED.update(b, c)
