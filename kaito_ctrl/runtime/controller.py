"""A controller: a rate-limited workqueue of requests and N workers calling one reconcile function.

A reconcile returns :class:`Result` (done, or requeue after a delay), raises (the request is requeued with
rate-limited backoff) or raises :class:`TerminalError` (not requeued: retrying cannot help).
An exception never kills a worker. Each reconcile runs with controller, object key and a fresh
reconcile id bound into the structlog context, so every log line it writes can be traced.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import structlog

from kaito_ctrl import metrics
from kaito_ctrl.kube.clock import REAL_CLOCK, Clock
from kaito_ctrl.kube.errors import TerminalError, TooManyRequests
from kaito_ctrl.kube.informer import DeletedFinalStateUnknown, SharedInformer
from kaito_ctrl.kube.ratelimit import RateLimiter
from kaito_ctrl.kube.workqueue import ShutDown, WorkQueue
from kaito_ctrl.runtime.handlers import EventHandler, Obj, Predicate, Request, unwrap

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Result:
    requeue_after: float | None = None
    requeue: bool = False


DONE = Result()
Reconcile = Callable[[Request], Awaitable[Result | None]]


class Controller:
    def __init__(
        self,
        name: str,
        reconcile: Reconcile,
        *,
        workers: int = 1,
        rate_limiter: RateLimiter | None = None,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        self.name = name
        self.reconcile = reconcile
        self.workers = workers
        self.clock = clock
        self.queue: WorkQueue[Request] = WorkQueue(name, rate_limiter=rate_limiter, clock=clock)
        self._tasks: list[asyncio.Task[None]] = []
        self._active = 0
        metrics.MAX_CONCURRENT_RECONCILES.labels(name).set(workers)
        self._m_active = metrics.ACTIVE_WORKERS.labels(name)
        self._m_time = metrics.RECONCILE_TIME.labels(name)
        self._m_errors = metrics.RECONCILE_ERRORS.labels(name)
        self._m_terminal = metrics.TERMINAL_RECONCILE_ERRORS.labels(name)
        self._m_panics = metrics.RECONCILE_PANICS.labels(name)
        self._m_total = {
            r: metrics.RECONCILE_TOTAL.labels(name, r)
            for r in ("success", "error", "requeue", "requeue_after")
        }
        self._log = log.bind(controller=name)

    # ------------------------------------------------------------------ wiring
    def enqueue(self, request: Request) -> None:
        self.queue.add(request)

    def watch(
        self,
        informer: SharedInformer,
        handler: EventHandler,
        predicates: Iterable[Predicate] = (),
    ) -> None:
        preds = tuple(predicates)

        def on_add(obj: Obj) -> None:
            if all(p.create(obj) for p in preds):
                for r in handler.requests_for(obj):
                    self.queue.add(r)

        def on_update(old: Obj, new: Obj) -> None:
            if all(p.update(old, new) for p in preds):
                for r in handler.requests_for(old, new):
                    self.queue.add(r)

        def on_delete(obj: Obj | DeletedFinalStateUnknown) -> None:
            o = unwrap(obj)
            if all(p.delete(o) for p in preds):
                for r in handler.requests_for(o):
                    self.queue.add(r)

        informer.add_event_handler(on_add, on_update, on_delete)

    # ------------------------------------------------------------------ running
    def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._worker(i), name=f"{self.name}-worker-{i}")
                for i in range(self.workers)
            ]

    async def stop(self, drain_timeout: float = 30.0) -> None:
        await self.queue.shutdown_with_drain(drain_timeout)
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks = []

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    async def _worker(self, index: int) -> None:
        while True:
            try:
                request = await self.queue.get()
            except ShutDown:
                return
            self._active += 1
            self._m_active.set(self._active)
            try:
                await self._process(request)
            finally:
                self._active -= 1
                self._m_active.set(self._active)
                self.queue.done(request)

    async def _process(self, request: Request) -> None:
        reconcile_id = uuid.uuid4().hex[:12]
        t0 = time.perf_counter()
        with structlog.contextvars.bound_contextvars(
            controller=self.name, key=request.key, reconcile_id=reconcile_id
        ):
            try:
                result = await self.reconcile(request) or DONE
            except asyncio.CancelledError:
                raise
            except TerminalError as e:
                self._m_terminal.inc()
                self._m_errors.inc()
                self._m_total["error"].inc()
                self.queue.forget(request)
                self._log.error("reconcile failed permanently; not requeued", error=str(e))
                return
            except TooManyRequests as e:
                self._m_errors.inc()
                self._m_total["error"].inc()
                delay = max(e.retry_after or 0.0, self.queue.rate_limiter.when(request))
                self._log.warning("throttled by the apiserver", retry_after=e.retry_after)
                self.queue.add_after(request, delay)
                return
            except Exception as e:
                self._m_errors.inc()
                self._m_total["error"].inc()
                self._log.warning(
                    "reconcile failed; requeued with backoff",
                    error=f"{type(e).__name__}: {e}"[:1000],
                    requeues=self.queue.num_requeues(request),
                    exc_info=_is_unexpected(e),
                )
                if _is_unexpected(e):
                    self._m_panics.inc()
                self.queue.add_rate_limited(request)
                return
            finally:
                self._m_time.observe(time.perf_counter() - t0)
            if result.requeue_after is not None and result.requeue_after > 0:
                self._m_total["requeue_after"].inc()
                self.queue.forget(request)
                self.queue.add_after(request, result.requeue_after)
            elif result.requeue:
                self._m_total["requeue"].inc()
                self.queue.add_rate_limited(request)
            else:
                self._m_total["success"].inc()
                self.queue.forget(request)


def _is_unexpected(e: Exception) -> bool:
    """Programming errors (as opposed to API or cloud errors) are what controller-runtime calls panics."""
    from kaito_ctrl.kube.errors import ApiError

    return not isinstance(e, ApiError | OSError | TimeoutError) and type(e).__module__ == "builtins"
