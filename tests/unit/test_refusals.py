"""Refused writes: which answers count, the pause and what ends it (injected clock)."""

from __future__ import annotations

import pytest

from kaito_ctrl.kube.clock import FakeClock
from kaito_ctrl.kube.errors import error_for
from kaito_ctrl.kube.refusals import Refusals


def _err(status: int, reason: str = "Invalid", message: str = "boom") -> object:
    return error_for(status, {"reason": reason, "message": message})


@pytest.mark.parametrize(
    ("status", "reason"),
    [(400, "NodeClaimRejected"), (403, "Forbidden"), (404, "KindNotInstalled"), (422, "NodeClaimRejected")],
)
def test_refusals_get_a_reason_and_the_apiservers_message(status: int, reason: str) -> None:
    r = Refusals(FakeClock(), base=5, cap=300)
    got = r.record("ns/ws", "nodes", 1, _err(status, message="spec.x: Invalid value"),  # type: ignore[arg-type]
                   rejected="NodeClaimRejected", action="create a NodeClaim")  # fmt: skip
    assert got is not None and got.reason == reason
    assert "create a NodeClaim" in got.message and "spec.x: Invalid value" in got.message


@pytest.mark.parametrize("status", [500, 503, 429, 410])
def test_transient_answers_are_not_refusals(status: int) -> None:
    r = Refusals(FakeClock())
    assert r.record("k", "s", 1, _err(status), rejected="X", action="a") is None  # type: ignore[arg-type]


def test_conflict_counts_only_when_it_persists() -> None:
    r = Refusals(FakeClock(), conflicts_to_refusal=3)
    results = [r.record("k", "s", 1, _err(409, "AlreadyExists"), rejected="X", action="a") for _ in range(3)]  # type: ignore[arg-type]
    assert results[0] is None and results[1] is None and results[2] is not None


async def test_pause_doubles_is_capped_and_ends_on_edit_or_success() -> None:
    clock = FakeClock()
    r = Refusals(clock, base=5, cap=12)
    first = r.record("k", "s", 1, _err(422), rejected="X", action="a")  # type: ignore[arg-type]
    assert first is not None and first.wait(clock.monotonic()) == 5
    assert r.holding("k", "s", 1) is first
    await clock.advance(5)
    assert r.holding("k", "s", 1) is None, "the pause is over: try again"
    second = r.record("k", "s", 1, _err(422), rejected="X", action="a")  # type: ignore[arg-type]
    assert second is not None and second.wait(clock.monotonic()) == 10
    third = r.record("k", "s", 1, _err(422), rejected="X", action="a")  # type: ignore[arg-type]
    assert third is not None and third.wait(clock.monotonic()) == 12, "capped"
    assert r.holding("k", "s", 2) is None, "a new generation (the user edited) retries at once"
    r.record("k", "s", 2, _err(422), rejected="X", action="a")  # type: ignore[arg-type]
    r.succeeded("k", "s")
    assert r.holding("k", "s", 2) is None and len(r) == 0
    r.record("k", "s", 2, _err(422), rejected="X", action="a")  # type: ignore[arg-type]
    r.forget("k")
    assert len(r) == 0
