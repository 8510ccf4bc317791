"""How the client answers a 429: wait as the apiserver says, then send the request again.

A 429 from the apiserver means API Priority and Fairness (or a CRD whose storage is still starting) refused
the request before it ran, so sending it again is safe for every verb, a create included. client-go does the
same: it waits the Retry-After seconds and retries up to 10 times before the caller sees the error. The wait
is bounded so that a bad header cannot park a worker for an hour, and a missing header waits one second.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_RETRIES = 10
DEFAULT_WAIT = 1.0
DEFAULT_MAX_WAIT = 30.0


@dataclass(frozen=True)
class RetryAfterPolicy:
    max_retries: int = DEFAULT_MAX_RETRIES
    default_wait: float = DEFAULT_WAIT
    max_wait: float = DEFAULT_MAX_WAIT

    def wait(self, retry_after: float | None, retries_so_far: int) -> float | None:
        """Seconds to wait before the next attempt, or None when the caller should get the 429."""
        if retries_so_far >= self.max_retries:
            return None
        seconds = self.default_wait if retry_after is None or retry_after < 0 else retry_after
        return min(seconds, self.max_wait)


NO_RETRIES = RetryAfterPolicy(max_retries=0)
