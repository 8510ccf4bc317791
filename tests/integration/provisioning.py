"""Helpers for the node provisioner's tests: a fake ARM server joined to the session cluster, the provisioner
running in-process against it through the real Azure SDK, and claims labelled so only this test's
provisioner serves them (the session cluster is shared by every test)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaito_ctrl.controllers.provisioner.cloud.azure import AzureProvider
from kaito_ctrl.controllers.provisioner.cloud.config import AzureSettings
from kaito_ctrl.controllers.provisioner.setup import setup
from kaito_ctrl.kube.client import KubeClient
from kaito_ctrl.kube.errors import NotFound, TooManyRequests
from kaito_ctrl.kube.machines import NodeObjectAPI, NodeObjectKind
from kaito_ctrl.kube.resources import NODES
from kaito_ctrl.runtime.manager import Manager
from kaito_ctrl.sandbox.fakearm.server import FakeArmServer
from kaito_ctrl.sandbox.fakearm.state import FakeArmConfig
from kaito_ctrl.settings import Settings
from kaito_ctrl.testing.controlplane import ControlPlane, free_port

REPO = Path(__file__).resolve().parents[2]
GPU = "Standard_NC12s_v3"
TEST_LABEL = "kaito-test/provisioner"


async def eventually(fn: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await fn()
        except (NotFound, TooManyRequests):
            last = None
        if last:
            return last
        await asyncio.sleep(0.1)  # polling interval of a deadline-bounded wait
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def arm_settings(fake: FakeArmServer, **overrides: Any) -> AzureSettings:
    c = fake.config
    values: dict[str, Any] = {
        "subscription_id": c.subscription_id,
        "resource_group": c.resource_group,
        "cluster_name": c.cluster_name,
        "location": c.location,
        "arm_endpoint": fake.url,
        "ca_bundle": fake.ca_file,
        "credential": "static",
        "static_token": "fake-token",
        "polling_interval": 0.05,
        "retry_backoff_factor": 0.01,
        **overrides,
    }
    return AzureSettings(**values)


def arm_env(fake: FakeArmServer) -> dict[str, str]:
    c = fake.config
    return {
        "AZURE_SUBSCRIPTION_ID": c.subscription_id,
        "AZURE_RESOURCE_GROUP": c.resource_group,
        "AZURE_CLUSTER_NAME": c.cluster_name,
        "LOCATION": c.location,
        "ARM_BASE_URL": fake.url,
        "ARM_CA_BUNDLE": fake.ca_file,
        "ARM_STATIC_TOKEN": "fake-token",
        "ARM_POLLING_INTERVAL": "0.05",
    }


def fake_config(**kw: Any) -> FakeArmConfig:
    values: dict[str, Any] = {
        "cluster_name": f"aks{uuid.uuid4().hex[:8]}",
        "create_seconds": 0.4,
        "update_seconds": 0.2,
        "delete_seconds": 0.3,
        "retry_after": 0,
        **kw,
    }
    return FakeArmConfig(**values)


@dataclass
class Rig:
    kube: KubeClient
    fake: FakeArmServer
    api: NodeObjectAPI
    selector_value: str
    manager: Manager | None = None
    task: asyncio.Task[bool] | None = None

    def claim(self, name: str, *, storage: str = "100Gi", vm: str = GPU, **kw: Any) -> dict[str, Any]:
        labels = {
            "kaito.sh/workspace": "phi-3",
            "kaito.sh/workspacenamespace": "default",
            "apps": "phi-3",
            TEST_LABEL: self.selector_value,
        }
        return self.api.manifest(name, instance_type=vm, labels=labels, storage=storage, **kw)

    async def claim_gone(self, name: str) -> bool:
        try:
            await self.api.get(name)
            return False
        except NotFound:
            return True

    async def claim_and_pool_gone(self, name: str) -> bool:
        return await self.claim_gone(name) and name not in self.pools()

    def pools(self) -> dict[str, Any]:
        return {p.name: p for p in self.fake.state.list_pools()}

    async def start(self, **settings: Any) -> None:
        values: dict[str, Any] = {
            "node_provisioner": self.api.kind,
            "claim_selector": f"{TEST_LABEL}={self.selector_value}",
            "cloud_backoff_base": 0.2,
            "cloud_backoff_cap": 2.0,
            "gc_interval": 3600.0,
            **settings,
        }
        self.manager = Manager(self.kube, sync_timeout=30)
        cloud = AzureProvider(arm_settings(self.fake))
        setup(self.manager, self.kube, Settings(**values), cloud=cloud)
        self.task = asyncio.create_task(self.manager.run())

    async def stop(self) -> None:
        if self.manager is not None and self.task is not None:
            self.manager.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.task, 60)
        self.manager = self.task = None

    async def cleanup(self, provisioner_running: bool | None = None) -> None:
        """Delete this test's claims while a provisioner still runs, so no finalizer is left behind; with none
        running, drop the finalizers by hand."""
        selector = f"{TEST_LABEL}={self.selector_value}"
        for claim in await self.api.list(selector):
            with contextlib.suppress(NotFound):
                await self.api.delete(claim["metadata"]["name"])
        running = self.manager is not None if provisioner_running is None else provisioner_running
        if not running:
            for claim in await self.api.list(selector):
                with contextlib.suppress(NotFound):
                    # No resourceVersion lock: nothing else writes these claims now.
                    await self.kube.merge_patch(
                        self.api.resource, claim["metadata"]["name"], {"metadata": {"finalizers": None}}
                    )
            await self.remove_cluster()
            return

        async def none_left() -> bool:
            return not await self.api.list(selector)

        await eventually(none_left, 60, "this test's claims to be deleted")
        await self.remove_cluster()

    async def remove_cluster(self) -> None:
        """Drop every pool left in the fake and wait for the joiner to take their Nodes away."""
        self.fake.state.remove_all()
        if self.fake.joiner is None:
            return
        selector = f"kubernetes.azure.com/cluster={self.fake.joiner.cluster_label}"

        async def no_nodes() -> bool:
            nodes = await self.kube.list_all(NODES, label_selector=selector)
            for n in nodes:
                if n["metadata"].get("finalizers"):
                    with contextlib.suppress(NotFound):
                        await self.kube.merge_patch(
                            NODES, n["metadata"]["name"], {"metadata": {"finalizers": None}}
                        )
            return not nodes

        await eventually(no_nodes, 60, "the fake cluster's Nodes to be removed")


@contextlib.asynccontextmanager
async def rig(control_plane: ControlPlane, kind: NodeObjectKind, **fake_kw: Any) -> AsyncIterator[Rig]:
    control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "manifests/crds"))
    control_plane.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/nodeclaims.karpenter.sh"
    )
    # The device plugin as installed: GPUs become allocatable only where its pod runs (the fake plays the kubelet).
    control_plane.kubectl("apply", "--server-side", "--force-conflicts",
                          "-f", str(REPO / "manifests/nvidia-device-plugin.yaml"))  # fmt: skip
    kube = await KubeClient.from_kubeconfig(control_plane.kubeconfig, qps=100, burst=100)
    join_delay = fake_kw.pop("join_delay", 0.2)
    joiner = kube if fake_kw.pop("join", True) else None
    try:
        async with FakeArmServer(fake_config(**fake_kw), kube=joiner, join_delay=join_delay) as fake:
            r = Rig(kube, fake, NodeObjectAPI(kube, kind), uuid.uuid4().hex[:10])
            try:
                yield r
            finally:
                try:
                    await r.cleanup()
                finally:
                    await r.stop()
    finally:
        await kube.close()


def new_name() -> str:
    """A claim name that is also a valid AKS pool name (1-12 lowercase alphanumerics, letter first)."""
    return "p" + uuid.uuid4().hex[:10]


class ProvisionerProcess:
    def __init__(self, control_plane: ControlPlane, r: Rig, log_dir: Path) -> None:
        self.env = dict(
            os.environ,
            **arm_env(r.fake),
            KUBECONFIG=control_plane.kubeconfig,
            KAITO_CONTROLLERS="provisioner",
            KAITO_NODE_PROVISIONER="nodeclaim",
            KAITO_LEADER_ELECT="false",
            KAITO_WEBHOOK="false",
            KAITO_CLAIM_SELECTOR=f"{TEST_LABEL}={r.selector_value}",
            KAITO_CLOUD_BACKOFF_BASE="0.2",
            KAITO_CLOUD_BACKOFF_CAP="2",
            KAITO_LOG_FORMAT="json",
        )
        self.log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        self.env["KAITO_METRICS_BIND_ADDRESS"] = f"127.0.0.1:{free_port()}"
        self.env["KAITO_HEALTH_PROBE_BIND_ADDRESS"] = f"127.0.0.1:{free_port()}"
        log = (self.log_dir / f"provisioner-{self.starts}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kaito_ctrl.cli.main", "run"], env=self.env, stdout=log, stderr=log
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def logs(self) -> str:
        return "\n".join(p.read_text()[-6000:] for p in sorted(self.log_dir.glob("provisioner-*.log")))
