"""The sandbox supervisor: a detached process that owns the local control plane, the fake ARM server and the
kaito-ctrl replicas until ``kaito-ctrl sandbox down`` sends SIGTERM.

Like a kubelet under a Deployment, it restarts a kaito-ctrl replica that exits (crashed or killed), on the same
ports, so a test can SIGKILL the leader and watch the system recover. It writes ``ready.json`` once everything
is up (and again after each restart, with the new pids); the ``up`` command waits on that file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from kaito_ctrl import logsetup
from kaito_ctrl.sandbox import karpenter, paths
from kaito_ctrl.sandbox.stack import (
    ControllerProcess,
    FakeArmProcess,
    StandInProcess,
    install,
    service_account_kubeconfig,
)
from kaito_ctrl.testing.binaries import read_versions
from kaito_ctrl.testing.controlplane import ControlPlane, ControlPlaneOptions
from kaito_ctrl.testing.gpunodes import GpuNodeSpec

# BYO mode's own GPU nodes: the size the seed's example asks for (Standard_NC6s_v3, one V100 16 GiB), labelled
# as its selector says, so the seed's example runs on them as written.
SEED_BYO_NODES = tuple(
    GpuNodeSpec(f"gpu-node-{i}", instance_type="Standard_NC6s_v3", gpus=1, cpu="6", memory="112Gi",
                extra_labels={"apps": "phi-3"})
    for i in range(2)
)  # fmt: skip

# A replica restarted this often within the window is crash-looping: the sandbox stops instead.
MAX_RESTARTS, RESTART_WINDOW = 5, 60.0


def _event(**fields: Any) -> None:
    print(json.dumps({"time": time.time(), **fields}), file=sys.stderr, flush=True)


def _stage(what: str) -> None:
    _event(event="stage", stage=what)
    with contextlib.suppress(OSError):
        paths.stage_file().write_text(what)


def _write_ready(info: dict[str, Any], controllers: list[ControllerProcess]) -> None:
    info["controller"] = controllers[0].info()
    info["controllers"] = [c.info() for c in controllers]
    tmp = paths.ready_file().with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=2))
    tmp.replace(paths.ready_file())


def main() -> int:
    logsetup.configure(fmt="json")
    root = paths.sandbox_dir()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    workdir = root / "controlplane"
    shutil.rmtree(workdir, ignore_errors=True)
    mode = os.environ.get("KAITO_NODE_PROVISIONER", "nodeclaim")
    replicas = max(1, int(os.environ.get("KAITO_SANDBOX_REPLICAS", "1")))
    # With a node provisioner, GPU nodes come from agent pools on the fake ARM server; BYO gets two up front.
    # kwok_debugging: pods' port-forward and logs reach the stand-in servers (kaito_ctrl/sandbox/standin).
    # KAITO_SANDBOX_AUDIT=1 keeps the apiserver's audit log (the e2e run derives the used RBAC verbs from it).
    audit = os.environ.get("KAITO_SANDBOX_AUDIT") == "1"
    options = (
        ControlPlaneOptions(workdir=workdir, gpu_nodes=SEED_BYO_NODES, kwok_debugging=True, audit=audit)
        if mode == "byo"
        else ControlPlaneOptions(workdir=workdir, gpu_nodes=(), kwok_debugging=True, audit=audit)
    )
    cp = ControlPlane(options)
    controllers: list[ControllerProcess] = []
    fake_arm: FakeArmProcess | None = None
    standins: StandInProcess | None = None
    # karpenter: the real Karpenter (kwok provider) reconciles the NodeClaims; kaito-ctrl runs only its
    # workspace controller, in nodeclaim mode, its claims referencing the KWOKNodeClass.
    real_karpenter: karpenter.KarpenterProcess | None = None
    controller_mode = "nodeclaim" if mode == "karpenter" else mode
    try:
        _stage("starting etcd, kube-apiserver, controller-manager, scheduler and kwok")
        cp.start()
        kubeconfig = workdir / "kaito-ctrl.kubeconfig"
        controllers = [
            ControllerProcess(
                workdir=root, kubeconfig=kubeconfig, node_provisioner=controller_mode, replica=i
            )
            for i in range(replicas)
        ]
        # Every replica serves the webhook on its own port; the apiserver calls the first one's.
        if mode == "karpenter":
            group, kind, name = karpenter.NODE_CLASS
            for c in controllers:
                c.extra_env = {
                    "KAITO_CONTROLLERS": "workspace",
                    "KAITO_NODE_CLASS_GROUP": group,
                    "KAITO_NODE_CLASS_KIND": kind,
                    "KAITO_NODE_CLASS_NAME": name,
                }
        elif mode != "byo":
            shutil.rmtree(root / "fake-arm", ignore_errors=True)
            fake_arm = FakeArmProcess(state_dir=root / "fake-arm", kubeconfig=cp.kubeconfig)
            _stage("starting the fake ARM server (the simulated AKS)")
            fake_arm.start()
            # A short backoff cap so a cleared fault is retried within seconds in a demo (default 300 s).
            for c in controllers:
                c.extra_env = {**fake_arm.azure_env(), "KAITO_CLOUD_BACKOFF_CAP": "15"}
        _stage("installing the CRDs, RBAC and webhook from manifests/")
        install(cp, controllers[0])
        if mode == "karpenter":
            _stage("installing Karpenter's CRDs, the KWOKNodeClass and NodePool; starting Karpenter")
            karpenter_dir = Path(os.environ["KAITO_CTRL_KARPENTER_DIR"])
            karpenter.install(cp, karpenter_dir)
            real_karpenter = karpenter.KarpenterProcess(
                karpenter_dir=karpenter_dir, workdir=root, kubeconfig=cp.kubeconfig
            )
            real_karpenter.start()
        service_account_kubeconfig(cp, kubeconfig)
        _stage("starting the inference stand-ins' manager (POST /chat through the Service)")
        standins = StandInProcess(state_dir=root / "standins", kubeconfig=cp.kubeconfig)
        standins.start()
        _stage(f"starting kaito-ctrl ({replicas} replica(s), node provisioner {mode})")
        for c in controllers:
            c.start()
        info: dict[str, Any] = {
            "pid": os.getpid(),
            "kubeconfig": cp.kubeconfig,
            "server": cp.server,
            "bin_dir": str(cp.bin_dir),
            "versions": read_versions(cp.bin_dir),
            "started": time.time(),
            "components": sorted(cp.pids()),
            "fake_arm": fake_arm.ready if fake_arm is not None else None,
            "karpenter": (
                {**real_karpenter.info(), "versions": read_versions(real_karpenter.karpenter_dir)}
                if real_karpenter is not None
                else None
            ),
        }
        _write_ready(info, controllers)
        restarts: list[float] = []
        while not stop.wait(timeout=1.0):
            missing = [n for n in info["components"] if n not in cp.pids()]
            if fake_arm is not None and not fake_arm.alive():
                missing.append("fake-arm")
            if standins is not None and not standins.alive():
                missing.append("stand-in manager")
            if real_karpenter is not None and not real_karpenter.alive():
                missing.append("karpenter")
            if missing:
                _event(event="component exited", components=missing)
                return 1
            for c in controllers:
                if c.alive():
                    continue
                now = time.monotonic()
                restarts = [t for t in restarts if now - t < RESTART_WINDOW] + [now]
                if len(restarts) > MAX_RESTARTS:
                    _event(event="kaito-ctrl is crash-looping; stopping", replica=c.replica)
                    return 1
                _event(event="kaito-ctrl exited; restarting", replica=c.replica, code=c.exit_code())
                c.start(timeout=120)
                _write_ready(info, controllers)
        return 0
    finally:
        paths.ready_file().unlink(missing_ok=True)
        for c in controllers:
            c.stop()
        if fake_arm is not None:
            fake_arm.stop()
        if standins is not None:
            standins.stop()
        if real_karpenter is not None:
            real_karpenter.stop()
        cp.stop()


if __name__ == "__main__":
    sys.exit(main())
