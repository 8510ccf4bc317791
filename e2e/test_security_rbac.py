"""RBAC is trimmed to what the code uses: after the other e2e tests have driven the sandbox (kaito-ctrl runs
as its own ServiceAccount with the shipped RBAC), the apiserver's audit log lists every request it made. Every
grant of manifests/rbac.yaml must be used by some request of the run, unless it is listed below with the
reason the e2e run cannot reach it; and nothing used may lack a grant.

Set KAITO_RBAC_TABLE=<file> to write the grant-by-grant table (docs/security.md shows it)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from e2e.conftest import Sandbox
from kaito_ctrl.testing import rbacaudit

REPO = Path(__file__).resolve().parents[1]

# (role, group, resource, verb): grants the quickstart e2e run need not exercise, each with the reason and the test
# that does exercise it. Every other grant must appear in the audit log.
C = "ClusterRole/kaito-ctrl"
NOT_REACHED_BY_E2E = {
    **{
        (C, "karpenter.sh", "machines", verb): "machine mode (test_quickstart_in_machine_and_byo_modes)"
        for verb in ("get", "list", "watch", "create", "patch", "delete")
    },
    (
        C,
        "karpenter.sh",
        "machines/status",
        "patch",
    ): "machine mode (test_quickstart_in_machine_and_byo_modes)",
    (C, "karpenter.sh", "machines/finalizers", "update"): "blockOwnerDeletion check of the OwnerReferences"
    "PermissionEnforcement admission plugin (an authorization check, not a request)",
    (C, "karpenter.sh", "nodeclaims/finalizers", "update"): "as machines/finalizers",
    (C, "kaito.sh", "workspaces/finalizers", "update"): "as machines/finalizers",
    (C, "karpenter.sh", "nodeclaims", "get"): "garbage collection re-reads a claim before deleting its pool",
    **{
        (
            C,
            "apps",
            "statefulsets",
            verb,
        ): "multi-node presets (test_multi_node_example_gets_one_pool_per_node)"
        for verb in ("get", "create", "patch", "delete")
    },
    (
        C,
        "apps",
        "deployments",
        "delete",
    ): "a preset moving between one and several nodes (unit: workload swap)",
    (C, "batch", "jobs", "get"): "ownership check after a Job name conflict (test_security_ownership.py)",
    (C, "apps", "controllerrevisions", "get"): "a revision a racing reconcile made first "
    "(tests/integration/test_workspace_revisions.py)",
    (C, "apps", "controllerrevisions", "delete"): "history beyond ten revisions is pruned "
    "(tests/integration/test_workspace_revisions.py)",
    (
        C,
        "batch",
        "jobs",
        "delete",
    ): "a tuning spec change replaces its Job (test_tuning_example_runs_a_job_to_success)",
    (C, "", "namespaces", "get"): "a Workspace breaking Pod Security baseline (test_pod_security.py)",
    (
        "Role/kaito-system/kaito-ctrl",
        "",
        "secrets",
        "update",
    ): "certificate rotation (test_rotation_keeps_the_apiserver_calling)",
}


def test_every_rbac_grant_is_used_by_the_run(sandbox: Sandbox) -> None:
    if sandbox.external:
        pytest.skip("the audit log of an external cluster is not readable here")
    log = Path(sandbox.env["KAITO_SANDBOX_DIR"]) / "controlplane" / "audit.log"
    assert log.exists(), "the sandbox runs its apiserver with an audit log (KAITO_SANDBOX_AUDIT=1)"
    events = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    used = rbacaudit.used_permissions(events)
    assert used, "the controller's ServiceAccount made requests"
    shipped = list(yaml.safe_load_all((REPO / "manifests/rbac.yaml").read_text()))
    grants = rbacaudit.grants(o for o in shipped if o)
    if os.environ.get("KAITO_RBAC_TABLE"):
        Path(os.environ["KAITO_RBAC_TABLE"]).write_text(rbacaudit.table(grants, used) + "\n")
    unused = [
        g
        for g in rbacaudit.unused_grants(grants, used)
        if (g.role, g.group, g.resource, g.verb) not in NOT_REACHED_BY_E2E
    ]
    assert not unused, "grants nothing used:\n" + "\n".join(map(str, unused))
    assert not rbacaudit.ungranted(grants, used), "requests without a grant"
