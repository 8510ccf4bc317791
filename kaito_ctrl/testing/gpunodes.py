"""Fake GPU nodes for kwok, labelled like real AKS GPU nodes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KWOK_ANNOTATION = "kwok.x-k8s.io/node"


@dataclass(frozen=True)
class GpuNodeSpec:
    name: str
    instance_type: str = "Standard_NC12s_v3"
    gpus: int = 2
    gpu_product: str = "Tesla-V100-PCIE-16GB"
    gpu_memory_mib: int = 16384
    agent_pool: str = "gpunp"
    cpu: str = "12"
    memory: str = "224Gi"
    extra_labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[dict[str, str], ...] = ()
    provider_id: str | None = None


def gpu_node_manifest(spec: GpuNodeSpec) -> dict[str, Any]:
    labels = {
        "kubernetes.io/hostname": spec.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "type": "kwok",
        "node.kubernetes.io/instance-type": spec.instance_type,
        "beta.kubernetes.io/instance-type": spec.instance_type,
        "kubernetes.azure.com/agentpool": spec.agent_pool,
        "agentpool": spec.agent_pool,
        "kubernetes.azure.com/accelerator": "nvidia",
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.product": spec.gpu_product,
        "nvidia.com/gpu.count": str(spec.gpus),
        "nvidia.com/gpu.memory": str(spec.gpu_memory_mib),
        **spec.extra_labels,
    }
    resources = {
        "cpu": spec.cpu,
        "memory": spec.memory,
        "pods": "110",
        "ephemeral-storage": "1Ti",
        "nvidia.com/gpu": str(spec.gpus),
    }
    node: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": spec.name,
            "labels": labels,
            "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {},
        "status": {"capacity": resources, "allocatable": resources},
    }
    if spec.taints:
        node["spec"]["taints"] = [dict(t) for t in spec.taints]
    if spec.provider_id:
        node["spec"]["providerID"] = spec.provider_id
    return node


DEFAULT_GPU_NODES = (
    GpuNodeSpec("gpu-node-0", extra_labels={"apps": "phi-3"}),
    GpuNodeSpec("gpu-node-1", extra_labels={"apps": "phi-3"}),
)
