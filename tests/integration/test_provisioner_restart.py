"""Restart safety: ``kaito-ctrl run`` as a real process, SIGKILLed at several points of creating and deleting
an agent pool, then started again. The fake ARM server outlives it (in this test process), as Azure would:
afterwards there is exactly one pool for a live claim and none for a deleted one."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from kaito_ctrl.kube import conditions as cond
from kaito_ctrl.testing.controlplane import ControlPlane
from tests.integration.provisioning import ProvisionerProcess, Rig, eventually, new_name, rig


def pool_state(r: Rig, name: str) -> str | None:
    pool = r.pools().get(name)
    return None if pool is None else str(pool.state)


async def _ready(r: Rig, name: str) -> dict[str, Any] | None:
    obj: dict[str, Any] = await r.api.get(name)
    return obj if cond.is_true(obj, "Ready") else None


# Kill points: (id, what to do before waiting, the state to kill in, whether the claim is deleted).
KILL_POINTS = [
    ("create-accepted", "Creating", False),
    ("create-succeeded", "Succeeded", False),
    ("delete-mid-create", "Creating", True),
    ("delete-in-flight", "Deleting", True),
]


@pytest.mark.parametrize(("point", "kill_in", "delete"), KILL_POINTS, ids=[k[0] for k in KILL_POINTS])
async def test_sigkill_then_restart_leaves_exactly_the_right_pools(
    control_plane: ControlPlane, tmp_path: Path, point: str, kill_in: str, delete: bool
) -> None:
    async with rig(control_plane, "nodeclaim", create_seconds=1.5, delete_seconds=1.5) as r:
        proc = ProvisionerProcess(control_plane, r, tmp_path)
        proc.start()
        try:
            name = new_name()
            await r.api.create(r.claim(name))
            if point == "delete-in-flight":
                await eventually(lambda: _ready(r, name), 90, f"Ready before deleting; logs:\n{proc.logs()}")
                await r.api.delete(name)

            async def in_state() -> bool:
                return pool_state(r, name) == kill_in

            await eventually(in_state, 60, f"pool {kill_in}; logs:\n{proc.logs()}")
            if point == "delete-mid-create":
                await r.api.delete(name)
            proc.kill()
            proc.start()
            check: Callable[[], Awaitable[Any]]
            if delete:

                async def converged() -> bool:
                    return await r.claim_gone(name) and name not in r.pools()

                check = converged
            else:
                check = lambda: _ready(r, name)  # noqa: E731
            await eventually(check, 90, f"convergence after SIGKILL at {point}; logs:\n{proc.logs()}")
            kaito_pools = [p for p in r.pools() if p.startswith("p")]
            assert kaito_pools == ([] if delete else [name]), kaito_pools
            if not delete:
                # A create resumed after the kill adopts the pool: one PUT, never a second pool.
                assert r.fake.requests.counts["PUT pool"] == 1, r.fake.requests.counts
        finally:
            await r.cleanup(provisioner_running=proc.alive())
            proc.stop()
