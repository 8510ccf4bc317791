"""`kaito-ctrl run` as a process against the real apiserver: it becomes ready, leads, serves metrics, and its
webhook refuses an invalid Workspace; SIGTERM stops it cleanly and releases the lease."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from kaito_ctrl.testing.controlplane import ControlPlane, KubectlError, free_port
from tests.cases.invalid_workspaces import inference_ws

REPO = Path(__file__).resolve().parents[2]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def test_run_serves_probes_metrics_and_webhook(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "manifests/crds"))
    control_plane.kubectl("create", "namespace", "kaito-run-test", check=False)
    metrics, probes, webhook = free_port(), free_port(), free_port()
    env = dict(
        os.environ,
        KUBECONFIG=control_plane.kubeconfig,
        KAITO_NAMESPACE="kaito-run-test",
        KAITO_METRICS_BIND_ADDRESS=f"127.0.0.1:{metrics}",
        KAITO_HEALTH_PROBE_BIND_ADDRESS=f"127.0.0.1:{probes}",
        KAITO_WEBHOOK_PORT=str(webhook),
        KAITO_WEBHOOK_URL_HOST="127.0.0.1",
        KAITO_LOG_FORMAT="json",
        # The node provisioner needs Azure settings; its own tests run it (test_provisioner*.py).
        KAITO_CONTROLLERS="workspace",
    )
    log = (tmp_path / "run.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kaito_ctrl.cli.main", "run"], env=env, stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"kaito-ctrl run exited: {(tmp_path / 'run.log').read_text()[-3000:]}")
            if _get(f"http://127.0.0.1:{probes}/readyz")[0] == 200:
                break
            time.sleep(0.2)  # polling interval of a deadline-bounded wait
        status, body = _get(f"http://127.0.0.1:{probes}/readyz?verbose")
        assert status == 200 and "[+]webhook ok" in body, body
        _, text = _get(f"http://127.0.0.1:{metrics}/metrics")
        assert 'leader_election_master_status{name="kaito-ctrl-leader"} 1.0' in text
        lease = json.loads(
            control_plane.kubectl("get", "lease", "kaito-ctrl-leader", "-n", "kaito-run-test", "-o", "json")
        )
        assert lease["spec"]["holderIdentity"]
        bad = inference_ws("bad-preset")
        bad["inference"]["preset"]["name"] = "phi-9"
        deadline = time.monotonic() + 30
        while True:
            try:
                control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(bad))
                pytest.fail("an unknown preset was accepted")
            except KubectlError as e:
                if "denied the request" in str(e):
                    assert "inference.preset.name" in str(e)
                    break
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)  # the apiserver picks up the new webhook configuration within a moment
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        lease = json.loads(
            control_plane.kubectl("get", "lease", "kaito-ctrl-leader", "-n", "kaito-run-test", "-o", "json")
        )
        assert lease["spec"].get("holderIdentity", "") == "", "the lease is released on shutdown"
    finally:
        if proc.poll() is None:
            proc.kill()
        for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
            control_plane.kubectl(
                "delete", kind, f"kaito-ctrl-{kind[: -len('webhookconfiguration')]}-webhook", check=False
            )
