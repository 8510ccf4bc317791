"""P3: workqueue add/get/done cycles per second, beside a naive asyncio.Queue + set baseline in the same run.

Both sides do the same work per cycle (add a key, take it, mark it done) with one producer-consumer loop;
kaito-ctrl's queue also keeps the dirty/processing sets and the workqueue_* metrics it serves in production.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from kaito_ctrl.kube.workqueue import WorkQueue


async def ours(n: int, keys: int = 1000) -> float:
    q: WorkQueue[int] = WorkQueue("bench")
    t0 = time.perf_counter()
    for i in range(n):
        q.add(i % keys)
        item = await q.get()
        q.done(item)
    return n / (time.perf_counter() - t0)


async def naive(n: int, keys: int = 1000) -> float:
    q: asyncio.Queue[int] = asyncio.Queue()
    queued: set[int] = set()
    t0 = time.perf_counter()
    for i in range(n):
        k = i % keys
        if k not in queued:
            queued.add(k)
            q.put_nowait(k)
        item = await q.get()
        queued.discard(item)
        q.task_done()
    return n / (time.perf_counter() - t0)


def run(quick: bool = False) -> list[dict[str, Any]]:
    n = 100_000 if quick else 500_000
    rates: list[float] = []
    base: list[float] = []
    for i in range(3):  # the same n cycles each; which goes first alternates
        if i % 2 == 0:
            rates.append(asyncio.run(ours(n)))
            base.append(asyncio.run(naive(n)))
        else:
            base.append(asyncio.run(naive(n)))
            rates.append(asyncio.run(ours(n)))
    value, baseline = sorted(rates)[1], sorted(base)[1]  # medians of three
    return [
        {
            "id": "P3",
            "name": "workqueue add/get/done cycles (with metrics), median of 3",
            "value": value,
            "unit": "cycles/s",
            "baseline_name": "asyncio.Queue + set, no metrics",
            "baseline_value": baseline,
            "ratio": value / baseline,
            "target": ">= 200k cycles/s",
            "met": value >= 200_000,
            "note": "",
        }
    ]


if __name__ == "__main__":
    print(json.dumps(run(quick=bool(os.environ.get("QUICK"))), indent=1))
