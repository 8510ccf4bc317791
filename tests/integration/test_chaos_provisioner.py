"""Fault matrix: the node provisioner SIGKILLed at seeded random moments while pools are being created and
deleted, then restarted. Every run must end with exactly one pool per live claim, none for deleted ones, and
every live claim Ready. Two seeds run in ``make test``; ``make chaos`` runs the full matrix and appends one
JSON line per run to ``$KAITO_CHAOS_REPORT`` (figures for docs/reliability.md)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from pathlib import Path
from typing import Any

import pytest

from kaito_ctrl.kube import conditions as cond
from kaito_ctrl.kube.errors import NotFound
from kaito_ctrl.testing.controlplane import ControlPlane
from tests.integration.provisioning import TEST_LABEL, ProvisionerProcess, eventually, new_name, rig

pytestmark = pytest.mark.chaos


def _report(figures: dict[str, Any]) -> None:
    report = os.environ.get("KAITO_CHAOS_REPORT")
    if report:
        with Path(report).open("a") as f:
            f.write(json.dumps(figures) + "\n")


async def _kill_at_random(proc: ProvisionerProcess, rng: random.Random, low: float, high: float) -> float:
    """SIGKILL after a random delay: the delay is the fault's timing, not a wait for anything."""
    delay = rng.uniform(low, high)
    await asyncio.sleep(delay)
    proc.kill()
    proc.start()
    return delay


async def test_random_sigkills_leave_no_orphan_and_no_duplicate_pool(
    control_plane: ControlPlane, tmp_path: Path, chaos_seed: int
) -> None:
    rng = random.Random(chaos_seed)
    create_s, delete_s = round(rng.uniform(0.3, 2.0), 2), round(rng.uniform(0.3, 1.5), 2)
    async with rig(control_plane, "nodeclaim", create_seconds=create_s, delete_seconds=delete_s) as r:
        proc = ProvisionerProcess(control_plane, r, tmp_path)
        proc.start()
        t0 = time.monotonic()
        try:
            names = [new_name() for _ in range(3)]
            for name in names:
                await r.api.create(r.claim(name))
            kill1 = await _kill_at_random(proc, rng, 0.5, 4.0)
            doomed = set(rng.sample(names, rng.randint(1, 2)))
            for name in sorted(doomed):
                await r.api.delete(name)
            kill2 = await _kill_at_random(proc, rng, 0.1, 3.0)
            live = [n for n in names if n not in doomed]

            async def converged() -> bool:
                for name in doomed:
                    try:
                        await r.api.get(name)
                        return False
                    except NotFound:
                        pass
                for name in live:
                    if not cond.is_true(await r.api.get(name), "Ready"):
                        return False
                return set(r.pools()) == set(live)

            try:
                await eventually(converged, 120, f"convergence (seed {chaos_seed})")
            except AssertionError as e:
                claims = {
                    c["metadata"]["name"]: c.get("status")
                    for c in await r.api.list(f"{TEST_LABEL}={r.selector_value}")
                }
                raise AssertionError(
                    f"{e}\nclaims: {claims}\npools: {list(r.pools())}\nlogs:\n{proc.logs()}"
                ) from e
            pools = r.pools()
            orphans = sorted(set(pools) - set(live))
            assert not orphans, orphans
            assert len(pools) == len(live), "one pool per live claim"
            figures: dict[str, Any] = {
                "seed": chaos_seed,
                "create_seconds": create_s,
                "delete_seconds": delete_s,
                "kill_after_create_s": round(kill1, 2),
                "kill_after_delete_s": round(kill2, 2),
                "claims": len(names),
                "deleted": len(doomed),
                "pools_left": len(pools),
                "orphans": len(orphans),
                "converged_s": round(time.monotonic() - t0, 1),
                "arm_puts": r.fake.requests.counts["PUT pool"],
                "arm_deletes": r.fake.requests.counts["DELETE pool"],
            }
            print(json.dumps(figures))
            _report(figures)
        finally:
            await r.cleanup(provisioner_running=proc.alive())
            proc.stop()
