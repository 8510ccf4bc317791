"""Writes the apiserver refuses: a reason on the object and a growing pause, not a hot retry loop.

A 400, 403, 404 (the kind is not served: its CRD is missing) or 422 answer will come back the same until
someone changes something: the object, the RBAC, the installed CRDs. Retrying at the controller's usual
backoff only fills logs while the object's status says nothing. :class:`Refusals` turns such an answer into a
:class:`Refusal` (a reason and the apiserver's own message) that the caller writes as a condition, and holds
the failed step back with an exponential pause per (object, step). A 409 counts only once it persists: a
conflict usually means the cache is behind and the next try succeeds. A new generation of the object (the
user edited it) drops the pause, so the fix is tried at once; so does a later success.
"""

from __future__ import annotations

from dataclasses import dataclass

from kaito_ctrl.kube.clock import REAL_CLOCK, Clock
from kaito_ctrl.kube.errors import ApiError

REFUSED_STATUSES = frozenset({400, 403, 404, 422})
CONFLICT = 409


@dataclass(frozen=True)
class Refusal:
    reason: str
    message: str
    retry_at: float  # on the clock's monotonic scale
    attempts: int

    def wait(self, now: float) -> float:
        return max(0.0, self.retry_at - now)


def refusal_reason(error: ApiError, rejected: str) -> str:
    """The condition reason for a refused write: ``Forbidden`` (RBAC), ``KindNotInstalled`` (404 of a
    collection: the CRD is missing), else ``rejected`` (e.g. ``NodeClaimRejected``, ``WorkloadRejected``)."""
    if error.status == 403:
        return "Forbidden"
    if error.status == 404:
        return "KindNotInstalled"
    return rejected


def describe(error: ApiError, action: str) -> str:
    """``action`` and the apiserver's answer, as the condition message and the Event say it."""
    detail = error.message or str(error)
    return f"the apiserver refused to {action} ({error.status} {error.reason or 'Error'}): {detail}"


@dataclass
class _Entry:
    generation: int
    conflicts: int = 0
    refusal: Refusal | None = None


class Refusals:
    """Refusals per (object key, step) with an exponential pause (base * 2^(attempts-1), capped)."""

    def __init__(
        self,
        clock: Clock = REAL_CLOCK,
        *,
        base: float = 5.0,
        cap: float = 300.0,
        conflicts_to_refusal: int = 3,
    ) -> None:
        self.clock = clock
        self.base = base
        self.cap = cap
        self.conflicts_to_refusal = conflicts_to_refusal
        self._entries: dict[tuple[str, str], _Entry] = {}

    def _entry(self, key: str, step: str, generation: int) -> _Entry:
        entry = self._entries.get((key, step))
        if entry is None or entry.generation != generation:
            entry = self._entries[(key, step)] = _Entry(generation)
        return entry

    def holding(self, key: str, step: str, generation: int) -> Refusal | None:
        """The refusal of this step that is still pausing (same generation), else None: go ahead."""
        entry = self._entries.get((key, step))
        if entry is None or entry.generation != generation:
            self._entries.pop((key, step), None)
            return None
        if entry.refusal is not None and entry.refusal.wait(self.clock.monotonic()) > 0:
            return entry.refusal
        return None

    def record(
        self, key: str, step: str, generation: int, error: ApiError, *, rejected: str, action: str
    ) -> Refusal | None:
        """A refusal when ``error`` is one (the caller reports it), None when it is worth a normal retry."""
        entry = self._entry(key, step, generation)
        if error.status == CONFLICT:
            entry.conflicts += 1
            if entry.conflicts < self.conflicts_to_refusal:
                return None
        elif error.status not in REFUSED_STATUSES:
            return None
        attempts = (entry.refusal.attempts if entry.refusal else 0) + 1
        delay = min(self.cap, self.base * 2 ** (attempts - 1))
        entry.refusal = Refusal(
            refusal_reason(error, rejected), describe(error, action), self.clock.monotonic() + delay, attempts
        )
        return entry.refusal

    def succeeded(self, key: str, step: str) -> None:
        self._entries.pop((key, step), None)

    def forget(self, key: str) -> None:
        """Drop everything about ``key`` (the object is gone)."""
        for k in [k for k in self._entries if k[0] == key]:
            del self._entries[k]

    def __len__(self) -> int:
        return len(self._entries)
