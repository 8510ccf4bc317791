"""kaito-ctrl with the real Karpenter as its node provisioner (``sandbox up --node-provisioner karpenter``):
kaito-ctrl only creates NodeClaims; the genuine Karpenter binary (its kwok provider) launches, registers
and initializes the nodes. Driven as a user would, with kubectl, in a sandbox of its own."""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.conftest import REPO, Sandbox, start_sandbox, wait_for
from kaito_ctrl.sandbox.karpenter import WITHHELD_SKU

LIFECYCLE = ("Launched", "Registered", "Initialized", "Ready")


def _example_file(name: str) -> Path:
    """An inference example under examples/inference/ (where the seed's commands look)."""
    return REPO / "examples" / "inference" / name


def _example(file: str, name: str | None = None) -> dict[str, Any]:
    ws: dict[str, Any] = yaml.safe_load(_example_file(file).read_text())
    if name:
        ws["metadata"]["name"] = name
        ws["resource"]["labelSelector"]["matchLabels"] = {"apps": name}
    return ws


@pytest.fixture(scope="module")
def karpenter_sandbox() -> Iterator[Sandbox]:
    if os.environ.get("KAITO_E2E_KUBECONFIG"):
        pytest.skip("starts a sandbox of its own with the real Karpenter")
    with tempfile.TemporaryDirectory(prefix="kaito-e2e-karpenter-") as tmp:
        sb, stop = start_sandbox(Path(tmp), "karpenter", replicas=1)
        try:
            yield sb
        finally:
            stop()


@pytest.fixture
def namespace(karpenter_sandbox: Sandbox) -> Iterator[str]:
    name = f"e2e-k-{os.urandom(3).hex()}"
    karpenter_sandbox.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        karpenter_sandbox.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _claims(sb: Sandbox, ws: str, namespace: str) -> list[dict[str, Any]]:
    selector = f"kaito.sh/workspace={ws},kaito.sh/workspacenamespace={namespace}"
    return list(sb.get_json("nodeclaims", "-l", selector)["items"])


def _nodes(sb: Sandbox, ws: str, namespace: str) -> list[dict[str, Any]]:
    selector = f"kaito.sh/workspace={ws},kaito.sh/workspacenamespace={namespace}"
    return list(sb.get_json("nodes", "-l", selector)["items"])


def _conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def _ready(sb: Sandbox, name: str, namespace: str) -> bool:
    conds = _conditions(sb.get_json("workspace", name, "-n", namespace))
    return all(
        conds.get(t, {}).get("status") == "True"
        for t in ("ResourceReady", "InferenceReady", "WorkspaceReady")
    )


def _delete_and_expect_nothing_left(sb: Sandbox, name: str, namespace: str) -> None:
    sb.kubectl("delete", "workspace", name, "-n", namespace, "--timeout=120s")
    wait_for(
        lambda: not _claims(sb, name, namespace) and not _nodes(sb, name, namespace),
        120,
        "no NodeClaim and no Node left for the workspace",
    )


def _assert_launched_by_karpenter(sb: Sandbox, claims: list[dict[str, Any]]) -> None:
    for claim in claims:
        conds = _conditions(claim)
        # Conditions as the real Karpenter writes them, with its reasons.
        assert {t: (conds[t]["status"], conds[t]["reason"]) for t in LIFECYCLE} == {
            t: ("True", t) for t in LIFECYCLE
        }, conds
        assert claim["metadata"]["finalizers"] == ["karpenter.sh/termination"]
        node = sb.get_json("node", claim["status"]["nodeName"])
        # kwok:// provider IDs and Karpenter's registration labels: only Karpenter's kwok provider makes these.
        assert node["spec"]["providerID"] == claim["status"]["providerID"]
        assert node["spec"]["providerID"].startswith("kwok://")
        labels = node["metadata"]["labels"]
        assert labels["karpenter.sh/registered"] == labels["karpenter.sh/initialized"] == "true"
        assert labels["karpenter.sh/nodepool"] == "kaito"
        assert int(node["status"]["allocatable"]["nvidia.com/gpu"]) >= 1
        assert {"key": "sku", "value": "gpu", "effect": "NoSchedule"} in node["spec"]["taints"]


