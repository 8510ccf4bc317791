"""The ARM requests the node provisioner sends, counted at the fake ARM server (over HTTPS, through the real
Azure SDK): one claim's whole lifecycle sends no more than the long-running-operation protocol and the
provisioner's safety checks need (P10 in docs/performance.md)."""

from __future__ import annotations

import math
from typing import Any

from kaito_ctrl.controllers.provisioner.cloud.azure import AzureProvider
from kaito_ctrl.controllers.provisioner.lifecycle import ClaimLifecycle
from kaito_ctrl.kube import conditions as cond
from kaito_ctrl.kube.store import Store
from kaito_ctrl.runtime.handlers import Request
from kaito_ctrl.testing.controlplane import ControlPlane
from tests.integration.provisioning import arm_settings, eventually, new_name, rig

CREATE_SECONDS = 2.0
DELETE_SECONDS = 1.0
RETRY_AFTER = 1


async def test_one_claim_lifecycle_sends_only_what_the_lro_protocol_and_safety_need(
    control_plane: ControlPlane,
) -> None:
    async with rig(
        control_plane,
        "nodeclaim",
        create_seconds=CREATE_SECONDS,
        delete_seconds=DELETE_SECONDS,
        retry_after=RETRY_AFTER,
    ) as r:
        await r.start()  # garbage collection every hour: no LIST after its first pass
        name = new_name()
        await r.api.create(r.claim(name))

        async def ready() -> dict[str, Any] | None:
            obj = await r.api.get(name)
            return obj if cond.is_true(obj, "Ready") else None

        await eventually(ready, 60, "the claim Ready")
        await r.api.delete(name)
        await eventually(lambda: r.claim_and_pool_gone(name), 60, "the claim and its pool gone")

        # Left out: the garbage collector's LIST, and the fake's sub-count of DELETEs that ignore PDBs.
        counts = {
            k: v
            for k, v in r.fake.requests.counts.items()
            if k not in ("GET pools", "DELETE pool ignoring PDBs")
        }
        assert counts == {
            # The capacity check's read of the pool is also the create's: a pool found after a restart is
            # adopted or waited on, never put twice. The second GET is the PUT's final GET (its result).
            "GET pool": 2,
            "GET skus": 1,
            "GET usages": 1,
            "PUT pool": 1,
            # Every poll waits Retry-After, the first one too: one poll per Retry-After the operation runs.
            "GET operation": math.ceil(CREATE_SECONDS / RETRY_AFTER)
            + math.ceil(DELETE_SECONDS / RETRY_AFTER),
            "DELETE pool": 1,
        }, r.fake.requests.counts


class _Cache:
    """An informer's cache as the lifecycle reads it, holding what the test puts there (so it can lag)."""

    def __init__(self, *objs: dict[str, Any]) -> None:
        self.store = Store()
        for obj in objs:
            self.store.upsert(obj)


async def test_a_pass_over_a_cache_behind_the_launched_status_asks_arm_nothing(
    control_plane: ControlPlane,
) -> None:
    """The pass that wrote Launched is followed by one over a cache without it (the watch event of the write
    not in yet): it must not create the pool again (a capacity-check GET and an adopting GET each time)."""
    async with rig(control_plane, "nodeclaim", join=False, create_seconds=0.5) as r:
        name = new_name()
        await r.api.create(r.claim(name))
        claims = _Cache(await r.api.get(name))
        async with AzureProvider(arm_settings(r.fake)) as cloud:
            lifecycle = ClaimLifecycle(
                r.api, r.kube, cloud, claims, _Cache(),  # type: ignore[arg-type]
                enqueue=lambda _: None,
            )  # fmt: skip
            try:
                await lifecycle(Request("", name))  # starts the create
                op = lifecycle.ops.get(name)
                assert op is not None and op.kind == "create"

                async def created() -> bool:
                    return op.done

                await eventually(created, 30, "the create to end")
                claims.store.upsert(await r.api.get(name))  # the cache has the Launching status
                await lifecycle(Request("", name))  # collects the create and writes Launched
                assert cond.is_true(await r.api.get(name), "Launched")
                before = dict(r.fake.requests.counts)

                result = await lifecycle(Request("", name))  # the cache still says Launching

                assert dict(r.fake.requests.counts) == before, "ARM asked again about a pool already created"
                assert lifecycle.ops.get(name) is None
                assert result.requeue, "its status write is refused: it looks again once the cache catches up"
                claims.store.upsert(await r.api.get(name))
                await lifecycle(Request("", name))
                assert dict(r.fake.requests.counts) == before
            finally:
                await lifecycle.close()
        assert r.fake.requests.counts["PUT pool"] == 1
