"""The shipped security manifests: the webhook NetworkPolicy admits only kube-system (and the configured
apiserver CIDRs) to port 9443, Helm and kustomize agree on it, and the namespaced Role grants the Lease and the
certificate Secret by name only."""

from __future__ import annotations

from typing import Any

from kaito_ctrl.testing.controlplane import ControlPlane
from tests.integration.test_manifests import REPO, _objects, _run


def _policy(objs: dict[tuple[str, str, str], dict[str, Any]]) -> dict[str, Any]:
    return objs[("NetworkPolicy", "kaito-system", "kaito-ctrl")]


def test_webhook_port_is_open_only_to_the_apiserver(control_plane: ControlPlane) -> None:
    objs = _objects(_run(str(control_plane.bin_dir / "kubectl"), "kustomize", str(REPO / "manifests")))
    policy = _policy(objs)
    dep = objs[("Deployment", "kaito-system", "kaito-ctrl")]
    assert (
        policy["spec"]["podSelector"]["matchLabels"].items()
        <= dep["spec"]["template"]["metadata"]["labels"].items()
    )
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    webhook_rules = [
        r for r in policy["spec"]["ingress"] if {"protocol": "TCP", "port": 9443} in r.get("ports", [])
    ]
    assert len(webhook_rules) == 1 and webhook_rules[0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}
    ]
    for rule in policy["spec"]["ingress"]:
        if rule is not webhook_rules[0]:
            assert all(p["port"] != 9443 for p in rule["ports"]), "no other rule opens the webhook port"
    helm = _objects(
        _run(str(control_plane.bin_dir / "helm"), "template", "k", str(REPO / "manifests/helm/kaito-ctrl"),
             "--set", "webhook.apiserverCIDRs={10.224.0.0/16}")
    )  # fmt: skip
    froms = next(r for r in _policy(helm)["spec"]["ingress"] if r.get("from"))["from"]
    assert {"ipBlock": {"cidr": "10.224.0.0/16"}} in froms


def test_lease_and_secret_are_granted_by_name(control_plane: ControlPlane) -> None:
    objs = _objects(_run(str(control_plane.bin_dir / "kubectl"), "kustomize", str(REPO / "manifests")))
    role = objs[("Role", "kaito-system", "kaito-ctrl")]
    for rule in role["rules"]:
        if rule["resources"] in (["secrets"], ["leases"]) and rule["verbs"] != ["create"]:
            assert rule.get("resourceNames"), rule
        assert not {"list", "watch"} & set(rule["verbs"]), rule
