"""Supervised background tasks: a runnable that raises is logged with its traceback, counted, and restarted
with exponential backoff, never silently gone. One that keeps failing turns its /healthz check false, naming
it, so the kubelet restarts the pod rather than the process limping on without it."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from kaito_ctrl import metrics
from kaito_ctrl.kube.clock import REAL_CLOCK, Clock

log = structlog.get_logger(__name__)

Runnable = Callable[[], Coroutine[Any, Any, None]]


class SupervisedTask:
    """Runs ``runnable`` until it returns or is cancelled, restarting it after each exception.

    Backoff doubles from ``base_delay`` to ``max_delay`` and starts over once a run has lasted ``max_delay``.
    Health: fewer than ``failure_budget`` failures within the last ``budget_window`` seconds.
    """

    def __init__(
        self,
        name: str,
        runnable: Runnable,
        *,
        clock: Clock = REAL_CLOCK,
        base_delay: float = 1.0,
        max_delay: float = 60.0,
        failure_budget: int = 5,
        budget_window: float = 600.0,
    ) -> None:
        self.name = name
        self.runnable = runnable
        self.clock = clock
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.failure_budget = failure_budget
        self.budget_window = budget_window
        self._failures: collections.deque[float] = collections.deque()
        self._restarts = metrics.TASK_RESTARTS.labels(name)
        self._log = log.bind(task=name)

    def healthy(self) -> bool:
        horizon = self.clock.monotonic() - self.budget_window
        while self._failures and self._failures[0] < horizon:
            self._failures.popleft()
        return len(self._failures) < self.failure_budget

    async def run(self) -> None:
        delay = self.base_delay
        while True:
            started = self.clock.monotonic()
            try:
                await self.runnable()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                now = self.clock.monotonic()
                if now - started >= self.max_delay:
                    delay = self.base_delay  # it ran well for a while: this is a new failure, not a streak
                self._failures.append(now)
                self._restarts.inc()
                self._log.exception(
                    "background task failed; restarting it",
                    restart_in_seconds=delay,
                    healthy=self.healthy(),
                )
            await self.clock.sleep(delay)
            delay = min(delay * 2, self.max_delay)
