"""The local control plane is the real thing: CRDs, watches, 409 conflicts, scheduling onto kwok GPU nodes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kaito_ctrl.testing.controlplane import ControlPlane, ControlPlaneOptions, process_alive

WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.test.kaito.sh"},
    "spec": {
        "group": "test.kaito.sh",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
                        },
                    }
                },
            }
        ],
    },
}


@pytest.fixture
async def http(control_plane: ControlPlane) -> AsyncIterator[aiohttp.ClientSession]:
    conn = aiohttp.TCPConnector(ssl=control_plane.ssl_context())
    async with aiohttp.ClientSession(base_url=control_plane.server, connector=conn) as s:
        yield s


async def _json(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    return dict(json.loads(await resp.read()))


async def _wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.2)  # polling interval of a deadline-bounded wait
    raise AssertionError(f"timed out waiting for {what}")


async def test_crd_object_watch_and_stale_update_conflict(
    control_plane: ControlPlane, http: aiohttp.ClientSession, namespace: str
) -> None:
    async with http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=WIDGET_CRD) as r:
        assert r.status in (201, 409), await r.text()

    async def established() -> bool:
        async with http.get(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.test.kaito.sh"
        ) as r:
            conds = (await _json(r)).get("status", {}).get("conditions") or []
            return any(c["type"] == "Established" and c["status"] == "True" for c in conds)

    await _wait_for(established, 30, "CRD Established")
    base = f"/apis/test.kaito.sh/v1/namespaces/{namespace}/widgets"

    async def served() -> bool:
        async with http.get(base) as r:
            return r.status == 200

    await _wait_for(served, 30, "widgets served")
    async with http.post(base, json={"apiVersion": "test.kaito.sh/v1", "kind": "Widget",
                                     "metadata": {"name": "w1"}, "spec": {"size": 1}}) as r:  # fmt: skip
        assert r.status == 201, await r.text()
        created = await _json(r)
    rv0 = created["metadata"]["resourceVersion"]

    # Watch from the creation's resourceVersion; the next update must arrive as MODIFIED.
    events: list[dict[str, Any]] = []

    async def watch() -> None:
        params = {"watch": "true", "resourceVersion": rv0, "timeoutSeconds": "30"}
        async with http.get(base, params=params) as r:
            async for line in r.content:
                events.append(json.loads(line))
                return

    watcher = asyncio.create_task(watch())
    fresh = dict(created, spec={"size": 2})
    async with http.put(f"{base}/w1", json=fresh) as r:
        assert r.status == 200, await r.text()
        updated = await _json(r)
    await asyncio.wait_for(watcher, 30)
    assert events[0]["type"] == "MODIFIED"
    assert events[0]["object"]["spec"]["size"] == 2
    assert updated["metadata"]["resourceVersion"] != rv0

    stale = dict(created, spec={"size": 3})  # still carries rv0
    async with http.put(f"{base}/w1", json=stale) as r:
        assert r.status == 409
        body = await _json(r)
    assert body["reason"] == "Conflict"


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: gpu-app}
spec:
  replicas: 1
  selector: {matchLabels: {app: gpu-app}}
  template:
    metadata: {labels: {app: gpu-app}}
    spec:
      nodeSelector: {nvidia.com/gpu.present: "true"}
      containers:
      - name: main
        image: registry.invalid/model:latest
        resources: {limits: {nvidia.com/gpu: "1"}}
"""


async def test_gpu_deployment_scheduled_on_kwok_node_and_available(
    control_plane: ControlPlane, http: aiohttp.ClientSession, namespace: str
) -> None:
    nodes = json.loads(control_plane.kubectl("get", "nodes", "-o", "json"))["items"]
    gpu_nodes = {n["metadata"]["name"] for n in nodes if "nvidia.com/gpu" in n["status"].get("capacity", {})}
    assert gpu_nodes, "the harness should have registered kwok GPU nodes"
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=DEPLOYMENT)

    async def available() -> bool:
        async with http.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/gpu-app") as r:
            conds = (await _json(r)).get("status", {}).get("conditions") or []
            return any(c["type"] == "Available" and c["status"] == "True" for c in conds)

    await _wait_for(available, 60, "Deployment Available")
    async with http.get(f"/api/v1/namespaces/{namespace}/pods", params={"labelSelector": "app=gpu-app"}) as r:
        pods = (await _json(r))["items"]
    assert pods and pods[0]["spec"]["nodeName"] in gpu_nodes
    assert pods[0]["status"]["phase"] == "Running"


