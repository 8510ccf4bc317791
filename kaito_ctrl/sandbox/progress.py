"""Progress lines for the long steps of ``sandbox up``: what is being waited for, and for how long.

The first control-plane build takes 8-15 minutes and a cold start tens of seconds; a silent terminal for that
long looks like a hang. Each line says the elapsed time and the step, and a step that goes on is repeated every
``interval`` seconds so the user sees it is alive.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TextIO


class Progress:
    def __init__(
        self,
        out: TextIO | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        interval: float = 15.0,
    ) -> None:
        self.out = out or sys.stderr
        self.clock = clock
        self.interval = interval
        self.started = clock()
        self._step = ""
        self._said_at = -interval
        self._lock = threading.Lock()

    def elapsed(self) -> str:
        seconds = int(self.clock() - self.started)
        return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"

    def update(self, step: str) -> None:
        """Say ``step`` when it is new, or again once ``interval`` has passed since it was last said."""
        with self._lock:
            now = self.clock()
            if step == self._step and now - self._said_at < self.interval:
                return
            self._step, self._said_at = step, now
            print(f"    [{self.elapsed():>6}] {step}", file=self.out, flush=True)

    @contextlib.contextmanager
    def during(self, step: str) -> Iterator[None]:
        """Repeat ``step`` every ``interval`` seconds while a blocking call runs in the body."""
        done = threading.Event()

        def beat() -> None:
            while not done.wait(self.interval):
                self.update(step)

        self.update(step)
        thread = threading.Thread(target=beat, name="sandbox-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()
