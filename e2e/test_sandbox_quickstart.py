"""The sandbox driven as a user drives it: kubectl only.

What works end to end today: the install manifests applied with kubectl, kaito-ctrl running under its
ServiceAccount (not admin credentials) holding the leader Lease, the webhook refusing a wrong Workspace with a
message naming the field, and the seed's examples accepted with the seed's columns. Reconciling a Workspace to
ready needs the workspace controller (issue 5) and is added here when it lands.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from e2e.conftest import REPO, Sandbox, wait_for


def test_controller_runs_under_its_service_account_and_leads(sandbox: Sandbox) -> None:
    if sandbox.external:
        pytest.skip("checks the sandbox's local controller process")
    lease = sandbox.get_json("lease", "kaito-ctrl-leader", "-n", "kaito-system")
    assert lease["spec"]["holderIdentity"]
    # The controller's kubeconfig is a ServiceAccount token, and that account may not do what admin can.
    can = sandbox.kubectl(
        "auth",
        "can-i",
        "--as=system:serviceaccount:kaito-system:kaito-ctrl",
        "get",
        "secrets",
        "-A",
        check=False,
    )
    assert can.strip().startswith("no")
    can = sandbox.kubectl(
        "auth",
        "can-i",
        "--as=system:serviceaccount:kaito-system:kaito-ctrl",
        "update",
        "leases/kaito-ctrl-leader",
        "-n",
        "kaito-system",
    )
    assert can.strip() == "yes"
    # Leases and Secrets only by name: not another team's Lease, not the namespace's other Secrets.
    for what in ("update leases/other", "list secrets", "watch secrets", "get secrets/other"):
        verb, resource = what.split()
        can = sandbox.kubectl(
            "auth", "can-i", "--as=system:serviceaccount:kaito-system:kaito-ctrl", verb, resource,
            "-n", "kaito-system", check=False,
        )  # fmt: skip
        assert can.strip().startswith("no"), what


def test_seed_examples_are_accepted_with_the_seed_columns(sandbox: Sandbox, e2e_namespace: str) -> None:
    for example in (
        "inference/kaito_workspace_phi_3.yaml",
        "inference/kaito_workspace_phi_3_with_adapters.yaml",
        "fine-tuning/kaito_workspace_tuning_phi_3.yaml",
    ):
        path = REPO / "examples" / example

        def applied(p: Path = path) -> bool:
            out = sandbox.kubectl("apply", "-n", e2e_namespace, "-f", str(p), check=False)
            return "created" in out or "configured" in out or "unchanged" in out

        wait_for(applied, 60, f"{example} applied")
    header = (
        sandbox.kubectl("get", "workspaces.v1alpha1.kaito.sh", "-n", e2e_namespace).splitlines()[0].split()
    )
    assert header == ["NAME", "INSTANCE", "RESOURCEREADY", "INFERENCEREADY", "WORKSPACEREADY", "AGE"]
    adapters = sandbox.get_json("workspace", "workspace-phi-3-mini-adapter", "-n", e2e_namespace)
    assert adapters["inference"]["adapters"][0]["strength"] == "1.0"

    # And they run as they would on a cluster: the adapter workspace's placeholder image never pulls (the pod
    # reports InvalidImageName and so does the Workspace), the tuning Job runs to completion on its GPU node.
    def conditions(name: str) -> dict[str, str]:
        obj = sandbox.get_json("workspace", name, "-n", e2e_namespace)
        return {c["type"]: c["status"] for c in obj.get("status", {}).get("conditions", [])}

    def reason(name: str, type_: str) -> str:
        obj = sandbox.get_json("workspace", name, "-n", e2e_namespace)
        return next(
            (c.get("reason", "") for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_),
            "",
        )

    wait_for(
        lambda: reason("workspace-phi-3-mini-adapter", "InferenceReady") == "InvalidImageName",
        240,
        "the adapter workspace to name its placeholder image",
    )
    wait_for(
        lambda: conditions("workspace-tuning-phi-3-mini").get("WorkspaceSucceeded") == "True",
        240,
        "the tuning workspace succeeded",
    )
    assert conditions("workspace-tuning-phi-3-mini")["JobStarted"] == "True"


def test_wrong_workspace_is_refused_with_the_field_named(sandbox: Sandbox, e2e_namespace: str) -> None:
    ws = yaml.safe_load((REPO / "examples" / "fine-tuning" / "kaito_workspace_tuning_phi_3.yaml").read_text())
    ws["metadata"]["name"] = "ssrf"
    ws["tuning"]["input"]["urls"] = ["http://169.254.169.254/metadata/identity/oauth2/token"]

    def refused() -> str:
        out = sandbox.kubectl("apply", "-n", e2e_namespace, "-f", "-", input=json.dumps(ws), check=False)
        return out if "denied the request" in out else ""

    message = wait_for(refused, 60, "the webhook's refusal")
    assert "tuning.input.urls[0]" in message and "metadata" in message


def test_quickstart_phi3_becomes_ready_and_deletes_cleanly(sandbox: Sandbox, e2e_namespace: str) -> None:
    """The seed's quickstart: apply the Phi-3 Workspace, watch `kubectl get workspace` turn True True True."""
    path = REPO / "examples" / "inference" / "kaito_workspace_phi_3.yaml"
    wait_for(
        lambda: "created" in sandbox.kubectl("apply", "-n", e2e_namespace, "-f", str(path), check=False),
        60,
        "applied",
    )

    def row() -> list[str]:
        out = sandbox.kubectl(
            "get", "workspaces.v1alpha1.kaito.sh", "workspace-phi-3-mini", "-n", e2e_namespace, "--no-headers"
        )
        cols = out.split()
        return cols if cols[2:5] == ["True", "True", "True"] else []

    cols = wait_for(row, 180, "RESOURCEREADY, INFERENCEREADY and WORKSPACEREADY True")
    assert cols[1] == "Standard_NC6s_v3"
    svc = sandbox.kubectl("get", "svc", "workspace-phi-3-mini", "-n", e2e_namespace, "--no-headers")
    assert "80/TCP,29500/TCP" in svc
    claims: list[str] = []
    if not sandbox.external and sandbox.info["controller"]["node_provisioner"] == "nodeclaim":
        # The GPU node came from an AKS agent pool named after the Workspace's NodeClaim.
        selector = f"kaito.sh/workspace=workspace-phi-3-mini,kaito.sh/workspacenamespace={e2e_namespace}"
        items = sandbox.get_json("nodeclaims", "-l", selector)["items"]
        claims = [c["metadata"]["name"] for c in items]
        assert len(claims) == 1 and all(c["status"]["nodeName"] for c in items)
        assert claims[0] in {p["name"] for p in sandbox.fake_arm("/pools")}
    sandbox.kubectl("delete", "workspace", "workspace-phi-3-mini", "-n", e2e_namespace, "--timeout=120s")
    assert "NotFound" in sandbox.kubectl(
        "get", "workspace", "workspace-phi-3-mini", "-n", e2e_namespace, check=False
    )
    if claims:
        # Deleting the Workspace leaves no agent pool (and no GPU bill) behind.
        wait_for(
            lambda: claims[0] not in {p["name"] for p in sandbox.fake_arm("/pools")}, 120, "pool deleted"
        )


