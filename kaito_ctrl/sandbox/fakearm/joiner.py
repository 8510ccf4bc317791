"""Makes the fake's agent pools real to Kubernetes: a kwok-managed Node per VM, named and labelled as AKS does.

A while after a pool's create succeeds its Nodes appear (``aks-<pool>-<8 digits>-vmss00000<i>`` with the VMSS
providerID), and when the pool goes away, or starts deleting, they are deleted. Nodes are recognised by AKS's
``kubernetes.azure.com/cluster`` label (the node resource group), so other nodes in the cluster are left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import zlib
from typing import Any

import structlog

from kaito_ctrl.kube.client import KubeClient
from kaito_ctrl.kube.errors import ApiError, Conflict, NotFound
from kaito_ctrl.kube.resources import NODES
from kaito_ctrl.sandbox.fakearm.catalog import vm_size
from kaito_ctrl.sandbox.fakearm.state import FakeArmState, PoolRecord

log = structlog.get_logger(__name__)

KWOK_ANNOTATION = "kwok.x-k8s.io/node"
CLUSTER_LABEL = "kubernetes.azure.com/cluster"
AGENTPOOL_LABEL = "kubernetes.azure.com/agentpool"
# Every fake Node's InternalIP: kwok's kubelet server listens there, and the apiserver reaches a pod's
# port-forward and logs through it (--kubelet-preferred-address-types=InternalIP).
KUBELET_IP = "127.0.0.1"
# A pool keeps its nodes through these states once it has succeeded.
_LIVE_STATES = frozenset({"Succeeded", "Updating", "Scaling", "Upgrading"})


def label_value(value: str) -> str:
    """Trim to a valid label value (63 chars, alphanumeric at both ends)."""
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", re.sub(r"[^A-Za-z0-9._-]", "-", value)[:63])


def parse_taint(taint: str) -> dict[str, str]:
    key_value, _, effect = taint.rpartition(":")
    key, _, value = key_value.partition("=")
    out = {"key": key, "effect": effect}
    if value:
        out["value"] = value
    return out


class NodeJoiner:
    def __init__(
        self,
        state: FakeArmState,
        kube: KubeClient,
        *,
        join_delay: float = 1.0,
        resync: float = 10.0,
    ) -> None:
        self.state = state
        self.kube = kube
        self.join_delay = join_delay
        self.resync = resync
        self._wake = asyncio.Event()
        state.subscribe(self._wake.set)
        c = state.config
        self.cluster_label = label_value(c.node_resource_group)
        self.vmss_hash = (
            f"{zlib.crc32(f'{c.subscription_id}/{c.resource_group}/{c.cluster_name}'.encode()) % 10**8:08d}"
        )

    # ------------------------------------------------------------------ naming
    def vmss_name(self, pool: str) -> str:
        return f"aks-{pool}-{self.vmss_hash}-vmss"

    def node_name(self, pool: str, index: int) -> str:
        return f"{self.vmss_name(pool)}{index:06d}"

    def provider_id(self, pool: str, index: int) -> str:
        c = self.state.config
        return (
            f"azure:///subscriptions/{c.subscription_id}/resourceGroups/{c.node_resource_group.lower()}/providers/"
            f"Microsoft.Compute/virtualMachineScaleSets/{self.vmss_name(pool)}/virtualMachines/{index}"
        )

    # ------------------------------------------------------------------ manifests
    def node_manifest(self, pool: PoolRecord, index: int, ip: str) -> dict[str, Any]:
        resource = self.state.resource(pool)["properties"]
        size = vm_size(str(resource["vmSize"]))
        name = self.node_name(pool.name, index)
        os_sku = str(resource["osSKU"])
        labels: dict[str, str] = {
            AGENTPOOL_LABEL: pool.name,
            "agentpool": pool.name,
            CLUSTER_LABEL: self.cluster_label,
            "kubernetes.azure.com/mode": str(resource["mode"]).lower(),
            "kubernetes.azure.com/node-image-version": label_value(str(resource["nodeImageVersion"])),
            "kubernetes.azure.com/os-sku": os_sku,
            "kubernetes.azure.com/role": "agent",
            "kubernetes.io/role": "agent",
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "kubernetes.io/hostname": name,
            "node.kubernetes.io/instance-type": str(resource["vmSize"]),
            "beta.kubernetes.io/instance-type": str(resource["vmSize"]),
            "topology.kubernetes.io/region": self.state.config.location,
            "topology.kubernetes.io/zone": "0",
        }
        capacity: dict[str, str] = {
            "pods": str(resource["maxPods"]),
            "ephemeral-storage": f"{resource['osDiskSizeGB']}Gi",
        }
        if size is not None:
            capacity["cpu"] = str(size.vcpus)
            capacity["memory"] = f"{size.memory_gib * 1024 * 1024}Ki"
            if size.gpus:
                # nvidia.com/gpu is left to the device plugin (FakeDevicePlugin registers it once the plugin's pod
                # runs here); other accelerators have no plugin in the sandbox and are registered at once.
                if size.gpu_resource != "nvidia.com/gpu":
                    capacity[size.gpu_resource] = str(size.gpus)
                else:
                    labels.update(
                        {
                            "kubernetes.azure.com/accelerator": "nvidia",
                            "nvidia.com/gpu.present": "true",
                            "nvidia.com/gpu.product": label_value(size.gpu_product),
                            "nvidia.com/gpu.count": str(size.gpus),
                            "nvidia.com/gpu.memory": str(size.gpu_memory_mib_each),
                        }
                    )
        labels.update({str(k): str(v) for k, v in (resource.get("nodeLabels") or {}).items()})
        node: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": labels,
                "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            },
            "spec": {"providerID": self.provider_id(pool.name, index)},
            "status": {
                "capacity": capacity,
                "allocatable": dict(capacity),
                "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
                "nodeInfo": {
                    "architecture": "amd64",
                    "operatingSystem": "linux",
                    "kubeletVersion": f"v{resource['currentOrchestratorVersion']}",
                    "osImage": "CBL-Mariner/Linux"
                    if os_sku in ("AzureLinux", "CBLMariner")
                    else "Ubuntu 22.04.5 LTS",
                    "containerRuntimeVersion": "containerd://1.7.25-1",
                },
            },
        }
        taints = [parse_taint(t) for t in resource.get("nodeTaints") or ()]
        if taints:
            node["spec"]["taints"] = taints
        return node

    # ------------------------------------------------------------------ reconcile
    def desired(self) -> tuple[dict[str, tuple[PoolRecord, int]], float | None]:
        """Nodes that should exist now, and seconds until the next pool's nodes are due."""
        now = self.state.clock.now()
        want: dict[str, tuple[PoolRecord, int]] = {}
        next_due: float | None = None
        for pool in self.state.list_pools():
            if pool.state not in _LIVE_STATES or pool.succeeded_at is None:
                continue
            wait = pool.succeeded_at + self.join_delay - now
            if wait > 0:
                next_due = wait if next_due is None else min(next_due, wait)
                continue
            for index in range(int(pool.spec.get("count", 1))):
                want[self.node_name(pool.name, index)] = (pool, index)
        return want, next_due

    async def reconcile(self) -> float | None:
        want, next_due = self.desired()
        have = {
            n["metadata"]["name"]: n
            for n in await self.kube.list_all(NODES, label_selector=f"{CLUSTER_LABEL}={self.cluster_label}")
        }
        for name, (pool, index) in want.items():
            if name in have:
                continue
            try:
                await self.kube.create(NODES, self.node_manifest(pool, index, KUBELET_IP))
                log.info("fake node joined", node=name, pool=pool.name)
            except Conflict:
                pass
        for name, node in have.items():
            if name in want or node["metadata"].get("deletionTimestamp"):
                continue
            try:
                await self.kube.delete(NODES, name)
                log.info("fake node removed", node=name)
            except NotFound:
                pass
        return next_due

    async def run(self) -> None:
        """Reconcile on every change of the fake's state, when a join falls due, and every ``resync`` seconds."""
        while True:
            self._wake.clear()
            try:
                due = await self.reconcile()
            except (ApiError, OSError) as e:  # OSError: the client's TransportError
                log.warning("fake node joiner could not reconcile", error=str(e))
                due = 1.0
            timeout = self.resync if due is None else min(due, self.resync)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
