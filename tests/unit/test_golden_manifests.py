"""Golden files of everything the workspace controller renders, per node mode and for several presets.

A change to templates or rendering shows up as a diff of tests/golden/*.yaml; regenerate on purpose with
UPDATE_GOLDEN=1.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from kaito_ctrl.api.runtimes import default_runtime_annotation
from kaito_ctrl.controllers.workspace.nodes import BYONodes, KarpenterNodes, claim_manifest, node_object_name
from kaito_ctrl.controllers.workspace.spec import WorkspaceSpec
from kaito_ctrl.controllers.workspace.tuning import render_tuning
from kaito_ctrl.controllers.workspace.workload import render_inference, render_template_workload
from kaito_ctrl.kube.machines import NodeObjectAPI, NodeObjectKind

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
REGISTRY = "mcr.microsoft.com/aks/kaito"


def _ws(example: str, **changes: Any) -> WorkspaceSpec:
    obj = yaml.safe_load((EXAMPLES / example).read_text())
    obj["metadata"].update(namespace="team-a", uid="00000000-0000-0000-0000-000000000001")
    for path, value in changes.items():
        cur = obj
        keys = path.split("__")
        for k in keys[:-1]:
            cur = cur[k]
        cur[keys[-1]] = value
    # As the defaulting webhook stores it: the runtime follows the API version the file is written in.
    version = obj["apiVersion"].rpartition("/")[2]
    return WorkspaceSpec(
        default_runtime_annotation(obj, {"operation": "CREATE", "kind": {"version": version}})
    )


CASES = {
    "phi3-byo": ("inference/kaito_workspace_phi_3.yaml", {}, "byo", 1),
    "phi3-nodeclaim": ("inference/kaito_workspace_phi_3.yaml", {}, "nodeclaim", 1),
    "phi3-machine": ("inference/kaito_workspace_phi_3.yaml", {}, "machine", 1),
    "phi3-adapters-nodeclaim": ("inference/kaito_workspace_phi_3_with_adapters.yaml", {}, "nodeclaim", 1),
    "phi3-adapters-transformers-nodeclaim": (
        "inference/kaito_workspace_phi_3_with_adapters.yaml",
        {"metadata__annotations": {"kaito.sh/runtime": "transformers"}},
        "nodeclaim",
        1,
    ),
    "llama70b-multinode-nodeclaim": (
        "inference/kaito_workspace_llama_3_3_70b_multinode.yaml",
        {},
        "nodeclaim",
        3,
    ),
    "phi4-a100-byo": (
        "inference/kaito_workspace_phi_3_byo.yaml",
        {"inference__preset__name": "phi-4", "resource__instanceType": "Standard_NC24ads_A100_v4"},
        "byo",
        1,
    ),
    "tuning-phi3-nodeclaim": ("fine-tuning/kaito_workspace_tuning_phi_3.yaml", {}, "nodeclaim", 1),
}


def _render(case: str) -> list[dict[str, Any]]:
    example, changes, mode, nodes = CASES[case]
    ws = _ws(example, **changes)
    if mode == "byo":
        provisioner: Any = BYONodes(None)  # type: ignore[arg-type]
        node_objects: list[dict[str, Any]] = []
    else:
        api = NodeObjectAPI(None, mode)  # type: ignore[arg-type]
        provisioner = KarpenterNodes(api, None, None)  # type: ignore[arg-type]
        # The controller's own builder (nodes.py), as `kaito-ctrl render` uses it.
        kind: NodeObjectKind = "machine" if mode == "machine" else "nodeclaim"
        node_objects = [claim_manifest(kind, ws, node_object_name(ws, i)) for i in range(nodes)]
    reqs = provisioner.node_requirements(ws)
    if ws.tuning is not None:
        workload = render_tuning(ws, node_requirements=reqs, registry=REGISTRY)
    elif ws.preset is None:
        workload = render_template_workload(ws, node_requirements=reqs)
    else:
        workload = render_inference(ws, nodes=nodes, node_requirements=reqs, registry=REGISTRY)
    return node_objects + workload


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendered_manifests_match_golden(case: str) -> None:
    rendered = yaml.safe_dump_all(copy.deepcopy(_render(case)), sort_keys=True, width=120)
    path = GOLDEN / f"{case}.yaml"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(rendered)
    if not path.exists():
        # Never written on the fly: a test that creates its own expectation cannot fail.
        pytest.fail(f"missing golden file {path.name}; run with UPDATE_GOLDEN=1 and commit it")
    assert rendered == path.read_text(), f"{case} changed; if intended, regenerate with UPDATE_GOLDEN=1"
