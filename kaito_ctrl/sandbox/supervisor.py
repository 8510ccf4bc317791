"""The sandbox supervisor: a detached process that owns the local control plane (and, as they are
wired in, the fake ARM server and both controllers) until ``kaito-ctrl sandbox down`` sends SIGTERM.

It writes ``ready.json`` once everything is up; the ``up`` command waits on that file.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import time
from typing import Any

from kaito_ctrl import logsetup
from kaito_ctrl.sandbox import paths
from kaito_ctrl.sandbox.stack import ControllerProcess, FakeArmProcess, install, service_account_kubeconfig
from kaito_ctrl.testing.binaries import read_versions
from kaito_ctrl.testing.controlplane import ControlPlane, ControlPlaneOptions


def main() -> int:
    logsetup.configure(fmt="json")
    root = paths.sandbox_dir()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    workdir = root / "controlplane"
    shutil.rmtree(workdir, ignore_errors=True)
    mode = os.environ.get("KAITO_NODE_PROVISIONER", "nodeclaim")
    # With a node provisioner, GPU nodes come from agent pools on the fake ARM server; BYO gets two up front.
    options = (
        ControlPlaneOptions(workdir=workdir)
        if mode == "byo"
        else ControlPlaneOptions(workdir=workdir, gpu_nodes=())
    )
    cp = ControlPlane(options)
    controller: ControllerProcess | None = None
    fake_arm: FakeArmProcess | None = None
    try:
        cp.start()
        controller = ControllerProcess(
            workdir=root, kubeconfig=workdir / "kaito-ctrl.kubeconfig", node_provisioner=mode
        )
        if mode != "byo":
            shutil.rmtree(root / "fake-arm", ignore_errors=True)
            fake_arm = FakeArmProcess(state_dir=root / "fake-arm", kubeconfig=cp.kubeconfig)
            fake_arm.start()
            # A short backoff cap so a cleared fault is retried within seconds in a demo (default 300 s).
            controller.extra_env = {**fake_arm.azure_env(), "KAITO_CLOUD_BACKOFF_CAP": "15"}
        install(cp, controller)
        service_account_kubeconfig(cp, controller.kubeconfig)
        controller.start()
        info: dict[str, Any] = {
            "pid": os.getpid(),
            "kubeconfig": cp.kubeconfig,
            "server": cp.server,
            "bin_dir": str(cp.bin_dir),
            "versions": read_versions(cp.bin_dir),
            "started": time.time(),
            "components": sorted(cp.pids()),
            "controller": controller.info(),
            "fake_arm": fake_arm.ready if fake_arm is not None else None,
        }
        tmp = paths.ready_file().with_suffix(".tmp")
        tmp.write_text(json.dumps(info, indent=2))
        tmp.replace(paths.ready_file())
        while not stop.wait(timeout=2.0):
            missing = [n for n in info["components"] if n not in cp.pids()]
            if not controller.alive():
                missing.append("kaito-ctrl")
            if fake_arm is not None and not fake_arm.alive():
                missing.append("fake-arm")
            if missing:
                print(json.dumps({"event": "component exited", "components": missing}), file=sys.stderr)
                return 1
        return 0
    finally:
        paths.ready_file().unlink(missing_ok=True)
        if controller is not None:
            controller.stop()
        if fake_arm is not None:
            fake_arm.stop()
        cp.stop()


if __name__ == "__main__":
    sys.exit(main())
