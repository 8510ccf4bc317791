"""End-to-end fixtures: a sandbox driven only as a user would drive it (kubectl and the API).

By default each session starts its own sandbox (``kaito-ctrl sandbox up``) in a temporary directory and
stops it at the end. With ``KAITO_E2E_KUBECONFIG`` set, the suite targets that cluster instead (a real AKS
cluster with kaito-ctrl installed); tests that need the fake ARM server are then skipped.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Sandbox:
    kubeconfig: str
    kubectl_bin: str
    info: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def external(self) -> bool:
        return not self.info

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120) -> str:
        res = subprocess.run(
            [self.kubectl_bin, "--kubeconfig", self.kubeconfig, *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and res.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {res.stderr}")
        return res.stdout if check else res.stdout + res.stderr

    def current_info(self) -> dict[str, Any]:
        """ready.json as it is now (the supervisor rewrites it when it restarts a replica)."""
        return dict(json.loads((Path(self.env["KAITO_SANDBOX_DIR"]) / "ready.json").read_text()))

    def apply_json(self, namespace: str, obj: dict[str, Any], timeout: float = 60) -> None:
        """kubectl apply, retrying while the webhook is briefly unreachable (a replica restarting)."""

        def applied() -> bool:
            out = self.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj), check=False)
            return any(w in out for w in ("created", "configured", "unchanged"))

        wait_for(applied, timeout, f"{obj['metadata']['name']} applied")

    def get_json(self, *args: str) -> dict[str, Any]:
        return dict(json.loads(self.kubectl("get", *args, "-o", "json")))

    def fake_arm(self, path: str, method: str = "GET", body: Any = None) -> Any:
        """Use the fake ARM server's admin API (sandbox only): pools, faults, request counts."""
        arm = self.info.get("fake_arm")
        if self.external or not arm:
            pytest.skip("needs the sandbox's fake ARM server")
        ctx = ssl.create_default_context(cafile=arm["ca_file"])
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(arm["admin"] + path, data=data, method=method)
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            raw = r.read()
        return json.loads(raw) if raw else None


def wait_for(fn: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    """Poll ``fn`` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)  # polling interval of a deadline-bounded wait
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


def start_sandbox(tmp: Path, mode: str, replicas: int = 1) -> tuple[Sandbox, Callable[[], None]]:
    env = dict(os.environ, KAITO_SANDBOX_DIR=str(tmp), KAITO_SANDBOX_AUDIT="1")
    cli = [sys.executable, "-m", "kaito_ctrl.cli.main", "sandbox"]
    up = subprocess.run(
        [*cli, "up", "--no-example", f"--node-provisioner={mode}", f"--replicas={replicas}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if up.returncode != 0:
        log = (
            (tmp / "supervisor.log").read_text(errors="replace") if (tmp / "supervisor.log").exists() else ""
        )
        raise RuntimeError(f"sandbox up failed: {up.stderr}\n{log[-4000:]}")
    info = json.loads((tmp / "ready.json").read_text())
    sandbox = Sandbox(info["kubeconfig"], str(Path(info["bin_dir"]) / "kubectl"), info, env)

    def stop() -> None:
        subprocess.run([*cli, "down"], env=env, capture_output=True, timeout=120)

    return sandbox, stop


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    external = os.environ.get("KAITO_E2E_KUBECONFIG")
    if external:
        yield Sandbox(external, os.environ.get("KUBECTL", "kubectl"))
        return
    with tempfile.TemporaryDirectory(prefix="kaito-e2e-") as tmp:
        # Two replicas, as the shipped Deployment runs: leader election decides which one reconciles.
        sb, stop = start_sandbox(
            Path(tmp), os.environ.get("KAITO_E2E_NODE_PROVISIONER", "nodeclaim"), replicas=2
        )
        try:
            yield sb
        finally:
            stop()


@pytest.fixture
def e2e_namespace(sandbox: Sandbox) -> Iterator[str]:
    name = f"e2e-{os.urandom(4).hex()}"
    sandbox.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        sandbox.kubectl("delete", "namespace", name, "--wait=false", check=False)
