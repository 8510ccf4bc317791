"""Node updates reach the Workspace controller only when they change what it reads (labels, deletion, readiness,
GPUs): a heartbeat must not reconcile every BYO Workspace of the cluster."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from kaito_ctrl.controllers.workspace.setup import NODE_CHANGED_FOR_WORKSPACES
from kaito_ctrl.testing.gpunodes import GpuNodeSpec, gpu_node_manifest


def _node() -> dict[str, Any]:
    node = gpu_node_manifest(GpuNodeSpec("gpu-0", instance_type="Standard_NC6s_v3", gpus=1))
    node["metadata"]["resourceVersion"] = "10"
    node["status"]["conditions"] = [
        {"type": "Ready", "status": "True", "reason": "KubeletReady",
         "lastHeartbeatTime": "2026-12-04T09:00:00Z", "lastTransitionTime": "2026-12-04T08:00:00Z"},
        {"type": "MemoryPressure", "status": "False", "lastHeartbeatTime": "2026-12-04T09:00:00Z"},
    ]  # fmt: skip
    return node


def _heartbeat(n: dict[str, Any]) -> None:
    n["metadata"]["resourceVersion"] = "11"
    for c in n["status"]["conditions"]:
        c["lastHeartbeatTime"] = "2026-12-04T09:05:00Z"
    n["status"]["images"] = [{"names": ["r.io/kaito-base:0.5.0"], "sizeBytes": 1}]


def _not_ready(n: dict[str, Any]) -> None:
    n["status"]["conditions"][0].update(status="False", reason="KubeletNotReady")


def _labelled(n: dict[str, Any]) -> None:
    n["metadata"]["labels"]["apps"] = "phi-3"


def _no_gpus(n: dict[str, Any]) -> None:
    n["status"]["allocatable"]["nvidia.com/gpu"] = "0"
    n["status"]["capacity"]["nvidia.com/gpu"] = "0"


def _deleting(n: dict[str, Any]) -> None:
    n["metadata"]["deletionTimestamp"] = "2026-12-04T09:06:00Z"


@pytest.mark.parametrize(
    ("change", "passes"),
    [(_heartbeat, False), (_not_ready, True), (_labelled, True), (_no_gpus, True), (_deleting, True)],
)
def test_only_changes_the_controller_reads_pass(
    change: Callable[[dict[str, Any]], None], passes: bool
) -> None:
    old = _node()
    assert "nvidia.com/gpu" in old["status"]["allocatable"], "the fixture is a GPU node"
    new = copy.deepcopy(old)
    change(new)
    assert new != old
    assert NODE_CHANGED_FOR_WORKSPACES.update(old, new) is passes
    assert NODE_CHANGED_FOR_WORKSPACES.create(new) and NODE_CHANGED_FOR_WORKSPACES.delete(new)
