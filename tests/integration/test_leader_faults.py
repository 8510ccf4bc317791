"""Leadership fails closed under real network faults: two managers share a Lease on the real apiserver, the
leader's link runs through Toxiproxy, and a reset, a black hole or latency above the renew deadline on that link
makes the leader stop leading and its manager return False (the process exits 1), while the other replica
takes over, and the two never lead at once. Toxiproxy is built from its Go module (hack/build-toxiproxy.sh)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from kaito_ctrl import metrics
from kaito_ctrl.controllers.workspace.setup import setup
from kaito_ctrl.kube import conditions as cond
from kaito_ctrl.kube import config as kconfig
from kaito_ctrl.kube.client import KubeClient
from kaito_ctrl.kube.errors import Conflict, NotFound
from kaito_ctrl.kube.leaderelection import LeaderElectionConfig
from kaito_ctrl.kube.resources import (
    DEPLOYMENTS,
    NAMESPACES,
    SERVICES,
    STATEFULSETS,
    VALIDATING_WEBHOOKS,
    WORKSPACES,
)
from kaito_ctrl.runtime.manager import Manager
from kaito_ctrl.settings import Settings
from kaito_ctrl.testing.controlplane import ControlPlane
from kaito_ctrl.testing.gpunodes import GpuNodeSpec
from kaito_ctrl.testing.toxiproxy import Toxiproxy
from kaito_ctrl.webhook.server import WebhookServer
from tests.cases.invalid_workspaces import inference_ws
from tests.integration.webhooks import delete_configurations, runner_for

REPO = Path(__file__).resolve().parents[2]
LEASE = {"lease_duration": 4, "renew_deadline": 3, "retry_period": 1}


@pytest.fixture
async def clients(
    control_plane: ControlPlane, toxiproxy: Toxiproxy, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[KubeClient, KubeClient, str]]:
    """(through the proxy, direct, proxy name)."""
    direct = await KubeClient.from_kubeconfig(control_plane.kubeconfig)
    name = f"apiserver-{uuid.uuid4().hex[:8]}"
    listen = toxiproxy.proxy(name, urlsplit(direct.host).netloc)
    # Same certificate and credentials: the proxy is plain TCP on 127.0.0.1.
    conn = await kconfig.from_kubeconfig(control_plane.kubeconfig)
    through = KubeClient(dataclasses.replace(conn, server=f"https://{listen}"))
    try:
        yield through, direct, name
    finally:
        toxiproxy.clear(name)
        await through.close()
        await direct.close()


def _manager(client: KubeClient, namespace: str, identity: str) -> Manager:
    return Manager(
        client,
        leader_election=LeaderElectionConfig(
            name="kaito-fault-leader", namespace=namespace, identity=identity, **LEASE
        ),
    )


async def _until(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)  # polling interval of a deadline-bounded wait


@pytest.mark.parametrize(
    "toxic",
    [
        {"kind": "reset_peer", "timeout": 0},  # every connection reset as data arrives
        {"kind": "timeout", "timeout": 0},  # a black hole: data dropped, connections held open
        {"kind": "latency", "latency": 5000},  # answers later than the renew deadline
    ],
    ids=lambda t: str(t["kind"]),
)
async def test_a_leader_cut_off_at_the_wire_stops_and_the_other_takes_over(
    clients: tuple[KubeClient, KubeClient, str], toxiproxy: Toxiproxy, namespace: str, toxic: dict[str, Any]
) -> None:
    through, direct, proxy = clients
    a = _manager(through, namespace, "a-behind-proxy")
    b = _manager(direct, namespace, "b-direct")
    run_a = asyncio.create_task(a.run())
    await _until(lambda: a.is_leader, 20, "a leads")
    run_b = asyncio.create_task(b.run())
    # b is a standby: it has started and sees a's lease.
    await _until(
        lambda: b.elector is not None and b.elector.holder == "a-behind-proxy", 20, "b sees a's lease"
    )

    overlap = False

    async def watch_for_two_leaders() -> None:
        nonlocal overlap
        while True:
            overlap = overlap or (a.is_leader and b.is_leader)
            await asyncio.sleep(0.005)  # sampling both replicas' view of themselves

    watcher = asyncio.create_task(watch_for_two_leaders())
    kind = toxic.pop("kind")
    for stream in ("downstream", "upstream"):
        toxiproxy.add_toxic(proxy, kind, stream=stream, **toxic)
    try:
        result_a = await asyncio.wait_for(run_a, 30)
        assert result_a is False, "a leader that lost its lease must make the process exit non-zero"
        await _until(lambda: b.is_leader, 30, "b takes over")
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        toxiproxy.clear(proxy)
        b.stop()
        await asyncio.gather(run_b, return_exceptions=True)
        if not run_a.done():
            a.stop()
            await asyncio.gather(run_a, return_exceptions=True)
    assert not overlap, "two replicas believed they led at the same time"


def _transport_errors(host: str) -> float:
    return sum(
        metrics.REGISTRY.get_sample_value(
            "rest_client_requests_total", {"code": "<error>", "method": m, "host": host}
        )
        or 0.0
        for m in ("GET", "POST", "PATCH", "PUT", "DELETE", "WATCH")
    )


@pytest.mark.parametrize(
    "toxic",
    [{"kind": "reset_peer", "timeout": 0}, {"kind": "timeout", "timeout": 0}],
    ids=lambda t: str(t["kind"]),
)
async def test_a_workspace_created_during_a_fault_is_reconciled_once_it_clears(
    clients: tuple[KubeClient, KubeClient, str],
    toxiproxy: Toxiproxy,
    control_plane: ControlPlane,
    namespace: str,
    toxic: dict[str, Any],
) -> None:
    through, direct, proxy = clients
    control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "manifests/crds"))
    control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/workspaces.kaito.sh")
    label = f"fault-{namespace}"
    control_plane.add_gpu_node(
        GpuNodeSpec(label, instance_type="Standard_NC6s_v3", gpus=1, cpu="6", memory="112Gi",
                    extra_labels={"apps": label})
    )  # fmt: skip
    settings = Settings(watch_namespace=namespace, node_provisioner="byo", leader_elect=False, webhook=False)
    manager = Manager(through, sync_timeout=30)
    setup(manager, through, settings)
    task = asyncio.create_task(manager.run())
    try:
        await _until(manager.informers.has_synced, 30, "the controller's caches sync")
        kind = toxic.pop("kind")
        host = urlsplit(through.host).netloc
        errors_before = _transport_errors(host)
        for stream in ("downstream", "upstream"):
            toxiproxy.add_toxic(proxy, kind, stream=stream, **toxic)
        ws = inference_ws("during-fault")
        ws["resource"] = {
            "instanceType": "Standard_NC6s_v3",
            "labelSelector": {"matchLabels": {"apps": label}},
        }
        await direct.create(WORKSPACES, ws, namespace)
        # The fault is felt (the controller's requests fail at the wire) before it clears.
        await _until(
            lambda: _transport_errors(host) > errors_before or kind == "timeout", 60, "requests fail"
        )
        toxiproxy.clear(proxy)

        async def ready() -> bool:
            live = await direct.get(WORKSPACES, "during-fault", namespace)
            return cond.is_true(live, "ResourceReady") and bool(live["metadata"].get("finalizers"))

        deadline = time.monotonic() + 120
        while not await ready():
            assert not task.done(), f"the manager ended: {task}"
            assert time.monotonic() < deadline, "the Workspace was not reconciled after the fault cleared"
            await asyncio.sleep(0.2)  # polling interval of a deadline-bounded wait
        # Nothing duplicated: one workload and one Service for the Workspace.
        selector = "kaito.sh/workspace=during-fault"
        workloads = await direct.list_all(
            DEPLOYMENTS, namespace, label_selector=selector
        ) + await direct.list_all(STATEFULSETS, namespace, label_selector=selector)
        assert len(workloads) == 1, [w["metadata"]["name"] for w in workloads]
        services = await direct.list_all(SERVICES, namespace)
        assert [
            s["metadata"]["name"] for s in services if s["metadata"]["name"].startswith("during-fault")
        ] in (
            ["during-fault"],
            ["during-fault", "during-fault-headless"],
        )
        await direct.delete(WORKSPACES, "during-fault", namespace)
        await _until_gone(direct, namespace)
    finally:
        toxiproxy.clear(proxy)
        manager.stop()
        await asyncio.gather(task, return_exceptions=True)


async def _until_gone(kube: KubeClient, namespace: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            await kube.get(WORKSPACES, "during-fault", namespace)
        except NotFound:
            return
        assert time.monotonic() < deadline, "the finalizer was not released"
        await asyncio.sleep(0.2)  # polling interval of a deadline-bounded wait


def _restarts(task: str) -> float:
    return metrics.REGISTRY.get_sample_value("kaito_ctrl_task_restarts_total", {"task": task}) or 0.0


async def test_the_webhook_keeps_retrying_through_a_reset_link_and_registers_once_it_clears(
    clients: tuple[KubeClient, KubeClient, str], toxiproxy: Toxiproxy, control_plane: ControlPlane
) -> None:
    through, direct, proxy = clients
    task_name = f"webhook-{proxy}"
    with contextlib.suppress(Conflict):
        await direct.create(NAMESPACES, {"metadata": {"name": "kaito-fault-webhook"}})
    runner = runner_for(through, WebhookServer("127.0.0.1", 0, keepalive_timeout=0.5), "kaito-fault-webhook")
    manager = Manager(through)
    manager.add_runnable(runner.run, needs_leader=False, name=task_name)
    for stream in ("downstream", "upstream"):
        toxiproxy.add_toxic(proxy, "reset_peer", stream=stream, timeout=0)
    before = _restarts(task_name)
    run = asyncio.create_task(manager.run())
    try:
        # Its start fails at the wire, and the supervisor restarts it; it is not ready meanwhile.
        await _until(
            lambda: _restarts(task_name) >= before + 2, 60, "the webhook's start to fail and be restarted"
        )
        assert not runner.ready.is_set()
        toxiproxy.clear(proxy)
        await asyncio.wait_for(runner.ready.wait(), 90)
        registered = await direct.get(VALIDATING_WEBHOOKS, "kaito-ctrl-validating-webhook")
        assert registered["webhooks"][0]["clientConfig"]["caBundle"]
    finally:
        toxiproxy.clear(proxy)
        manager.stop()
        await asyncio.gather(run, return_exceptions=True)
        delete_configurations(control_plane)
