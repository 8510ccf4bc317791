"""kwok behaves like a kubelet where the seed's journey needs it: a pod whose image reference does not parse waits
with InvalidImageName and never runs, and a pod's port-forward and logs reach a local process through kwok's
kubelet server (PortForward / Logs objects, Node InternalIP 127.0.0.1, TLS verified by the apiserver)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from kaito_ctrl.controllers.workspace.inference_pod import adapter_pieces
from kaito_ctrl.controllers.workspace.rootcause import pod_problem
from kaito_ctrl.controllers.workspace.spec import WorkspaceSpec
from kaito_ctrl.controllers.workspace.workload import render_inference
from kaito_ctrl.kube.client import KubeClient
from kaito_ctrl.kube.resources import PODS
from kaito_ctrl.sandbox.standin.manager import StandInManager
from kaito_ctrl.testing.controlplane import ControlPlane, ControlPlaneOptions, free_port
from kaito_ctrl.testing.gpunodes import GpuNodeSpec


@pytest.fixture(scope="module")
def debug_cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    cp = ControlPlane(
        ControlPlaneOptions(
            workdir=tmp_path_factory.mktemp("kwokdbg"),
            gpu_nodes=(GpuNodeSpec("dbg-node-0", gpus=1),),
            kwok_debugging=True,
        )
    )
    try:
        cp.start()
        # Pods need the namespace's ServiceAccount, which kube-controller-manager creates shortly after start.
        _wait(lambda: "NotFound" not in cp.kubectl("get", "sa", "default", check=False), 60, "default SA")
        yield cp
    finally:
        cp.stop()


def _pod(name: str, image: str, init_image: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "nodeName": "dbg-node-0",
        "containers": [{"name": "main", "image": image, "ports": [{"containerPort": 5000}]}],
        "tolerations": [{"operator": "Exists"}],
    }
    if init_image:
        spec["initContainers"] = [{"name": "adapter", "image": init_image}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }


def _wait(fn: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.3)  # polling interval of a deadline-bounded wait
    raise AssertionError(f"timed out waiting for {what}: {last!r}")


def _get(cp: ControlPlane, name: str) -> dict[str, Any]:
    return dict(json.loads(cp.kubectl("get", "pod", name, "-o", "json")))


def test_invalid_image_waits_like_a_kubelet_and_valid_images_run(debug_cp: ControlPlane) -> None:
    debug_cp.apply_objects(
        [
            _pod("bad-main", "ACR_REPO_HERE.azurecr.io/IMAGE_NAME_HERE:0.0.1"),
            _pod(
                "bad-init",
                "mcr.microsoft.com/aks/kaito/kaito-base:0.5.0",
                "ACR_REPO_HERE.azurecr.io/ADAPTER_HERE:0.0.1",
            ),
            _pod(
                "good", "mcr.microsoft.com/aks/kaito/kaito-base:0.5.0", "myregistry.azurecr.io/adapter:0.0.1"
            ),
        ]
    )

    def waiting(name: str, key: str) -> str | None:
        statuses = _get(debug_cp, name).get("status", {}).get(key) or []
        return next((s["state"].get("waiting", {}).get("reason") for s in statuses), None)

    assert _wait(lambda: waiting("bad-main", "containerStatuses") == "InvalidImageName", 30, "bad-main")
    assert _wait(lambda: waiting("bad-init", "initContainerStatuses") == "InvalidImageName", 30, "bad-init")
    assert waiting("bad-init", "containerStatuses") == "PodInitializing"
    assert _wait(lambda: _get(debug_cp, "good").get("status", {}).get("phase") == "Running", 30, "good runs")
    for name in ("bad-main", "bad-init"):
        status = _get(debug_cp, name)["status"]
        assert status["phase"] == "Pending"
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "False"


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"hello": "from a local process"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def _adapter_pod(name: str, adapter_image: str) -> dict[str, Any]:
    """A pod with the init containers the renderer gives an image adapter (the skopeo puller, whose argument
    is the adapter image), so the stage is tested against what the controller really creates."""
    inits, volumes, _, _ = adapter_pieces({"adapters": [{"source": {"name": "ad", "image": adapter_image}}]})
    pod = _pod(name, "mcr.microsoft.com/aks/kaito/kaito-base:0.5.0")
    pod["spec"]["initContainers"] = inits
    pod["spec"]["volumes"] = volumes
    return pod


def test_an_adapter_puller_with_an_unparsable_image_fails_and_restarts(debug_cp: ControlPlane) -> None:
    debug_cp.apply_objects(
        [
            _adapter_pod("puller-bad", "ACR_REPO_HERE.azurecr.io/ADAPTER_HERE:0.0.1"),
            _adapter_pod("puller-good", "myregistry.azurecr.io/adapter:0.0.1"),
        ]
    )

    def puller(name: str) -> dict[str, Any]:
        statuses = _get(debug_cp, name).get("status", {}).get("initContainerStatuses") or [{}]
        return dict(statuses[0])

    bad = _wait(
        lambda: (
            (s := puller("puller-bad")).get("state", {}).get("waiting", {}).get("reason")
            == "CrashLoopBackOff"
            and s
        ),
        30,
        "the bad puller in CrashLoopBackOff",
    )
    assert bad["name"] == "puller-ad" and bad["lastState"]["terminated"]["exitCode"] == 1
    assert "ADAPTER_HERE" in bad["lastState"]["terminated"]["message"]
    pod = _get(debug_cp, "puller-bad")
    assert pod["status"]["phase"] == "Pending"
    assert pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"
    # The Workspace controller's reading of that pod names the adapter image and the cause.
    reason, message = pod_problem(pod) or ("", "")
    assert reason == "InvalidImageName" and "ADAPTER_HERE" in message and "puller-ad" in message
    assert _wait(
        lambda: _get(debug_cp, "puller-good").get("status", {}).get("phase") == "Running", 30, "good runs"
    )
    assert pod_problem(_get(debug_cp, "puller-good")) is None


def test_port_forward_and_logs_reach_a_local_process(debug_cp: ControlPlane, tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    log_file = tmp_path / "pod.log"
    log_file.write_text("stand-in says hello\n")
    try:
        debug_cp.apply_objects([_pod("fwd", "mcr.microsoft.com/aks/kaito/kaito-base:0.5.0")])
        _wait(lambda: _get(debug_cp, "fwd").get("status", {}).get("phase") == "Running", 30, "fwd runs")
        debug_cp.apply_objects(
            [
                {
                    "apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "PortForward",
                    "metadata": {"name": "fwd", "namespace": "default"},
                    "spec": {"forwards": [{"ports": [5000], "target": {"port": server.server_port, "address": "127.0.0.1"}}]},
                },
                {
                    "apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Logs",
                    "metadata": {"name": "fwd", "namespace": "default"},
                    "spec": {"logs": [{"containers": ["main"], "logsFile": str(log_file)}]},
                },
            ]
        )  # fmt: skip
        _wait(
            lambda: "stand-in says hello" in debug_cp.kubectl("logs", "fwd", check=False), 30, "kubectl logs"
        )
        local = free_port()
        pf = subprocess.Popen(
            [str(debug_cp.bin_dir / "kubectl"), "--kubeconfig", debug_cp.kubeconfig, "port-forward", "pod/fwd", f"{local}:5000"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:

            def answer() -> str | None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=5) as r:
                        return str(r.read().decode())
                except OSError:
                    return None

            assert "from a local process" in _wait(answer, 30, "an answer through port-forward")
        finally:
            pf.terminate()
            pf.wait(timeout=10)
    finally:
        server.shutdown()


async def test_a_command_line_the_entry_point_refuses_crash_loops_with_its_reason(
    debug_cp: ControlPlane,
) -> None:
    ws = WorkspaceSpec(
        {"metadata": {"name": "w", "namespace": "default", "uid": "u", "annotations": {"kaito.sh/runtime": "vllm"}},
         "resource": {"instanceType": "Standard_NC24ads_A100_v4"},
         "inference": {"preset": {"name": "phi-4"}}}
    )  # fmt: skip
    rendered = render_inference(ws, nodes=1, node_requirements=[], registry="mcr.microsoft.com/aks/kaito")[-1]
    container = dict(rendered["spec"]["template"]["spec"]["containers"][0])
    container["command"] = [*container["command"][:2], container["command"][2] + " --tensor-paralel-size=2"]
    pod = _pod("refused", container["image"])
    pod["metadata"]["labels"] = {"kaito.sh/workspace": "w"}
    pod["spec"]["containers"] = [{k: container[k] for k in ("name", "image", "command")}]
    debug_cp.apply_objects([pod])
    kube = await KubeClient.from_kubeconfig(debug_cp.kubeconfig)
    manager = StandInManager(kube, debug_cp.workdir / "standins")
    manager.informer.start()
    try:
        deadline = time.monotonic() + 30
        while True:
            await manager.sync()
            live = await kube.get(PODS, "refused", "default")
            statuses = live.get("status", {}).get("containerStatuses") or [{}]
            if statuses[0].get("state", {}).get("waiting", {}).get("reason") == "CrashLoopBackOff":
                break
            assert time.monotonic() < deadline, f"no CrashLoopBackOff: {live.get('status')}"
            await asyncio.sleep(0.3)  # polling interval of a deadline-bounded wait
    finally:
        await manager.informer.stop()
        await kube.close()
    assert not manager.running, "no stand-in serves a pod whose entry point refused to start"
    assert (
        "unrecognized arguments: --tensor-paralel-size" in statuses[0]["lastState"]["terminated"]["message"]
    )
    reason, message = pod_problem(live) or ("", "")
    assert reason == "ContainerCrashLoopBackOff" and "--tensor-paralel-size" in message
