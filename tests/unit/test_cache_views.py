"""The Pod view the Workspace controller caches (cacheview.pod_view) keeps every field its readers use: the
root cause, readiness, worker nodes and the workspace mapping come out the same from a full pod and from its
view, for each pod state the readers tell apart; and the view is a fraction of the pod."""

from __future__ import annotations

import copy
import tracemalloc
from typing import Any

import orjson
import pytest

from kaito_ctrl.controllers.workspace import rootcause
from kaito_ctrl.controllers.workspace.cacheview import interned, pod_view
from kaito_ctrl.controllers.workspace.setup import _pod_to_workspace
from kaito_ctrl.controllers.workspace.spec import WorkspaceSpec
from kaito_ctrl.controllers.workspace.tuning import render_tuning
from kaito_ctrl.controllers.workspace.workload import render_inference


def _inference_pod_spec() -> dict[str, Any]:
    ws = {
        "apiVersion": "kaito.sh/v1beta1", "kind": "Workspace",
        "metadata": {"name": "ws", "namespace": "ns", "uid": "u-1", "annotations": {"kaito.sh/runtime": "vllm"}},
        "resource": {"instanceType": "Standard_NC24ads_A100_v4", "labelSelector": {"matchLabels": {"a": "b"}}},
        "inference": {"preset": {"name": "phi-3-mini-4k-instruct"},
                      "adapters": [{"source": {"name": "ad-1", "image": "r.io/adapter:1"}}]},
    }  # fmt: skip
    objs = render_inference(WorkspaceSpec(ws), nodes=1, node_requirements=[], registry="r.io")
    return dict(next(o for o in objs if o["kind"] == "Deployment")["spec"]["template"])


def _tuning_pod_spec() -> dict[str, Any]:
    ws = {
        "apiVersion": "kaito.sh/v1beta1", "kind": "Workspace",
        "metadata": {"name": "tune", "namespace": "ns", "uid": "u-2"},
        "resource": {"instanceType": "Standard_NC24ads_A100_v4", "labelSelector": {"matchLabels": {"a": "b"}}},
        "tuning": {"preset": {"name": "phi-3-mini-4k-instruct"}, "method": "qlora",
                   "input": {"image": "r.io/data:1"}, "output": {"image": "r.io/out:1", "imagePushSecret": "p"}},
    }  # fmt: skip
    objs = render_tuning(WorkspaceSpec(ws), node_requirements=[], registry="r.io")
    return dict(next(o for o in objs if o["kind"] == "Job")["spec"]["template"])


def _pod(template: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    meta = template["metadata"]
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": "ws-0", "namespace": "ns", "uid": "p-1", "resourceVersion": "42", "generateName": "ws-",
            "labels": meta.get("labels") or {}, "annotations": meta.get("annotations") or {},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "ws-abc", "uid": "r-1",
                                 "controller": True}],
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update"}],
        },
        "spec": {**template["spec"], "nodeName": "gpu-0", "schedulerName": "default-scheduler"},
        "status": status,
    }  # fmt: skip


def _cs(name: str, **state: Any) -> dict[str, Any]:
    return {
        "name": name, "image": "img", "imageID": "sha256:x", "containerID": "containerd://y", "ready": False,
        "started": False, "restartCount": 3, "volumeMounts": [{"name": "v", "mountPath": "/v"}],
        "resources": {"limits": {"nvidia.com/gpu": "1"}}, "user": {"linux": {"uid": 0, "gid": 0}}, **state,
    }  # fmt: skip


