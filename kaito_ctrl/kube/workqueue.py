"""An asyncio workqueue with client-go's guarantees.

- A key is never handed to two workers at once: while it is processing, a new ``add`` only marks it dirty,
  and ``done`` puts it back once (so re-adding during processing gives exactly one more run).
- ``add_after`` delays an item; a duplicate keeps the earliest time.
- ``add_rate_limited`` delays by the rate limiter; ``forget`` resets its per-item backoff.
- ``shutdown`` stops handing out items; ``shutdown_with_drain`` also waits for items in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

from kaito_ctrl import metrics
from kaito_ctrl.kube.clock import REAL_CLOCK, Clock
from kaito_ctrl.kube.ratelimit import RateLimiter, default_controller_rate_limiter

T = TypeVar("T", bound=Hashable)


class ShutDown(Exception):
    """Raised by ``get`` once the queue is shut down and has nothing more to hand out."""


class WorkQueue(Generic[T]):
    def __init__(
        self,
        name: str = "",
        *,
        rate_limiter: RateLimiter | None = None,
        clock: Clock = REAL_CLOCK,
        record_metrics: bool = True,
    ) -> None:
        self.name = name
        self.clock = clock
        self.rate_limiter: RateLimiter = rate_limiter or default_controller_rate_limiter(clock)
        self._queue: deque[T] = deque()
        self._dirty: set[T] = set()
        self._processing: set[T] = set()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._shutting_down = False
        self._drained: asyncio.Event | None = None
        # Delayed items: earliest deadline per item, plus a heap of (deadline, seq, item).
        self._delayed: dict[T, float] = {}
        self._heap: list[tuple[float, int, T]] = []
        self._seq = itertools.count()
        self._timer: asyncio.Task[None] | None = None
        self._timer_deadline = float("inf")
        self._record = record_metrics and bool(name)
        if self._record:
            self._m_depth = metrics.WORKQUEUE_DEPTH.labels(name, name, "")
            self._m_adds = metrics.WORKQUEUE_ADDS.labels(name, name)
            self._m_retries = metrics.WORKQUEUE_RETRIES.labels(name, name)
            self._m_queue_dur = metrics.WORKQUEUE_QUEUE_DURATION.labels(name, name)
            self._m_work_dur = metrics.WORKQUEUE_WORK_DURATION.labels(name, name)
            self._added_at: dict[T, float] = {}
            self._started_at: dict[T, float] = {}
            metrics.WORKQUEUE_UNFINISHED_WORK.labels(name, name).set_function(self._unfinished_seconds)
            metrics.WORKQUEUE_LONGEST_RUNNING.labels(name, name).set_function(self._longest_running)

    # ------------------------------------------------------------------ metrics on scrape
    def _unfinished_seconds(self) -> float:
        now = time.perf_counter()
        return sum(now - t for t in self._started_at.values())

    def _longest_running(self) -> float:
        if not self._started_at:
            return 0.0
        return time.perf_counter() - min(self._started_at.values())

    # ------------------------------------------------------------------ core queue
    def __len__(self) -> int:
        return len(self._queue)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def processing(self) -> frozenset[T]:
        return frozenset(self._processing)

    def add(self, item: T) -> None:
        if self._shutting_down or item in self._dirty:
            return
        self._dirty.add(item)
        if self._record:
            self._m_adds.inc()
            self._added_at.setdefault(item, time.perf_counter())
        if item in self._processing:
            return  # ``done`` will put it back exactly once
        self._queue.append(item)
        if self._record:
            self._m_depth.inc()
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    async def get(self) -> T:
        while not self._queue:
            if self._shutting_down:
                raise ShutDown
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self._wake_one()  # pass our wake-up on to another waiter
                raise
        item = self._queue.popleft()
        self._processing.add(item)
        self._dirty.discard(item)
        if self._record:
            self._m_depth.dec()
            now = time.perf_counter()
            added = self._added_at.pop(item, None)
            if added is not None:
                self._m_queue_dur.observe(now - added)
            self._started_at[item] = now
        return item

    def done(self, item: T) -> None:
        self._processing.discard(item)
        if self._record:
            started = self._started_at.pop(item, None)
            if started is not None:
                self._m_work_dur.observe(time.perf_counter() - started)
        if item in self._dirty:
            self._queue.append(item)
            if self._record:
                self._m_depth.inc()
            self._wake_one()
        elif self._drained is not None and not self._processing:
            self._drained.set()

    # ------------------------------------------------------------------ delays and rate limiting
    def add_after(self, item: T, delay: float) -> None:
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(item)
            return
        deadline = self.clock.monotonic() + delay
        current = self._delayed.get(item)
        if current is not None and current <= deadline:
            return  # keep the earliest time
        self._delayed[item] = deadline
        heapq.heappush(self._heap, (deadline, next(self._seq), item))
        if deadline < self._timer_deadline:
            self._arm_timer(deadline)

    def _arm_timer(self, deadline: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_deadline = deadline
        self._timer = asyncio.get_running_loop().create_task(self._fire_at(deadline))

    async def _fire_at(self, deadline: float) -> None:
        await self.clock.sleep(deadline - self.clock.monotonic())
        self._timer = None
        self._timer_deadline = float("inf")
        now = self.clock.monotonic()
        while self._heap and self._heap[0][0] <= now:
            when, _, item = heapq.heappop(self._heap)
            if self._delayed.get(item) == when:
                del self._delayed[item]
                self.add(item)
        if self._heap:
            self._arm_timer(self._heap[0][0])

    def add_rate_limited(self, item: T) -> None:
        if self._record:
            self._m_retries.inc()
        self.add_after(item, self.rate_limiter.when(item))

    def forget(self, item: T) -> None:
        self.rate_limiter.forget(item)

    def num_requeues(self, item: T) -> int:
        return self.rate_limiter.num_requeues(item)

    def waiting(self) -> int:
        """Items waiting for their add_after deadline."""
        return len(self._delayed)

    # ------------------------------------------------------------------ shutdown
    def shutdown(self) -> None:
        self._shutting_down = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)

    async def shutdown_with_drain(self, timeout: float | None = None) -> bool:
        """Shut down and wait until every item being processed is done; True if drained in time."""
        self.shutdown()
        if not self._processing:
            return True
        self._drained = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drained.wait(), timeout)
        return not self._processing
