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

# (role, group, resource, verb): grants a nodeclaim-mode e2e run does not exercise, each with its reason.
NOT_REACHED_BY_E2E = {
    ("ClusterRole/kaito-ctrl", "karpenter.sh", "machines", "get"): "machine mode only",
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