READY = {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
STATES: dict[str, dict[str, Any]] = {
    "ready": {"phase": "Running", "conditions": [READY], "podIP": "10.0.0.1", "hostIP": "10.1.0.1",
              "containerStatuses": [_cs("ws", ready=True, state={"running": {"startedAt": "t"}})]},
    "evicted": {"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory."},
    "unschedulable": {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes: GPU"}]},
    "oom": {"phase": "Running", "containerStatuses": [
        _cs("ws", state={"running": {}}, lastState={"terminated": {"reason": "OOMKilled", "exitCode": 137}})]},
    "crashloop": {"phase": "Running", "containerStatuses": [
        _cs("ws", state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
            lastState={"terminated": {"exitCode": 1, "message": "CUDA out of memory"}})]},
    "bad-image": {"phase": "Pending", "containerStatuses": [
        _cs("ws", state={"waiting": {"reason": "InvalidImageName", "message": "couldn't parse"}})]},
}  # fmt: skip


def _puller_failing(template: dict[str, Any]) -> dict[str, Any]:
    pullers = [c["name"] for c in template["spec"].get("initContainers") or [] if rootcause.puller_image(c)]
    assert pullers, "the rendered pod has a puller init container"
    return {"phase": "Pending", "initContainerStatuses": [
        _cs(pullers[0], state={"waiting": {"reason": "CrashLoopBackOff"}},
            lastState={"terminated": {"exitCode": 1, "message": "manifest unknown"}})]}  # fmt: skip


def _readers(pod: dict[str, Any]) -> tuple[Any, ...]:
    return (
        rootcause.pod_problem(pod),
        rootcause.pod_ready(pod),
        (pod.get("spec") or {}).get("nodeName"),
        bool(pod["metadata"].get("deletionTimestamp")),
        _pod_to_workspace(pod),
        rootcause.pods_root_cause([pod]),
    )


@pytest.mark.parametrize("state", [*STATES, "puller-failing", "deleting"])
@pytest.mark.parametrize("kind", ["inference", "tuning"])
def test_readers_see_the_same_pod_through_the_view(kind: str, state: str) -> None:
    template = _inference_pod_spec() if kind == "inference" else _tuning_pod_spec()
    if state == "puller-failing":
        status = _puller_failing(template)
    else:
        status = copy.deepcopy(STATES.get(state, STATES["ready"]))
    pod = _pod(template, status)
    if state == "deleting":
        pod["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    full = _readers(pod)
    assert full == _readers(pod_view(copy.deepcopy(pod)))
    if state not in ("ready", "deleting"):
        assert full[0] is not None, "each state other than ready is a problem the readers name"


def _held(keep: Any, raw: list[bytes]) -> int:
    """Bytes of Python objects held by ``keep`` applied to each pod as a watch event delivers it."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        held = [keep(orjson.loads(r)) for r in raw]
        size = tracemalloc.get_traced_memory()[0] - before
        assert len(held) == len(raw)
        return size
    finally:
        tracemalloc.stop()


def test_the_view_is_a_fraction_of_the_pod_and_shares_the_puller_script() -> None:
    template = _inference_pod_spec()
    raw = [orjson.dumps(_pod(template, copy.deepcopy(STATES["ready"]))) for _ in range(50)]
    full, view = _held(lambda p: p, raw), _held(pod_view, raw)
    assert view * 3 < full, (view, full)
    # Parsed separately (as two watch events are), the views share one copy of the puller's script.
    a, b = (pod_view(orjson.loads(r)) for r in raw[:2])
    script_a, script_b = (v["spec"]["initContainers"][0]["command"][2] for v in (a, b))
    assert script_a == script_b and script_a is script_b
    assert "managedFields" not in a["metadata"]


def test_cached_workloads_are_whole_with_their_strings_shared() -> None:
    template = _inference_pod_spec()
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "ws", "namespace": "ns", "managedFields": [{"manager": "kaito-ctrl"}]},
        "spec": {"replicas": 1, "template": template},
    }  # fmt: skip
    raw = [orjson.dumps(deployment) for _ in range(50)]
    a, b = (interned(orjson.loads(r)) for r in raw[:2])
    assert a == {k: v for k, v in deployment.items()} | {"metadata": {"name": "ws", "namespace": "ns"}}
    command_a = a["spec"]["template"]["spec"]["containers"][0]["command"]
    command_b = b["spec"]["template"]["spec"]["containers"][0]["command"]
    assert all(x is y for x, y in zip(command_a, command_b, strict=True))
    assert _held(interned, raw) * 4 < _held(lambda p: p, raw) * 3, "at least a quarter saved"
