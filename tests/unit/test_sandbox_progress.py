"""`sandbox up` progress lines: a new step is said at once with the elapsed time; the same step is repeated only
after the interval (so a long wait shows it is alive without flooding the terminal)."""

from __future__ import annotations

import io

from kaito_ctrl.sandbox.progress import Progress


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_steps_are_said_once_then_repeated_after_the_interval() -> None:
    clock, out = FakeClock(), io.StringIO()
    p = Progress(out, clock=clock, interval=15)
    p.update("waiting for: the control plane")
    clock.now += 5
    p.update("waiting for: the control plane")  # too soon: not repeated
    clock.now += 11
    p.update("waiting for: the control plane")  # 16 s after it was said
    clock.now += 1
    p.update("waiting for: kaito-ctrl")  # a new step: said at once
    clock.now += 60
    p.update("waiting for: kaito-ctrl")
    lines = out.getvalue().splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == [
        "waiting for: the control plane",
        "waiting for: the control plane",
        "waiting for: kaito-ctrl",
        "waiting for: kaito-ctrl",
    ]
    assert [line.split("]")[0].split("[")[1].strip() for line in lines] == ["0s", "16s", "17s", "1m17s"]


def test_during_says_the_step_before_the_blocking_call() -> None:
    clock, out = FakeClock(), io.StringIO()
    p = Progress(out, clock=clock, interval=3600)
    with p.during("building"):
        assert "building" in out.getvalue()
