"""`kaito-ctrl render` shows what the controllers really apply: its output equals the live objects a Workspace
got in the sandbox, and the apiserver accepts it in a server-side dry run."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from e2e.conftest import Sandbox, wait_for

NAME = "render-phi-3"


def workspace(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "kaito.sh/v1alpha1",
        "kind": "Workspace",
        "metadata": {"name": name},
        "resource": {"instanceType": "Standard_NC12s_v3", "labelSelector": {"matchLabels": {"apps": name}}},
        "inference": {"preset": {"name": "phi-3-mini-4k-instruct"}},
    }


def render(text: str, mode: str) -> list[dict[str, Any]]:
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "kaito_ctrl.cli.main",
            "render",
            "-f",
            "-",
            "--node-provisioner",
            mode,
            "-o",
            "json",
        ],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    return list(json.loads(res.stdout)["items"])


def covered(want: Any, live: Any, path: str = "") -> list[str]:
    """Where ``live`` differs from ``want`` (every field of want must be in live with the same value; live may
    carry more: defaults, status, server fields). An empty list or object is what the apiserver omits."""
    if want in ([], {}) and live is None:
        return []
    if isinstance(want, dict):
        if not isinstance(live, dict):
            return [f"{path}: want an object, live has {live!r}"]
        return [d for k, v in want.items() for d in covered(v, live.get(k), f"{path}.{k}")]
    if isinstance(want, list):
        if not isinstance(live, list) or len(live) != len(want):
            return [f"{path}: want {want!r}, live has {live!r}"]
        return [
            d
            for i, (w, lv) in enumerate(zip(want, live, strict=True))
            for d in covered(w, lv, f"{path}[{i}]")
        ]
    return [] if want == live else [f"{path}: want {want!r}, live has {live!r}"]


def test_render_equals_what_the_controller_applied(sandbox: Sandbox, e2e_namespace: str) -> None:
    if sandbox.external:
        pytest.skip("compares with the sandbox controller's mode")
    mode = sandbox.info["controller"]["node_provisioner"]
    sandbox.apply_json(e2e_namespace, workspace(NAME))

    def ready() -> bool:
        ws = sandbox.get_json("workspaces.v1beta1.kaito.sh", NAME, "-n", e2e_namespace)
        conds = {c["type"]: c["status"] for c in (ws.get("status") or {}).get("conditions") or []}
        return conds.get("InferenceReady") == "True"

    wait_for(ready, 180, f"{NAME} InferenceReady")
    # The controller reads v1beta1 (the storage version); render the object as it reads it.
    stored = sandbox.kubectl("get", "workspaces.v1beta1.kaito.sh", NAME, "-n", e2e_namespace, "-o", "json")
    objects = render(stored, mode)
    kinds = sorted(o["kind"] for o in objects)
    assert "Service" in kinds and ("Deployment" in kinds or "StatefulSet" in kinds)
    assert ("NodeClaim" in kinds) == (mode == "nodeclaim")
    problems = []
    for obj in objects:
        meta = obj["metadata"]
        where = ["-n", meta["namespace"]] if meta.get("namespace") else []
        resource = {"NodeClaim": "nodeclaims.karpenter.sh", "Machine": "machines.karpenter.sh"}.get(
            obj["kind"], obj["kind"].lower()
        )
        live = sandbox.get_json(resource, meta["name"], *where)
        problems += [f"{obj['kind']}/{meta['name']}{d}" for d in covered(obj, live)]
    assert not problems, "\n".join(problems)
    sandbox.kubectl("delete", "workspace", NAME, "-n", e2e_namespace, "--timeout=120s")


def test_render_output_passes_a_server_side_dry_run(sandbox: Sandbox, e2e_namespace: str) -> None:
    for mode in ("nodeclaim", "machine", "byo"):
        objects = render(json.dumps(workspace("dry-run-phi-3")), mode)
        for obj in objects:
            if obj["kind"] not in ("NodeClaim", "Machine"):  # cluster-scoped
                obj["metadata"]["namespace"] = e2e_namespace
        body = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
        out = sandbox.kubectl("apply", "--dry-run=server", "-f", "-", input=body, check=False)
        assert "error" not in out.lower() and out.count("(server dry run)") == len(objects), out
    assert "NotFound" in sandbox.kubectl(
        "get", "deployment", "dry-run-phi-3", "-n", e2e_namespace, check=False
    )
