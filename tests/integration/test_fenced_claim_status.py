"""The provisioner's claim status is fenced by resourceVersion against the real apiserver.

A pass over a stale cache (the claims watch broken by the network while the status moved on, as CI caught
through a black-holed apiserver link) must not write its older view over a newer status: a Ready claim stays
Ready. A 409 caused only by metadata (labels, a deletion) does not lose the pass's status.
"""

from __future__ import annotations

from typing import Any

from kaito_ctrl.controllers.provisioner.cloud.azure import AzureProvider
from kaito_ctrl.controllers.provisioner.lifecycle import ClaimLifecycle, StatusDraft
from kaito_ctrl.kube import conditions as cond
from kaito_ctrl.kube.client import KubeClient
from kaito_ctrl.kube.resources import NODES, Resource
from kaito_ctrl.kube.store import Store
from kaito_ctrl.runtime.handlers import Request
from kaito_ctrl.testing.controlplane import ControlPlane
from tests.integration.provisioning import arm_settings, eventually, new_name, rig


async def _first_version_with_finalizer_and_no_status(
    kube: KubeClient, resource: Resource, created: dict[str, Any], live: dict[str, Any]
) -> dict[str, Any]:
    """A version the claim really had (from the apiserver's history, watched from its creation): the
    finalizer written, the first status not yet. A cache whose watch broke then still holds it."""
    name = created["metadata"]["name"]
    async for event in kube.watch(
        resource,
        resource_version=created["metadata"]["resourceVersion"],
        timeout_seconds=30,
        allow_bookmarks=False,
        field_selector=f"metadata.name={name}",
    ):
        obj = event["object"]
        assert obj["metadata"]["resourceVersion"] != live["metadata"]["resourceVersion"], "no such version"
        if obj["metadata"].get("finalizers") and not (obj.get("status") or {}).get("conditions"):
            return dict(obj)
    raise AssertionError("the watch ended before the version was seen")


class _Cache:
    """An informer's cache as the lifecycle reads it, holding what the test puts there."""

    def __init__(self, *objs: dict[str, Any]) -> None:
        self.store = Store()
        for obj in objs:
            self.store.upsert(obj)


async def test_a_pass_over_a_stale_claim_leaves_the_newer_ready_status(control_plane: ControlPlane) -> None:
    async with rig(control_plane, "nodeclaim", create_seconds=1.0) as r:
        await r.start()
        name = new_name()
        created = await r.api.create(r.claim(name))

        async def ready() -> dict[str, Any] | None:
            obj = await r.api.get(name)
            return obj if cond.is_true(obj, "Ready") else None

        live = await eventually(ready, 60, "the claim Ready")
        stale = await _first_version_with_finalizer_and_no_status(r.kube, r.api.resource, created, live)
        await r.stop()  # the one writer left is the pass below
        node = await r.kube.get(NODES, live["status"]["nodeName"])
        async with AzureProvider(arm_settings(r.fake)) as cloud:
            lifecycle = ClaimLifecycle(
                r.api, r.kube, cloud, _Cache(stale), _Cache(node),  # type: ignore[arg-type]
                enqueue=lambda _: None,
            )  # fmt: skip
            try:
                result = await lifecycle(Request("", name))
                # The stale pass started adopting the pool; once it ends and the cache shows the live claim,
                # the next pass finds it Launched and keeps no operation behind.
                op = lifecycle.ops.get(name)
                assert op is not None and op.kind == "create"

                async def adopted() -> bool:
                    return op.done

                await eventually(adopted, 30, "the adopting operation to end")
                lifecycle.claims.store.upsert(await r.api.get(name))
                again = await lifecycle(Request("", name))
                assert lifecycle.ops.get(name) is None, "a finished create kept after the claim was Launched"
            finally:
                await lifecycle.close()
        assert result.requeue, "the pass looks again once its cache catches up"
        assert not again.requeue
        after = await r.api.get(name)
        assert after["status"] == live["status"], "the stale pass overwrote the newer status"
        assert r.fake.requests.counts["PUT pool"] == 1


async def test_a_conflict_from_metadata_alone_still_writes_the_status(control_plane: ControlPlane) -> None:
    async with rig(control_plane, "nodeclaim") as r:
        name = new_name()
        obj = await r.api.create(r.claim(name))
        # A label written by someone else after the pass read the claim: the status it read is still current.
        await r.kube.merge_patch(r.api.resource, name, {"metadata": {"labels": {"team": "a"}}})
        async with AzureProvider(arm_settings(r.fake)) as cloud:
            lifecycle = ClaimLifecycle(
                r.api, r.kube, cloud, _Cache(obj), _Cache(),  # type: ignore[arg-type]
                enqueue=lambda _: None,
            )  # fmt: skip
            draft = StatusDraft.of(obj)
            lifecycle._set(draft, "Launched", "Unknown", "Launching", "creating")
            assert await lifecycle._write_status(obj, draft)
            stale_draft = StatusDraft.of(obj)  # read before the write above: now behind
            lifecycle._set(stale_draft, "Launched", "False", "Stale", "an older view")
            assert not await lifecycle._write_status(obj, stale_draft)
            await lifecycle.close()
        after = await r.api.get(name)
        assert after["metadata"]["labels"]["team"] == "a"
        assert cond.condition_status(after, "Launched") == "Unknown"
        assert (
            next(c for c in after["status"]["conditions"] if c["type"] == "Launched")["reason"] == "Launching"
        )
