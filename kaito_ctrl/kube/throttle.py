"""Client-side request throttling: a token bucket, as client-go's.

The defaults are a controller's (Karpenter ships the same), not client-go's 30 qps / burst 50 for kubectl-like
tools: a burst of Workspaces costs about nine requests each, and at 30 qps 200 Workspaces waited a minute on
this bucket alone. The apiserver protects itself with API Priority and Fairness (a 429 and Retry-After, which
the client waits out); this bucket only keeps one process from flooding it. ``kaito-ctrl run`` sets both with
``--kube-client-qps`` and ``--kube-client-burst``.
"""

from __future__ import annotations

import asyncio

from kaito_ctrl.kube.clock import REAL_CLOCK, Clock

DEFAULT_QPS = 200.0
DEFAULT_BURST = 300


class TokenBucket:
    """Reservation-style token bucket: each caller reserves a token and waits until its slot."""

    def __init__(self, qps: float, burst: int, clock: Clock = REAL_CLOCK) -> None:
        if qps <= 0 or burst < 1:
            raise ValueError("qps must be > 0 and burst >= 1")
        self.qps = qps
        self.burst = burst
        self.clock = clock
        self._tokens = float(burst)
        self._last = clock.monotonic()
        self._lock = asyncio.Lock()

    def reserve(self) -> float:
        """Take a token (possibly going negative) and return how long the caller must wait for it."""
        now = self.clock.monotonic()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
        self._last = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    async def acquire(self) -> float:
        delay = self.reserve()
        if delay > 0:
            await self.clock.sleep(delay)
        return delay