LEAK_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    from kaito_ctrl.testing.controlplane import ControlPlane, ControlPlaneOptions
    cp = ControlPlane(ControlPlaneOptions(controller_manager=False, scheduler=False, kwok=True, gpu_nodes=(),
                                      workdir=Path(sys.argv[2])))
    cp.start()
    print("PIDS " + json.dumps(cp.pids()), flush=True)
    if sys.argv[1] == "raise":
        try:
            raise RuntimeError("a failing test")
        finally:
            cp.stop()
    else:
        sys.stdin.read()  # wait to be killed
    """
)


def _wait_gone(pids: list[int], timeout: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout
    alive = pids
    while time.monotonic() < deadline:
        alive = [p for p in pids if process_alive(p)]
        if not alive:
            return []
        time.sleep(0.1)  # polling interval of a deadline-bounded wait
    return alive


@pytest.mark.parametrize("ending", ["raise", "sigkill"])
def test_no_process_left_behind(ending: str, tmp_path: Path) -> None:
    script = tmp_path / "leak.py"
    script.write_text(LEAK_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), ending, str(tmp_path / "cp")],
        stdout=subprocess.PIPE,
        stdin=subprocess.PIPE,
        env=dict(os.environ, KAITO_RUN_ID=uuid.uuid4().hex),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    while line and not line.startswith("PIDS "):
        line = proc.stdout.readline().decode()
    pids = json.loads(line.removeprefix("PIDS "))
    assert {"etcd", "kube-apiserver", "kwok"} <= set(pids), pids
    assert all(process_alive(p) for p in pids.values())
    if ending == "sigkill":
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    if ending == "raise":
        assert proc.returncode != 0
    assert _wait_gone(list(pids.values())) == []


def test_fixture_stop_reaps_every_component(tmp_path: Path) -> None:
    cp = ControlPlane(ControlPlaneOptions(workdir=tmp_path / "cp", gpu_nodes=()))
    try:
        cp.start()
        pids = cp.pids()
        assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}
    finally:
        cp.stop()
    assert _wait_gone(list(pids.values())) == []


def test_apiserver_restart_right_after_start_leaves_every_component_running(tmp_path: Path) -> None:
    """kube-controller-manager exits for good when the apiserver vanishes while it starts its controllers;
    the harness starts it again, as a kubelet restarts a static pod, so later tests still have it."""
    cp = ControlPlane(ControlPlaneOptions(workdir=tmp_path / "cp", gpu_nodes=()))
    try:
        cp.start()
        for _ in range(2):
            cp.restart_apiserver()
        assert set(cp.pids()) == {
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kwok",
        }
    finally:
        cp.stop()


def test_audit_log_records_who_wrote_what(tmp_path: Path) -> None:
    """The audit log is the apiserver's own record of each request: user, user agent, verb, object, answer."""
    cp = ControlPlane(
        ControlPlaneOptions(
            workdir=tmp_path / "cp",
            gpu_nodes=(),
            audit=True,
            controller_manager=False,
            scheduler=False,
            kwok=False,
        )
    )
    try:
        cp.start()
        cp.kubectl("create", "configmap", "audited", "-n", "default", "--from-literal=k=v")
        events = cp.audit_events()
        creates = [
            e
            for e in events
            if e.get("verb") == "create"
            and (e.get("objectRef") or {}).get("resource") == "configmaps"
            and (e.get("objectRef") or {}).get("name") == "audited"
        ]
        assert len(creates) == 1, creates
        assert creates[0]["responseStatus"]["code"] == 201
        assert creates[0]["userAgent"].startswith("kubectl")
        assert creates[0]["user"]["username"]
    finally:
        cp.stop()
    # Off by default: no log, no reader results.
    quiet = ControlPlane(ControlPlaneOptions(workdir=tmp_path / "quiet", gpu_nodes=(), kwok=False))
    assert quiet.audit_events() == []


async def test_the_apiserver_runs_priority_and_fairness_so_the_client_sends_unlimited(
    control_plane: ControlPlane,
) -> None:
    """`kaito-ctrl run`'s default (--kube-client-qps -1) relies on API Priority and Fairness; the real apiserver
    names the FlowSchema on every answer, so the client keeps no bucket of its own."""
    from kaito_ctrl.kube.client import KubeClient
    from kaito_ctrl.kube.resources import NAMESPACES
    from kaito_ctrl.settings import Settings

    client = await KubeClient.from_kubeconfig(
        control_plane.kubeconfig, qps=Settings().kube_client_qps, burst=Settings().kube_client_burst
    )
    try:
        assert client.client_limit is None
        await client.get(NAMESPACES, "default")
        assert client.client_limit is None, "the apiserver answered without API Priority and Fairness"
    finally:
        await client.close()
