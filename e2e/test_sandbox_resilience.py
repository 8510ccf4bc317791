"""The sandbox under failure, driven as an operator would: kaito-ctrl SIGKILLed in the middle of provisioning
(the supervisor restarts it, as a kubelet would), the leader of two replicas killed, and the other node
provisioner modes (Machine, BYO) each in a sandbox of their own."""

from __future__ import annotations

import os
import re
import signal
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.conftest import REPO, Sandbox, start_sandbox, wait_for

LEADER = re.compile(r'^leader_election_master_status\{name="kaito-ctrl-leader"\} 1\.0$', re.MULTILINE)


def _example(name: str) -> dict[str, Any]:
    ws: dict[str, Any] = yaml.safe_load(
        (REPO / "examples" / "inference" / "kaito_workspace_phi_3.yaml").read_text()
    )
    ws["metadata"]["name"] = name
    ws["resource"]["labelSelector"]["matchLabels"] = {"apps": name}
    return ws


def _ready_columns(sandbox: Sandbox, name: str, namespace: str) -> list[str]:
    out = sandbox.kubectl(
        "get", "workspaces.v1alpha1.kaito.sh", name, "-n", namespace, "--no-headers", check=False
    )
    cols = out.split()
    return cols if cols[2:5] == ["True", "True", "True"] else []


def _is_leader(replica: dict[str, Any]) -> bool:
    try:
        with urllib.request.urlopen(replica["metrics"], timeout=2) as r:
            return bool(LEADER.search(r.read().decode()))
    except OSError:
        return False


def _claims(sandbox: Sandbox, ws: str, namespace: str, kind: str = "nodeclaims") -> list[dict[str, Any]]:
    selector = f"kaito.sh/workspace={ws},kaito.sh/workspacenamespace={namespace}"
    return list(sandbox.get_json(kind, "-l", selector)["items"])


def _pool(sandbox: Sandbox, name: str) -> dict[str, Any] | None:
    return next((p for p in sandbox.fake_arm("/pools") if p["name"] == name), None)


def test_kill_during_provisioning_then_restart_converges_with_one_pool(
    sandbox: Sandbox, e2e_namespace: str
) -> None:
    if sandbox.external or sandbox.info["controller"]["node_provisioner"] != "nodeclaim":
        pytest.skip("needs the sandbox in nodeclaim mode")
    sandbox.apply_json(e2e_namespace, _example("restart-phi"))
    claim = wait_for(lambda: _claims(sandbox, "restart-phi", e2e_namespace), 60, "a NodeClaim")[0]
    name = claim["metadata"]["name"]

    def creating() -> bool:
        pool = _pool(sandbox, name)
        return bool(pool and pool["properties"]["provisioningState"] == "Creating")

    wait_for(creating, 60, "the agent pool being created")
    before = {r["replica"]: r["pid"] for r in sandbox.current_info()["controllers"]}
    for pid in before.values():
        os.kill(pid, signal.SIGKILL)

    def restarted() -> bool:
        now = sandbox.current_info()["controllers"]
        return all(r["pid"] != before[r["replica"]] for r in now)

    wait_for(restarted, 120, "the supervisor to restart every replica")
    wait_for(
        lambda: _ready_columns(sandbox, "restart-phi", e2e_namespace),
        180,
        "the workspace ready after restart",
    )
    pools = [p for p in sandbox.fake_arm("/pools") if p["name"] == name]
    assert len(pools) == 1 and pools[0]["properties"]["provisioningState"] == "Succeeded"
    assert len(_claims(sandbox, "restart-phi", e2e_namespace)) == 1, "no second claim either"
    sandbox.kubectl("delete", "workspace", "restart-phi", "-n", e2e_namespace, "--timeout=120s")
    wait_for(lambda: _pool(sandbox, name) is None, 120, "the pool deleted with the workspace")


def test_leader_killed_the_other_replica_takes_over(sandbox: Sandbox, e2e_namespace: str) -> None:
    if sandbox.external:
        pytest.skip("kills the sandbox's local replicas")
    replicas = sandbox.current_info()["controllers"]
    if len(replicas) < 2:
        pytest.skip("needs two replicas")
    leader = wait_for(lambda: next((r for r in replicas if _is_leader(r)), None), 60, "a leader")
    t0 = time.monotonic()
    os.kill(leader["pid"], signal.SIGKILL)

    def new_leader() -> dict[str, Any] | None:
        now = sandbox.current_info()["controllers"]
        return next((r for r in now if r["pid"] != leader["pid"] and _is_leader(r)), None)

    successor = wait_for(new_leader, 90, "another replica to take the lease", interval=0.2)
    takeover = time.monotonic() - t0
    print(f"leader takeover after SIGKILL: {takeover:.1f} s (lease duration 15 s)")
    assert takeover < 60
    lease = sandbox.get_json("lease", "kaito-ctrl-leader", "-n", "kaito-system")
    assert lease["spec"]["holderIdentity"] and int(lease["spec"].get("leaseTransitions", 0)) >= 1
    # The new leader reconciles: a fresh workspace becomes ready.
    sandbox.apply_json(e2e_namespace, _example("failover-phi"))
    wait_for(
        lambda: _ready_columns(sandbox, "failover-phi", e2e_namespace), 180, "ready under the new leader"
    )
    assert successor["replica"] in (0, 1)
    sandbox.kubectl("delete", "workspace", "failover-phi", "-n", e2e_namespace, "--timeout=120s")


