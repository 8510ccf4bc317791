"""Plays the kubelet's device manager for kwok GPU nodes: ``nvidia.com/gpu`` appears only once the NVIDIA
device-plugin pod runs on the node.

On AKS the driver comes with the node image but the GPUs become allocatable only when the device plugin
registers with the kubelet. kwok has no kubelet, so this loop does it: for each Running pod of the device-plugin
DaemonSet it sets the node's ``nvidia.com/gpu`` capacity and allocatable to the node's ``nvidia.com/gpu.count``
label (written by the node joiner from the VM size). A node the DaemonSet does not reach keeps no GPU, so a missing
or mis-scheduled plugin fails the claim's initialization, as it would on AKS.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog

from kaito_ctrl.kube.client import KubeClient
from kaito_ctrl.kube.errors import ApiError, NotFound
from kaito_ctrl.kube.resources import NODES, PODS

log = structlog.get_logger(__name__)

PLUGIN_SELECTOR = "app.kubernetes.io/name=nvidia-device-plugin"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_COUNT_LABEL = "nvidia.com/gpu.count"


def gpu_patch(node: dict[str, Any]) -> dict[str, Any] | None:
    """The status patch that registers the node's GPUs, or None when they are registered (or it has none)."""
    count = (node["metadata"].get("labels") or {}).get(GPU_COUNT_LABEL)
    if not count:
        return None
    status = node.get("status") or {}
    if all((status.get(f) or {}).get(GPU_RESOURCE) == count for f in ("capacity", "allocatable")):
        return None
    return {"status": {"capacity": {GPU_RESOURCE: count}, "allocatable": {GPU_RESOURCE: count}}}


class FakeDevicePlugin:
    def __init__(self, kube: KubeClient, *, interval: float = 0.5) -> None:
        self.kube = kube
        self.interval = interval

    async def reconcile(self) -> int:
        """Register GPUs on every node where a device-plugin pod is Running; returns how many nodes changed."""
        pods = await self.kube.list_all(PODS, label_selector=PLUGIN_SELECTOR)
        nodes = {
            str(p["spec"]["nodeName"])
            for p in pods
            if (p.get("status") or {}).get("phase") == "Running" and (p.get("spec") or {}).get("nodeName")
        }
        changed = 0
        for name in sorted(nodes):
            try:
                node = await self.kube.get(NODES, name)
                patch = gpu_patch(node)
                if patch is None:
                    continue
                await self.kube.merge_patch(NODES, name, patch, subresource="status")
            except NotFound:
                continue
            changed += 1
            log.info(
                "fake device plugin registered GPUs",
                node=name,
                gpus=patch["status"]["capacity"][GPU_RESOURCE],
            )
        return changed

    async def run(self) -> None:
        # Polling stands in for the kubelet's registration loop; it runs for the life of the fake.
        while True:
            with contextlib.suppress(ApiError, OSError):
                await self.reconcile()
            await asyncio.sleep(self.interval)
