"""The fake ARM server's node joiner against a real apiserver with kwok: a pool's Node appears as AKS would
name and label it, becomes Ready, and goes away with the pool; other Nodes are left alone."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from kaito_ctrl.controllers.provisioner.cloud.azure import AzureProvider
from kaito_ctrl.controllers.provisioner.cloud.base import AgentPoolSpec
from kaito_ctrl.controllers.provisioner.cloud.config import AzureSettings
from kaito_ctrl.kube.client import KubeClient
from kaito_ctrl.kube.errors import NotFound
from kaito_ctrl.kube.resources import NODES
from kaito_ctrl.sandbox.fakearm.server import FakeArmServer
from kaito_ctrl.sandbox.fakearm.state import FakeArmConfig
from kaito_ctrl.testing.controlplane import ControlPlane


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def test_nodes_join_and_leave_with_their_pool(control_plane: ControlPlane) -> None:
    bystander = f"gpu-bystander-{uuid.uuid4().hex[:6]}"
    control_plane.add_gpu_node(bystander)
    config = FakeArmConfig(
        cluster_name=f"aks-{uuid.uuid4().hex[:8]}", create_seconds=0.3, delete_seconds=0.3, retry_after=0
    )
    kube = await KubeClient.from_kubeconfig(control_plane.kubeconfig)
    try:
        async with FakeArmServer(config, kube=kube, join_delay=0.2) as fake:
            assert fake.joiner is not None
            settings = AzureSettings(
                config.subscription_id,
                config.resource_group,
                config.cluster_name,
                config.location,
                arm_endpoint=fake.url,
                ca_bundle=fake.ca_file,
                credential="static",
                static_token="t",
                polling_interval=0.05,
            )
            async with AzureProvider(settings) as provider:
                spec = AgentPoolSpec(
                    "wsjoin1",
                    "Standard_NC24ads_A100_v4",
                    labels={"kaito.sh/workspace": "phi-3", "kaito.sh/workspacenamespace": "default"},
                    taints=("sku=gpu:NoSchedule",),
                    os_disk_size_gb=100,
                )
                await provider.create_pool(spec)
                name = fake.joiner.node_name("wsjoin1", 0)

                async def node() -> dict[str, Any] | None:
                    try:
                        return await kube.get(NODES, name)
                    except NotFound:
                        return None

                joined = await eventually(node)
                labels = joined["metadata"]["labels"]
                assert labels["kubernetes.azure.com/agentpool"] == labels["agentpool"] == "wsjoin1"
                assert labels["kaito.sh/workspace"] == "phi-3"
                assert labels["node.kubernetes.io/instance-type"] == "Standard_NC24ads_A100_v4"
                assert labels["nvidia.com/gpu.count"] == "1" and labels["nvidia.com/gpu.present"] == "true"
                assert joined["spec"]["providerID"] == fake.joiner.provider_id("wsjoin1", 0)
                assert joined["spec"]["providerID"].startswith(
                    f"azure:///subscriptions/{config.subscription_id}/resourceGroups/"
                )
                assert {"key": "sku", "value": "gpu", "effect": "NoSchedule"} in joined["spec"]["taints"]
                # GPUs are the device plugin's to register (FakeDevicePlugin), never the joiner's.
                manifest = fake.joiner.node_manifest(fake.state.pools["wsjoin1"], 0, "127.0.0.9")
                assert "nvidia.com/gpu" not in manifest["status"]["capacity"]
                assert manifest["metadata"]["labels"]["nvidia.com/gpu.count"] == "1"

                async def ready() -> bool:
                    current = await node()
                    conditions = ((current or {}).get("status") or {}).get("conditions") or []
                    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

                await eventually(ready)
                await provider.delete_pool("wsjoin1")

                async def gone() -> bool:
                    return await node() is None

                await eventually(gone)
                assert await kube.get(NODES, bystander), "nodes of other origin are left alone"
    finally:
        await kube.close()
        control_plane.kubectl("delete", "node", bystander, "--wait=false", check=False)
