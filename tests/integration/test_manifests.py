"""The install manifests: the Helm chart renders the same objects as the kustomize base, the RBAC has no
wildcards, and the base applies to a real apiserver."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from kaito_ctrl.testing.controlplane import ControlPlane

REPO = Path(__file__).resolve().parents[2]


def _objects(text: str) -> dict[tuple[str, str, str], dict[str, Any]]:
    out = {}
    for doc in yaml.safe_load_all(text):
        if doc:
            key = (doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"])
            assert key not in out, f"duplicate object {key}"
            out[key] = doc
    return out


def _run(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def test_helm_chart_renders_the_kustomize_objects(control_plane: ControlPlane) -> None:
    b = control_plane.bin_dir
    kustomized = _objects(_run(str(b / "kubectl"), "kustomize", str(REPO / "manifests")))
    helm = _objects(
        _run(str(b / "helm"), "template", "kaito-ctrl", str(REPO / "manifests/helm/kaito-ctrl"),
             "--namespace", "kaito-system", "--include-crds")
    )  # fmt: skip
    assert sorted(helm) == sorted(kustomized)
    for key, obj in kustomized.items():
        assert helm[key] == obj, f"{key} differs between Helm and kustomize"


def test_helm_values_change_the_rendered_settings(control_plane: ControlPlane) -> None:
    out = _objects(
        _run(str(control_plane.bin_dir / "helm"), "template", "k", str(REPO / "manifests/helm/kaito-ctrl"),
             "--set", "nodeProvisioner=machine", "--set", "azure.subscriptionId=sub-1", "--set", "replicas=3",
             "--set", "kubeClient.qps=50", "--set", "kubeClient.burst=75")
    )  # fmt: skip
    dep = out[("Deployment", "kaito-system", "kaito-ctrl")]
    assert dep["spec"]["replicas"] == 3
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--node-provisioner=machine" in args
    assert "--kube-client-qps=50" in args and "--kube-client-burst=75" in args
    assert out[("ConfigMap", "kaito-system", "kaito-ctrl-azure")]["data"]["AZURE_SUBSCRIPTION_ID"] == "sub-1"


def test_workload_identity_from_values_alone(control_plane: ControlPlane) -> None:
    out = _objects(
        _run(str(control_plane.bin_dir / "helm"), "template", "k", str(REPO / "manifests/helm/kaito-ctrl"),
             "--set", "azure.clientId=11111111-2222-3333-4444-555555555555", "--set", "azure.tenantId=tenant-1")
    )  # fmt: skip
    pod = out[("Deployment", "kaito-system", "kaito-ctrl")]["spec"]["template"]
    assert pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert pod["spec"]["serviceAccountName"] == "kaito-ctrl"
    sa = out[("ServiceAccount", "kaito-system", "kaito-ctrl")]
    assert sa["metadata"]["annotations"] == {
        "azure.workload.identity/client-id": "11111111-2222-3333-4444-555555555555",
        "azure.workload.identity/tenant-id": "tenant-1",
    }
    data = out[("ConfigMap", "kaito-system", "kaito-ctrl-azure")]["data"]
    assert data["AZURE_CREDENTIAL_KIND"] == "workload" and data["AZURE_TENANT_ID"] == "tenant-1"
    # The device plugin is on by default and off when a GPU operator manages the nodes.
    assert ("DaemonSet", "kube-system", "nvidia-device-plugin") in out
    ds = out[("DaemonSet", "kube-system", "nvidia-device-plugin")]["spec"]["template"]["spec"]
    assert ds["priorityClassName"] == "system-node-critical"
    assert {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"} in ds["tolerations"]
    operator = _objects(
        _run(str(control_plane.bin_dir / "helm"), "template", "k", str(REPO / "manifests/helm/kaito-ctrl"),
             "--set", "gpuOperator.enabled=true")
    )  # fmt: skip
    assert not [k for k in operator if k[0] == "DaemonSet"]


def test_rbac_has_no_wildcards(control_plane: ControlPlane) -> None:
    objs = _objects(_run(str(control_plane.bin_dir / "kubectl"), "kustomize", str(REPO / "manifests")))
    roles = [o for (kind, _, _), o in objs.items() if kind in ("ClusterRole", "Role")]
    assert roles
    for role in roles:
        for rule in role["rules"]:
            for field in ("verbs", "resources", "apiGroups"):
                assert "*" not in rule.get(field, []), f"{role['metadata']['name']}: wildcard in {field}"
            assert not rule.get("nonResourceURLs"), "no non-resource URLs are needed"


def test_kustomize_base_applies_to_the_apiserver(control_plane: ControlPlane) -> None:
    # The namespace must exist for a server-side dry run of the namespaced objects.
    control_plane.kubectl("apply", "-f", str(REPO / "manifests/namespace.yaml"))
    out = control_plane.kubectl("apply", "-k", str(REPO / "manifests"), "--dry-run=server")
    assert "deployment.apps/kaito-ctrl" in out