def test_quota_error_is_named_on_the_workspace_and_clears(sandbox: Sandbox, e2e_namespace: str) -> None:
    if sandbox.external or sandbox.info["controller"]["node_provisioner"] == "byo":
        pytest.skip("needs the sandbox's node provisioner and fake ARM server")
    ws = yaml.safe_load((REPO / "examples" / "inference" / "kaito_workspace_phi_3.yaml").read_text())
    ws["metadata"]["name"] = "quota-phi"
    ws["resource"]["labelSelector"]["matchLabels"] = {"apps": "quota-phi"}
    faults = sandbox.fake_arm("/faults", "POST", {"kind": "quota", "on": "create"})
    try:
        wait_for(
            lambda: (
                "created"
                in sandbox.kubectl("apply", "-n", e2e_namespace, "-f", "-", input=json.dumps(ws), check=False)
            ),
            60,
            "applied",
        )

        def quota_named() -> dict[str, str] | None:
            obj = sandbox.get_json("workspace", "quota-phi", "-n", e2e_namespace)
            for c in obj.get("status", {}).get("conditions", []):
                if c["type"] == "ResourceReady" and c.get("reason") == "QuotaExceeded":
                    return dict(c)
            return None

        c = wait_for(quota_named, 120, "ResourceReady reason QuotaExceeded")
        # Reason and Azure code for the tenant; Azure's full text only on the cluster-scoped NodeClaim.
        assert c["status"] == "False" and "Azure error code" in c["message"], c
        assert "exceeding approved" not in c["message"], c
    finally:
        for f in faults:
            sandbox.fake_arm(f"/faults/{f['id']}", "DELETE")

    def ready() -> bool:
        obj = sandbox.get_json("workspace", "quota-phi", "-n", e2e_namespace)
        return any(
            c["type"] == "ResourceReady" and c["status"] == "True"
            for c in obj.get("status", {}).get("conditions", [])
        )

    wait_for(ready, 180, "ResourceReady once the quota is there")
    sandbox.kubectl("delete", "workspace", "quota-phi", "-n", e2e_namespace, "--timeout=120s")
