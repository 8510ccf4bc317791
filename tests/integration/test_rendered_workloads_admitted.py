"""The real apiserver admits every shape of inference workload the renderer produces: both runtimes, the
seed-era images, one node and several (exec probes, POD_INDEX), adapters (pullers, projected pull secrets,
volume adapters) and the inference config (server-side dry run, so nothing is created)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kaito_ctrl.controllers.workspace.spec import WorkspaceSpec
from kaito_ctrl.controllers.workspace.workload import render_inference
from kaito_ctrl.testing.controlplane import ControlPlane

ADAPTERS = [
    {"source": {"name": "a1", "image": "r.io/a:1", "imagePullSecrets": ["pull"]}, "strength": "0.5"},
    {"source": {"name": "a2", "volumeSource": {"emptyDir": {}}}},
]

CASES = [
    ("phi-4", "Standard_NC24ads_A100_v4", "vllm", 1),
    ("llama-3.3-70b-instruct", "Standard_NC96ads_A100_v4", "vllm", 2),
    ("phi-4", "Standard_NC48ads_A100_v4", "transformers", 1),
    ("phi-3-mini-4k-instruct", "Standard_NC12s_v3", "transformers", 1),
    ("llama-2-13b-chat", "Standard_NC12s_v3", "transformers", 2),
]


@pytest.mark.parametrize(("preset", "instance_type", "runtime", "nodes"), CASES)
def test_rendered_workload_passes_server_side_dry_run(
    control_plane: ControlPlane, namespace: str, preset: str, instance_type: str, runtime: str, nodes: int
) -> None:
    ws = WorkspaceSpec(
        {"metadata": {"name": "w", "namespace": namespace, "uid": "00000000-0000-0000-0000-000000000001",
                      "annotations": {"kaito.sh/runtime": runtime}},
         "resource": {"instanceType": instance_type},
         "inference": {"preset": {"name": preset, "presetOptions": {"modelAccessSecret": "hf"}},
                       "adapters": ADAPTERS, "config": "cfg"}}
    )  # fmt: skip
    objects: list[dict[str, Any]] = render_inference(
        ws,
        nodes=nodes,
        node_requirements=[{"key": "apps", "operator": "In", "values": ["x"]}],
        registry="r.io",
    )
    body = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    out = control_plane.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=body, check=False
    )
    assert out.count("(server dry run)") == len(objects), out
