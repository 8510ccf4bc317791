"""Low findings: reserved label domains in labelSelector (refused at admission, never written over a Node
label), Azure text trimmed for tenants, anchored validators (re.fullmatch: a trailing newline fails)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kaito_ctrl.api.reserved import protect_node_labels, reserved_domain
from kaito_ctrl.api.validation import validate_workspace
from kaito_ctrl.controllers.provisioner.nodesync import registration_patch
from kaito_ctrl.controllers.workspace.tenantview import tenant_message

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _ws(**match: str) -> dict[str, Any]:
    obj = yaml.safe_load((EXAMPLES / "inference" / "kaito_workspace_phi_3.yaml").read_text())
    obj["resource"]["labelSelector"]["matchLabels"].update(match)
    return dict(obj)


@pytest.mark.parametrize(
    "key",
    [
        "kubernetes.io/hostname",
        "node-restriction.kubernetes.io/team",
        "node-role.kubernetes.io/control-plane",
        "node.kubernetes.io/instance-type",
        "topology.k8s.io/zone",
        "kubernetes.azure.com/agentpool",
        "karpenter.sh/nodepool",
        "KUBERNETES.IO/hostname",
    ],
)
def test_reserved_selector_keys_refused(key: str) -> None:
    errors = validate_workspace(_ws(**{key: "x"}))
    assert any(
        e.path.startswith("resource.labelSelector.matchLabels[") and "reserved" in e.message for e in errors
    )


def test_reserved_expression_key_refused_and_plain_keys_pass() -> None:
    obj = _ws()
    obj["resource"]["labelSelector"]["matchExpressions"] = [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}
    ]
    assert [e.path for e in validate_workspace(obj)] == ["resource.labelSelector.matchExpressions[0].key"]
    assert validate_workspace(_ws(**{"example.com/team": "a", "mykubernetes.io/x": "b"})) == []
    assert reserved_domain("apps") is None and reserved_domain("notkubernetes.io/x") is None


def test_node_labels_in_reserved_domains_are_never_overwritten() -> None:
    node = {"kubernetes.io/hostname": "node-a", "apps": "old"}
    wanted = {"kubernetes.io/hostname": "victim", "apps": "phi", "kubernetes.io/new": "v"}
    assert protect_node_labels(node, wanted) == {"apps": "phi", "kubernetes.io/new": "v"}
    claim = {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodeClaim",
        "metadata": {"name": "ws1", "uid": "u1", "labels": {"kubernetes.io/hostname": "victim", "apps": "p"}},
        "spec": {},
    }
    node_obj = {"metadata": {"name": "n", "labels": {"kubernetes.io/hostname": "n"}}, "spec": {}}
    patch = registration_patch(claim, node_obj)
    assert patch is not None and "kubernetes.io/hostname" not in patch["metadata"]["labels"]


def test_tenant_message_keeps_reason_and_code_only() -> None:
    azure = (
        "creating the AKS agent pool failed: OperationNotAllowed: exceeding quota for subscription "
        "0000-1111 client 2222 object 3333"
    )
    out = tenant_message("NodeClaim", "ws1", "QuotaExceeded", azure)
    assert "QuotaExceeded" in out and "OperationNotAllowed" in out and "kubectl describe nodeclaim ws1" in out
    assert "0000-1111" not in out and "client" not in out
    assert tenant_message("NodeClaim", "ws1", "X", "quota and SKU pre-check failed: boom").count("boom") == 0
    assert tenant_message("NodeClaim", "ws1", "NodeNotReady", "Node not registered") == (
        "NodeClaim ws1: Node not registered"
    )


@pytest.mark.parametrize(
    ("path", "value"),
    [("metadata.name", "phi-3\n"), ("resource.instanceType", "Standard_NC12s_v3\n")],
)
def test_trailing_newline_fails_validation(path: str, value: str) -> None:
    obj = _ws()
    section, field = path.split(".")
    obj[section][field] = value
    assert any(e.path == path for e in validate_workspace(obj))


@pytest.mark.parametrize("strength", ["0.5\n", " 1", "1e0", "0_5", "0.5;id"])
def test_adapter_strength_is_a_plain_decimal(strength: str) -> None:
    obj = _ws()
    obj["inference"]["adapters"] = [{"source": {"name": "a", "image": "r.io/a:1"}, "strength": strength}]
    assert [e.path for e in validate_workspace(obj)] == ["inference.adapters[0].strength"]


def test_huge_preset_name_is_quoted_short() -> None:
    obj = _ws()
    obj["inference"]["preset"]["name"] = "p" * 200_000
    (error,) = validate_workspace(obj)
    assert error.path == "inference.preset.name" and len(error.message) < 300
