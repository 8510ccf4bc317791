"""Managers against the real apiserver: one leader among two, handover when the leader dies, and the
metrics endpoint exposing controller-runtime's names."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from kaito_ctrl.kube.client import KubeClient
from kaito_ctrl.kube.leaderelection import LeaderElectionConfig
from kaito_ctrl.kube.resources import CONFIGMAPS
from kaito_ctrl.runtime.controller import Controller
from kaito_ctrl.runtime.handlers import Request, enqueue_for_object
from kaito_ctrl.runtime.manager import Manager
from kaito_ctrl.testing.controlplane import ControlPlane


@pytest.fixture
async def kube(control_plane: ControlPlane) -> AsyncIterator[KubeClient]:
    client = await KubeClient.from_kubeconfig(control_plane.kubeconfig)
    yield client
    await client.close()


def _manager(kube: KubeClient, namespace: str, identity: str, seen: list[str], **kw: Any) -> Manager:
    mgr = Manager(
        kube,
        leader_election=LeaderElectionConfig(
            name="kaito-test-leader", namespace=namespace, identity=identity,
            lease_duration=4, renew_deadline=3, retry_period=1,
        ),
        **kw,
    )  # fmt: skip

    async def reconcile(req: Request) -> None:
        seen.append(req.name)

    ctrl = Controller(f"cm-{identity}", reconcile, workers=2)
    ctrl.watch(mgr.informers.informer(CONFIGMAPS, namespace), enqueue_for_object())
    mgr.add_controller(ctrl)
    return mgr


async def _eventually(pred: Any, timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return time.monotonic() - t0
        await asyncio.sleep(0.05)  # polling interval of a deadline-bounded wait
    raise AssertionError(f"timed out waiting for {what}")


async def test_one_leader_reconciles_and_a_dead_leader_is_replaced_in_time(
    kube: KubeClient, namespace: str
) -> None:
    seen_a: list[str] = []
    seen_b: list[str] = []
    a = _manager(kube, namespace, "a", seen_a)
    b = _manager(kube, namespace, "b", seen_b)
    run_a = asyncio.create_task(a.run())
    await _eventually(lambda: a.is_leader, 20, "a leads")
    run_b = asyncio.create_task(b.run())
    await kube.create(CONFIGMAPS, {"metadata": {"name": "one"}, "data": {}}, namespace)
    await _eventually(lambda: "one" in seen_a, 20, "the leader reconciles")
    b_cache = b.informers.informer(CONFIGMAPS, namespace).store
    await _eventually(lambda: f"{namespace}/one" in b_cache, 20, "b's informer sees the object")
    assert seen_b == [] and not b.is_leader

    # The leader dies without releasing the lease (as on SIGKILL).
    assert a.elector is not None
    a.elector.config.release_on_cancel = False
    run_a.cancel()
    died = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await run_a
    await _eventually(lambda: b.is_leader, 15, "b takes over")
    takeover = time.monotonic() - died
    # lease duration 4 s + retry period 1 s (with 1.2 jitter), plus a little scheduling slack.
    assert takeover <= 4 + 1.2 + 1.0, takeover
    await kube.create(CONFIGMAPS, {"metadata": {"name": "two"}, "data": {}}, namespace)
    await _eventually(lambda: "two" in seen_b, 20, "the new leader reconciles")
    b.stop()
    assert await run_b


async def test_metrics_endpoint_has_controller_runtime_names(kube: KubeClient, namespace: str) -> None:
    seen: list[str] = []
    mgr = _manager(kube, namespace, "m", seen, metrics_address="127.0.0.1:0", probe_address="127.0.0.1:0")
    task = asyncio.create_task(mgr.run())
    await _eventually(lambda: mgr.is_leader, 20, "leader")
    await kube.create(CONFIGMAPS, {"metadata": {"name": "x"}, "data": {}}, namespace)
    await _eventually(lambda: "x" in seen, 20, "reconcile")
    probe, metrics_srv = mgr.servers
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{probe.port}/readyz?verbose") as r:
            assert r.status == 200 and "[+]informers-synced ok" in await r.text()
        async with s.get(f"http://127.0.0.1:{metrics_srv.port}/metrics") as r:
            text = await r.text()
    names = {
        "controller_runtime_reconcile_total": r'controller="cm-m",result="success"',
        "controller_runtime_reconcile_errors_total": 'controller="cm-m"',
        "controller_runtime_reconcile_time_seconds_bucket": 'controller="cm-m"',
        "controller_runtime_max_concurrent_reconciles": 'controller="cm-m"',
        "controller_runtime_active_workers": 'controller="cm-m"',
        "workqueue_depth": 'name="cm-m",priority=""',
        "workqueue_adds_total": 'controller="cm-m",name="cm-m"',
        "workqueue_queue_duration_seconds_bucket": 'name="cm-m"',
        "workqueue_work_duration_seconds_bucket": 'name="cm-m"',
        "workqueue_unfinished_work_seconds": 'name="cm-m"',
        "workqueue_longest_running_processor_seconds": 'name="cm-m"',
        "workqueue_retries_total": 'name="cm-m"',
        "leader_election_master_status": 'name="kaito-test-leader"',
        "rest_client_requests_total": 'code="200"',
    }
    for name, label in names.items():
        lines = [ln for ln in text.splitlines() if ln.startswith(name + "{")]
        assert lines, f"{name} missing"
        assert any(label in ln for ln in lines), f"{name} lacks {label}: {lines[:3]}"
    assert not re.search(r"^\w+_created", text, re.M), "no _created series"
    assert any(
        ln.startswith('leader_election_master_status{name="kaito-test-leader"} 1') for ln in text.splitlines()
    )
    mgr.stop()
    await task