@pytest.fixture(scope="module", params=["machine", "byo"])
def other_mode_sandbox(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    if os.environ.get("KAITO_E2E_KUBECONFIG"):
        pytest.skip("starts sandboxes of its own")
    with tempfile.TemporaryDirectory(prefix=f"kaito-e2e-{request.param}-") as tmp:
        sb, stop = start_sandbox(Path(tmp), request.param)
        try:
            yield sb
        finally:
            stop()


def test_quickstart_in_machine_and_byo_modes(other_mode_sandbox: Sandbox) -> None:
    sb = other_mode_sandbox
    mode = sb.info["controller"]["node_provisioner"]
    sb.kubectl("create", "namespace", "quick")
    path = REPO / "examples" / "inference" / "kaito_workspace_phi_3.yaml"
    sb.apply_json("quick", yaml.safe_load(path.read_text()))
    cols = wait_for(lambda: _ready_columns(sb, "workspace-phi-3-mini", "quick"), 180, f"ready in {mode} mode")
    assert cols[1] == "Standard_NC6s_v3"
    if mode == "machine":
        machines = _claims(sb, "workspace-phi-3-mini", "quick", "machines")
        assert len(machines) == 1
        conditions = {c["type"]: c["status"] for c in machines[0]["status"]["conditions"]}
        assert (
            conditions["MachineLaunched"] == conditions["MachineInitialized"] == conditions["Ready"] == "True"
        )
        assert _pool(sb, machines[0]["metadata"]["name"]) is not None
    else:
        assert sb.get_json("nodeclaims")["items"] == [] and sb.get_json("machines")["items"] == []
    if mode == "byo":
        # The BYO example: no instance type, the pre-made GPU nodes labelled apps=phi-3 are used as they are.
        sb.apply_json(
            "quick",
            yaml.safe_load((REPO / "examples" / "inference" / "kaito_workspace_phi_3_byo.yaml").read_text()),
        )

        # No instance type, so kubectl's INSTANCE column is empty: read the conditions instead.
        def byo_ready() -> bool:
            obj = sb.get_json("workspace", "workspace-phi-3-byo", "-n", "quick")
            status = {c["type"]: c["status"] for c in obj.get("status", {}).get("conditions", [])}
            return (
                status.get("ResourceReady")
                == status.get("InferenceReady")
                == status.get("WorkspaceReady")
                == "True"
            )

        wait_for(byo_ready, 180, "the BYO example ready")
        sb.kubectl("delete", "workspace", "workspace-phi-3-byo", "-n", "quick", "--timeout=120s")
    sb.kubectl("delete", "workspace", "workspace-phi-3-mini", "-n", "quick", "--timeout=120s")
    if mode == "machine":
        wait_for(lambda: _pool(sb, machines[0]["metadata"]["name"]) is None, 120, "the pool deleted")


def test_multi_node_example_gets_one_pool_per_node(sandbox: Sandbox, e2e_namespace: str) -> None:
    if sandbox.external or sandbox.info["controller"]["node_provisioner"] != "nodeclaim":
        pytest.skip("needs the sandbox in nodeclaim mode")
    # The example names a model-access Secret, as a user would create it.
    sandbox.kubectl(
        "create", "secret", "generic", "hf-token", "-n", e2e_namespace, "--from-literal=token=hf_x"
    )
    ws = yaml.safe_load(
        (REPO / "examples" / "inference" / "kaito_workspace_llama_3_3_70b_multinode.yaml").read_text()
    )
    sandbox.apply_json(e2e_namespace, ws)
    name = ws["metadata"]["name"]
    wait_for(lambda: _ready_columns(sandbox, name, e2e_namespace), 240, "the multi-node workspace ready")
    obj = sandbox.get_json("workspace", name, "-n", e2e_namespace)
    target = int(obj["status"]["targetNodeCount"])
    claims = _claims(sandbox, name, e2e_namespace)
    assert target >= 2 and len(claims) == target, (target, [c["metadata"]["name"] for c in claims])
    pools = {p["name"]: p for p in sandbox.fake_arm("/pools")}
    assert all(
        pools[c["metadata"]["name"]]["properties"]["vmSize"] == "Standard_NC24ads_A100_v4" for c in claims
    )
    sts = sandbox.get_json("statefulset", name, "-n", e2e_namespace)
    assert sts["spec"]["replicas"] == target
    sandbox.kubectl("delete", "workspace", name, "-n", e2e_namespace, "--timeout=180s")
    wait_for(
        lambda: (
            not any(c["metadata"]["name"] in {p["name"] for p in sandbox.fake_arm("/pools")} for c in claims)
        ),
        180,
        "every pool deleted",
    )
