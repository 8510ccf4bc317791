"""The informer against the real apiserver: its cache equals a fresh LIST across an apiserver restart and a
forced 410, and objects deleted while it was disconnected reach handlers as tombstones."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kaito_ctrl.kube.client import KubeClient
from kaito_ctrl.kube.errors import Conflict
from kaito_ctrl.kube.informer import DeletedFinalStateUnknown, SharedInformer
from kaito_ctrl.kube.resources import CONFIGMAPS, Resource
from kaito_ctrl.testing.controlplane import ControlPlane


class GatedClient:
    """Passes list/watch to the real client, but holds new calls while the gate is closed (a network cut)."""

    def __init__(self, client: KubeClient) -> None:
        self.client = client
        self.gate = asyncio.Event()
        self.gate.set()

    async def list(self, res: Resource, namespace: str | None = None, **kw: Any) -> dict[str, Any]:
        await self.gate.wait()
        return await self.client.list(res, namespace, **kw)

    async def watch(
        self, res: Resource, namespace: str | None = None, **kw: Any
    ) -> AsyncIterator[dict[str, Any]]:
        await self.gate.wait()
        async for ev in self.client.watch(res, namespace, **kw):
            yield ev


@pytest.fixture
async def kube(control_plane: ControlPlane) -> AsyncIterator[KubeClient]:
    client = await KubeClient.from_kubeconfig(control_plane.kubeconfig, qps=200, burst=200)
    yield client
    await client.close()


def _cm(name: str, value: str = "v") -> dict[str, Any]:
    # Labelled so the informer ignores what the cluster itself puts in the namespace (kube-root-ca.crt).
    meta = {"name": name, "labels": {"test": "informer"}}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": value}}


async def _eventually(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await pred():
            return
        await asyncio.sleep(0.1)  # polling interval of a deadline-bounded wait
    raise AssertionError(f"timed out waiting for {what}")


async def test_cache_survives_restart_and_410_with_tombstones(
    control_plane: ControlPlane, kube: KubeClient, namespace: str
) -> None:
    for i in range(5):
        await kube.create(CONFIGMAPS, _cm(f"cm-{i}"), namespace)
    gated = GatedClient(kube)
    informer = SharedInformer(gated, CONFIGMAPS, namespace=namespace, label_selector="test=informer")  # type: ignore[arg-type]
    adds: list[str] = []
    deletes: list[Any] = []
    informer.add_event_handler(
        on_add=lambda o: adds.append(o["metadata"]["name"]),
        on_delete=lambda o: deletes.append(o),
    )
    informer.start()
    try:
        assert await informer.wait_for_sync(30)
        assert sorted(informer.store.keys()) == [f"{namespace}/cm-{i}" for i in range(5)]
        assert all("managedFields" not in o["metadata"] for o in informer.store.list())
        lists_before = informer.list_count

        # Cut the informer off, restart the apiserver (its watch cache forgets old resourceVersions) and change
        # things it cannot see; compact etcd so old revisions are gone for good.
        gated.gate.clear()
        control_plane.restart_apiserver()
        await kube.delete(CONFIGMAPS, "cm-0", namespace)
        await kube.delete(CONFIGMAPS, "cm-1", namespace)
        await kube.create(CONFIGMAPS, _cm("cm-new"), namespace)
        cur = await kube.get(CONFIGMAPS, "cm-2", namespace)
        cur["data"] = {"k": "changed"}
        await kube.replace(CONFIGMAPS, cur)
        control_plane.compact_etcd()
        gated.gate.set()

        async def converged() -> bool:
            fresh = await kube.list(CONFIGMAPS, namespace, label_selector="test=informer")
            want = {
                f"{namespace}/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
                for o in fresh["items"]
            }
            have = {
                k: o["metadata"]["resourceVersion"]
                for k, o in ((key, informer.store.get(key)) for key in informer.store)
                if o
            }
            return want == have

        await _eventually(converged, 60, "cache equal to a fresh LIST")
        assert informer.list_count > lists_before, "a 410 must lead to a relist"
        tomb = {d.obj["metadata"]["name"] for d in deletes if isinstance(d, DeletedFinalStateUnknown)}
        assert tomb == {"cm-0", "cm-1"}
        assert "cm-new" in adds
        assert informer.store.get(f"{namespace}/cm-2")["data"] == {"k": "changed"}  # type: ignore[index]

        # And it keeps watching live events after the relist.
        await kube.delete(CONFIGMAPS, "cm-3", namespace)

        async def live_delete_seen() -> bool:
            return f"{namespace}/cm-3" not in informer.store

        await _eventually(live_delete_seen, 30, "live DELETED event")
    finally:
        await informer.stop()


async def test_stale_replace_conflicts_and_writes_use_their_content_types(
    kube: KubeClient, namespace: str
) -> None:
    created = await kube.create(CONFIGMAPS, _cm("w"), namespace)
    fresh = dict(created, data={"k": "2"})
    await kube.replace(CONFIGMAPS, fresh)
    with pytest.raises(Conflict):
        await kube.replace(CONFIGMAPS, dict(created, data={"k": "3"}))
    # Merge patch with a stale resourceVersion is refused too; without one it applies.
    with pytest.raises(Conflict):
        await kube.merge_patch(
            CONFIGMAPS,
            "w",
            {"data": {"x": "1"}},
            namespace,
            resource_version=created["metadata"]["resourceVersion"],
        )
    patched = await kube.merge_patch(CONFIGMAPS, "w", {"data": {"x": "1"}}, namespace)
    assert patched["data"] == {"k": "2", "x": "1"}
    # Server-side apply records kaito-ctrl as a field manager.
    applied = await kube.apply(
        CONFIGMAPS, {"metadata": {"name": "applied", "namespace": namespace}, "data": {"a": "b"}}
    )
    managers = {m["manager"] for m in applied["metadata"].get("managedFields", [])}
    assert "kaito-ctrl" in managers
    assert await kube.crd_installed("apps", "v1", "deployments")
    assert not await kube.crd_installed("karpenter.sh", "v1", "nothere")
