"""The CRDs on the real apiserver: they install, the examples apply, columns and explain work, the schema and
CEL rules refuse what they can on their own, and the committed YAML is what the generator writes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kaito_ctrl.testing.controlplane import ControlPlane, KubectlError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def crds(control_plane: ControlPlane) -> ControlPlane:
    control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "manifests/crds"))
    control_plane.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        "crd/workspaces.kaito.sh", "crd/machines.karpenter.sh", "crd/nodeclaims.karpenter.sh",
    )  # fmt: skip
    return control_plane


def _retry(fn: object, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()  # type: ignore[operator,no-any-return]
        except KubectlError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)  # polling interval: discovery and OpenAPI publish shortly after Established


def test_generated_crds_are_committed() -> None:
    res = subprocess.run(
        [sys.executable, str(REPO / "hack/gen_crds.py"), "--check"], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout


def test_examples_apply_and_columns_per_version(crds: ControlPlane, namespace: str) -> None:
    for example in sorted((REPO / "examples").rglob("*.yaml")):
        _retry(lambda e=example: crds.kubectl("apply", "-n", namespace, "--dry-run=server", "-f", str(e)))
    crds.kubectl("apply", "-n", namespace, "-f", str(REPO / "examples/inference/kaito_workspace_phi_3.yaml"))
    seed = ["NAME", "INSTANCE", "RESOURCEREADY", "INFERENCEREADY", "WORKSPACEREADY", "AGE"]
    wide = ["NAME", "INSTANCE", "RESOURCEREADY", "INFERENCEREADY", "WORKSPACEREADY", "JOBSTARTED",
            "WORKSPACESUCCEEDED", "TARGETNODECOUNT", "STATE", "AGE"]  # fmt: skip
    # Plain `kubectl get workspace` (as the seed types it) and both versions spelled out: the seed's columns.
    for resource in ("workspace", "workspaces.v1alpha1.kaito.sh", "workspaces.v1beta1.kaito.sh"):
        assert crds.kubectl("get", resource, "-n", namespace).splitlines()[0].split() == seed, resource
        assert crds.kubectl("get", resource, "-n", namespace, "-o", "wide").splitlines()[0].split() == wide
    short = crds.kubectl("get", "wk", "-n", namespace, "-o", "json")
    stored = json.loads(short)["items"][0]
    assert stored["resource"]["instanceType"] == "Standard_NC6s_v3"
    assert stored["resource"]["count"] == 1, "schema default applied"


def test_explain_describes_fields(crds: ControlPlane) -> None:
    out = _retry(lambda: crds.kubectl("explain", "workspace.resource.instanceType"))
    assert "GPU VM size" in out


def test_schema_and_cel_refuse_on_their_own(crds: ControlPlane, namespace: str) -> None:
    both = {
        "apiVersion": "kaito.sh/v1beta1", "kind": "Workspace", "metadata": {"name": "both"},
        "resource": {"labelSelector": {"matchLabels": {"a": "b"}}},
        "inference": {"preset": {"name": "phi-4"}},
        "tuning": {"input": {"urls": ["https://example.com"]}, "output": {"image": "r.io/x:1"}},
    }  # fmt: skip
    with pytest.raises(KubectlError, match="exactly one of inference or tuning"):
        crds.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(both))
    bad_mode = dict(both, tuning=None, metadata={"name": "mode"})
    del bad_mode["tuning"]
    bad_mode["inference"] = {"preset": {"name": "phi-4", "accessMode": "secret"}}
    with pytest.raises(KubectlError, match=r"inference.preset.accessMode"):
        crds.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(bad_mode))
    claim = {
        "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim", "metadata": {"name": "nc-bad"},
        "spec": {"requirements": [], "nodeClassRef": {"group": "", "kind": "KaitoNodeClass", "name": "default"}},
    }  # fmt: skip
    with pytest.raises(KubectlError, match="group may not be empty"):
        crds.kubectl("apply", "-f", "-", input=json.dumps(claim))