def test_seed_example_ready_on_nodes_launched_by_karpenter_and_deleted_cleanly(
    karpenter_sandbox: Sandbox, namespace: str
) -> None:
    sb = karpenter_sandbox
    assert sb.info["karpenter"]["versions"]["karpenter"].startswith("v")
    ws = _example("kaito_workspace_phi_3.yaml")
    name = ws["metadata"]["name"]
    sb.apply_json(namespace, ws)
    wait_for(lambda: _ready(sb, name, namespace), 120, "the seed's example ready")
    claims = _claims(sb, name, namespace)
    assert len(claims) == 1
    assert claims[0]["spec"]["nodeClassRef"] == {
        "group": "karpenter.kwok.sh",
        "kind": "KWOKNodeClass",
        "name": "default",
    }
    _assert_launched_by_karpenter(sb, claims)
    conds = _conditions(sb.get_json("workspace", name, "-n", namespace))
    assert conds["NodeClaimReady"]["status"] == "True"
    # The seed's example came through v1alpha1: the seed's Kaito's reason (v0.3.2 workspace_controller.go).
    assert conds["NodeClaimReady"]["reason"] == "installNodePluginsSuccess"
    _delete_and_expect_nothing_left(sb, name, namespace)


def test_multi_node_example_gets_one_claim_per_node(karpenter_sandbox: Sandbox, namespace: str) -> None:
    sb = karpenter_sandbox
    sb.kubectl("create", "secret", "generic", "hf-token", "-n", namespace, "--from-literal=token=hf_x")
    ws = _example("kaito_workspace_llama_3_3_70b_multinode.yaml")
    name = ws["metadata"]["name"]
    sb.apply_json(namespace, ws)
    wait_for(lambda: _ready(sb, name, namespace), 180, "the multi-node example ready")
    target = int(sb.get_json("workspace", name, "-n", namespace)["status"]["targetNodeCount"])
    claims = _claims(sb, name, namespace)
    assert target >= 2 and len(claims) == target
    assert len({c["status"]["nodeName"] for c in claims}) == target, "one node per claim"
    _assert_launched_by_karpenter(sb, claims)
    _delete_and_expect_nothing_left(sb, name, namespace)


def test_claim_karpenter_cannot_satisfy_shows_karpenters_reason(
    karpenter_sandbox: Sandbox, namespace: str
) -> None:
    sb = karpenter_sandbox
    ws = _example("kaito_workspace_phi_3.yaml", "no-such-capacity")
    ws["resource"]["instanceType"] = WITHHELD_SKU  # in kaito-ctrl's catalogue, not in Karpenter's offer
    sb.apply_json(namespace, ws)

    def karpenter_reason() -> dict[str, Any] | None:
        conds = _conditions(sb.get_json("workspace", "no-such-capacity", "-n", namespace))
        claim_cond = conds.get("NodeClaimReady", {})
        return claim_cond if claim_cond.get("reason") == "LaunchFailed" else None

    cond = wait_for(karpenter_reason, 60, "Karpenter's LaunchFailed on the Workspace")
    assert cond["status"] == "False"
    assert "instance type not found" in cond["message"] and WITHHELD_SKU in cond["message"]
    conds = _conditions(sb.get_json("workspace", "no-such-capacity", "-n", namespace))
    assert conds["ResourceReady"]["status"] == "False"
    assert "instance type not found" in conds["ResourceReady"]["message"]
    _delete_and_expect_nothing_left(sb, "no-such-capacity", namespace)


def test_sigkill_of_kaito_ctrl_during_provisioning_converges_with_exactly_the_claims_needed(
    karpenter_sandbox: Sandbox, namespace: str
) -> None:
    sb = karpenter_sandbox
    sb.apply_json(namespace, _example("kaito_workspace_phi_3.yaml", "kill-phi"))
    wait_for(lambda: _claims(sb, "kill-phi", namespace), 60, "kaito-ctrl's NodeClaim")
    before = {r["replica"]: r["pid"] for r in sb.current_info()["controllers"]}
    for pid in before.values():
        os.kill(pid, signal.SIGKILL)

    def restarted() -> bool:
        return all(r["pid"] != before[r["replica"]] for r in sb.current_info()["controllers"])

    wait_for(restarted, 120, "the supervisor to restart kaito-ctrl")
    wait_for(lambda: _ready(sb, "kill-phi", namespace), 120, "the workspace ready after the restart")
    claims = _claims(sb, "kill-phi", namespace)
    assert len(claims) == 1, [c["metadata"]["name"] for c in claims]
    assert len(_nodes(sb, "kill-phi", namespace)) == 1
    _assert_launched_by_karpenter(sb, claims)
    _delete_and_expect_nothing_left(sb, "kill-phi", namespace)
