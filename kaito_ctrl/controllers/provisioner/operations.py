"""Long cloud operations (an agent pool create takes minutes) run beside the workers, not inside them.

A reconcile starts an operation and returns; when the operation ends the claim is enqueued again and the
next reconcile collects the outcome. Nothing here is durable on purpose: after a restart the next reconcile
simply starts the operation again, and the cloud layer adopts the pool or resumes the operation in flight
(the pool's name is the claim's, so there is never a second pool).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

log = structlog.get_logger(__name__)


@dataclass
class Operation:
    kind: str  # "create" or "delete"
    key: str
    started: float
    task: asyncio.Task[Any]
    # Set once the cloud holds the operation (a create's PUT answered): a delete may then preempt it.
    accepted: asyncio.Event | None = None

    @property
    def done(self) -> bool:
        return self.task.done()


class Operations:
    """At most one operation per key; ``on_done(key)`` is called when one ends (to enqueue the key)."""

    def __init__(self, on_done: Callable[[str], None]) -> None:
        self._ops: dict[str, Operation] = {}
        self._on_done = on_done

    def get(self, key: str) -> Operation | None:
        return self._ops.get(key)

    def start(
        self,
        kind: str,
        key: str,
        started: float,
        work: Callable[[], Awaitable[Any]],
        accepted: asyncio.Event | None = None,
    ) -> Operation:
        current = self._ops.get(key)
        if current is not None and not current.done:
            if current.kind != kind:
                raise RuntimeError(f"{key}: a {current.kind} operation is running")
            return current

        async def run() -> Any:
            try:
                return await work()
            finally:
                # Called for success, failure and cancellation alike: the claim must look again.
                self._on_done(key)

        op = Operation(kind, key, started, asyncio.create_task(run(), name=f"cloud-{kind}-{key}"), accepted)
        self._ops[key] = op
        return op

    def pop(self, key: str) -> Operation | None:
        """Take a finished operation's record (its outcome is read from ``task``)."""
        op = self._ops.get(key)
        if op is not None and op.done:
            del self._ops[key]
            return op
        return None

    async def cancel(self, key: str) -> None:
        """Stop waiting on an operation; the cloud may still finish it, which the caller must allow for."""
        op = self._ops.pop(key, None)
        if op is None or op.done:
            return
        op.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await op.task

    async def cancel_all(self) -> None:
        for key in list(self._ops):
            await self.cancel(key)

    def __len__(self) -> int:
        return sum(1 for op in self._ops.values() if not op.done)


class Backoff:
    """Per-claim exponential backoff for failed cloud calls, kept across reconciles.

    The workqueue's own backoff is reset whenever a reconcile ends with a plain requeue-after (as one does
    while an operation is in flight), so failures of the cloud are counted here instead.
    """

    def __init__(self, base: float = 2.0, cap: float = 300.0) -> None:
        self.base = base
        self.cap = cap
        self._failures: dict[str, int] = {}
        self._not_before: dict[str, float] = {}

    def failed(self, key: str, now: float, retry_after: float | None = None) -> float:
        """Record a failure; returns the delay before the next attempt (never less than Retry-After)."""
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        delay = max(min(self.base * float(2**n), self.cap), retry_after or 0.0)
        self._not_before[key] = now + delay
        return delay

    def wait(self, key: str, now: float) -> float:
        """Seconds still to wait before the next attempt (0 when it may go)."""
        return max(0.0, self._not_before.get(key, 0.0) - now)

    def failures(self, key: str) -> int:
        return self._failures.get(key, 0)

    def reset(self, key: str) -> None:
        self._failures.pop(key, None)
        self._not_before.pop(key, None)
