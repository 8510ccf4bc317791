"""What the sandbox runs on top of the control plane: the install manifests (sandbox overlay), the webhook
registered by URL, and ``kaito-ctrl run`` as a local process authenticated as the kaito-ctrl ServiceAccount,
so the shipped RBAC is what the controllers really get."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaito_ctrl.testing.binaries import repo_root
from kaito_ctrl.testing.controlplane import ControlPlane, free_port
from kaito_ctrl.webhook.registration import ClientConfig, configurations

NAMESPACE = "kaito-system"
SERVICE_ACCOUNT = "kaito-ctrl"


def service_account_kubeconfig(cp: ControlPlane, path: Path) -> Path:
    """A kubeconfig holding a token for the kaito-ctrl ServiceAccount (TokenRequest, 48 h)."""
    token = cp.kubectl("create", "token", SERVICE_ACCOUNT, "-n", NAMESPACE, "--duration=48h").strip()
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "sandbox", "cluster": {"server": cp.server, "certificate-authority": cp.ca_file}}
        ],
        "users": [{"name": SERVICE_ACCOUNT, "user": {"token": token}}],
        "contexts": [{"name": "sandbox", "context": {"cluster": "sandbox", "user": SERVICE_ACCOUNT}}],
        "current-context": "sandbox",
    }
    path.write_text(json.dumps(cfg))
    path.chmod(0o600)
    return path


def terminate(popen: subprocess.Popen[bytes] | None, timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within ``timeout``."""
    if popen is not None and popen.poll() is None:
        popen.terminate()
        try:
            popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout=10)


@dataclass
class ControllerProcess:
    workdir: Path
    kubeconfig: Path
    node_provisioner: str = "nodeclaim"
    replica: int = 0
    metrics_port: int = field(default_factory=free_port)
    probe_port: int = field(default_factory=free_port)
    webhook_port: int = field(default_factory=free_port)
    # Azure settings for the node provisioner (pointing at the fake ARM server in the sandbox).
    extra_env: dict[str, str] = field(default_factory=dict)
    popen: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / ("kaito-ctrl.log" if self.replica == 0 else f"kaito-ctrl-{self.replica}.log")

    def env(self) -> dict[str, str]:
        return dict(
            os.environ,
            KUBECONFIG=str(self.kubeconfig),
            KAITO_NAMESPACE=NAMESPACE,
            KAITO_NODE_PROVISIONER=self.node_provisioner,
            KAITO_METRICS_BIND_ADDRESS=f"127.0.0.1:{self.metrics_port}",
            KAITO_HEALTH_PROBE_BIND_ADDRESS=f"127.0.0.1:{self.probe_port}",
            KAITO_WEBHOOK_PORT=str(self.webhook_port),
            KAITO_WEBHOOK_URL_HOST="127.0.0.1",
            KAITO_LOG_FORMAT="json",
            **self.extra_env,
        )

    def start(self, timeout: float = 60) -> None:
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "kaito_ctrl.cli.main", "run"],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"kaito-ctrl run exited with {self.popen.returncode}:\n{tail}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.probe_port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)  # polling interval of a deadline-bounded wait
        raise TimeoutError("kaito-ctrl did not become ready")

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def exit_code(self) -> int | None:
        return self.popen.poll() if self.popen is not None else None

    def stop(self) -> None:
        terminate(self.popen)

    def info(self) -> dict[str, Any]:
        return {
            "replica": self.replica,
            "pid": self.popen.pid if self.popen else None,
            "metrics": f"http://127.0.0.1:{self.metrics_port}/metrics",
            "readyz": f"http://127.0.0.1:{self.probe_port}/readyz",
            "log": str(self.log_path),
            "node_provisioner": self.node_provisioner,
        }


def install(cp: ControlPlane, controller: ControllerProcess) -> None:
    """Apply the sandbox overlay of the install manifests and pre-register the webhook by URL."""
    overlay = repo_root() / "hack" / "sandbox"
    cp.kubectl("apply", "--server-side", "--force-conflicts", "-k", str(overlay))
    cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/workspaces.kaito.sh")
    # The controller may only patch these by name (least privilege), so the sandbox creates them first.
    docs = configurations(ClientConfig(url_base=f"https://127.0.0.1:{controller.webhook_port}"), b"")
    cp.kubectl(
        "apply", "--server-side", "--force-conflicts", "--field-manager=kaito-ctrl", "-f", "-",
        input="\n".join(json.dumps(d) for d in docs),
    )  # fmt: skip


@dataclass
class FakeArmProcess:
    """The fake ARM server (simulated AKS) as its own process, joining a kwok Node for each agent pool."""

    state_dir: Path
    kubeconfig: str
    create_seconds: float = 5.0
    delete_seconds: float = 3.0
    join_delay: float = 2.0
    popen: subprocess.Popen[bytes] | None = None
    ready: dict[str, Any] = field(default_factory=dict)
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    @property
    def log_path(self) -> Path:
        return self.state_dir / "fake-arm.log"

    def start(self, timeout: float = 60) -> dict[str, Any]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        ready_file = self.state_dir / "ready.json"
        ready_file.unlink(missing_ok=True)
        # Kept beside the state (0600) so tests can check it never shows up in a log; never printed.
        token_file = self.state_dir / "token"
        token_file.write_text(self.token)
        token_file.chmod(0o600)
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            [
                sys.executable, "-m", "kaito_ctrl.sandbox.fakearm",
                "--state-dir", str(self.state_dir), "--kubeconfig", self.kubeconfig,
                "--create-seconds", str(self.create_seconds), "--delete-seconds", str(self.delete_seconds),
                "--join-delay", str(self.join_delay), "--retry-after", "1",
            ],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"fake ARM server exited with {self.popen.returncode}:\n{tail}")
            if ready_file.exists():
                self.ready = json.loads(ready_file.read_text())
                return self.ready
            time.sleep(0.2)  # polling interval of a deadline-bounded wait
        raise TimeoutError("the fake ARM server did not start")

    def azure_env(self) -> dict[str, str]:
        r = self.ready
        return {
            "AZURE_SUBSCRIPTION_ID": r["subscription_id"],
            "AZURE_RESOURCE_GROUP": r["resource_group"],
            "AZURE_CLUSTER_NAME": r["cluster_name"],
            "LOCATION": r["location"],
            "ARM_BASE_URL": r["url"],
            "ARM_CA_BUNDLE": r["ca_file"],
            # The fake accepts any bearer token; a random one lets tests prove it never reaches a log.
            "ARM_STATIC_TOKEN": self.token,
            "ARM_POLLING_INTERVAL": "1",
        }

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self) -> None:
        terminate(self.popen)


@dataclass
class StandInProcess:
    """The stand-ins' manager (``kaito_ctrl.sandbox.standin.manager``): one local inference stand-in per
    inference pod on a kwok node, reached through kwok's port-forward; its own process, like the fake ARM server."""

    state_dir: Path
    kubeconfig: str
    popen: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.state_dir / "manager.log"

    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            [
                sys.executable, "-m", "kaito_ctrl.sandbox.standin.manager",
                "--kubeconfig", self.kubeconfig, "--state-dir", str(self.state_dir),
            ],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        log.close()

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self) -> None:
        terminate(self.popen)
