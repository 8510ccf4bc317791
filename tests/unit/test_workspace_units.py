"""Units of the workspace controller: root causes from pod states, rendering, node naming."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kaito_ctrl.controllers.workspace.inference_pod import adapter_pieces
from kaito_ctrl.controllers.workspace.nodes import node_object_name
from kaito_ctrl.controllers.workspace.rootcause import pod_problem, pods_root_cause
from kaito_ctrl.controllers.workspace.spec import WorkspaceSpec
from kaito_ctrl.controllers.workspace.workload import render_inference
from kaito_ctrl.kube.store import Store
from tests.cases.invalid_workspaces import inference_ws


def _pod(name: str = "p", **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": status}


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (
            {
                "containerStatuses": [
                    {"name": "m", "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}}}
                ]
            },
            "ContainerCrashLoopBackOff",
        ),
        (
            {"containerStatuses": [{"name": "m", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]},
            "ImagePullError",
        ),
        (
            {"containerStatuses": [{"name": "m", "state": {"waiting": {"reason": "ErrImagePull"}}}]},
            "ImagePullError",
        ),
        (
            {
                "containerStatuses": [
                    {
                        "name": "m",
                        "state": {"running": {}},
                        "lastState": {"terminated": {"reason": "OOMKilled"}},
                    }
                ]
            },
            "ContainerOOMKilled",
        ),
        (
            {
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": "0/3 nodes: Insufficient nvidia.com/gpu",
                    }
                ]
            },
            "Unschedulable",
        ),
        ({"reason": "Evicted", "message": "The node was low on resource: memory."}, "PodEvicted"),
        (
            {
                "initContainerStatuses": [
                    {"name": "adapter-a", "state": {"waiting": {"reason": "ErrImagePull"}}}
                ]
            },
            "ImagePullError",
        ),
    ],
)
def test_pod_states_become_stable_reasons_with_the_message(status: dict[str, Any], reason: str) -> None:
    problem = pod_problem(_pod(**status))
    assert problem is not None and problem[0] == reason
    assert "pod p" in problem[1]


def test_starting_pods_are_not_a_problem() -> None:
    assert (
        pod_problem(
            _pod(containerStatuses=[{"name": "m", "state": {"waiting": {"reason": "ContainerCreating"}}}])
        )
        is None
    )
    assert pods_root_cause([_pod("a"), _pod("b", reason="Evicted")]) == ("PodEvicted", "pod b was evicted:")


def test_render_single_node_deployment_and_seed_service() -> None:
    ws = WorkspaceSpec({**inference_ws("w"), "metadata": {"name": "w", "namespace": "ns", "uid": "u"}})
    objs = render_inference(
        ws,
        nodes=1,
        node_requirements=[{"key": "apps", "operator": "In", "values": ["phi-3"]}],
        registry="mcr.microsoft.com/aks/kaito",
    )
    kinds = [o["kind"] for o in objs]
    assert kinds == ["Service", "Deployment"]
    svc, dep = objs
    # No runtime annotation: vLLM on the base image, with Kaito v0.12's Service ports (http, ray, dashboard, and
    # the KV-cache events on a ClusterIP Service only).
    assert [(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [
        ("http", 80, 5000),
        ("ray", 6379, 6379),
        ("dashboard", 8265, 8265),
        ("kv-events", 5557, 5557),
    ]
    assert svc["metadata"]["ownerReferences"][0]["uid"] == "u"
    lb = WorkspaceSpec(copy.deepcopy(ws.obj))
    lb.obj["metadata"]["annotations"] = {"kaito.sh/enablelb": "True"}
    public = render_inference(lb, nodes=1, node_requirements=[], registry="r")[0]
    assert public["spec"]["type"] == "LoadBalancer"
    assert "kv-events" not in [p["name"] for p in public["spec"]["ports"]], (
        "never published on a LoadBalancer"
    )
    pod = dep["spec"]["template"]["spec"]
    # No runtime annotation (not through the webhook): the preset's default, vLLM, on the base image.
    assert pod["containers"][0]["image"] == "mcr.microsoft.com/aks/kaito/kaito-base:0.5.0"
    assert pod["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    seed = {"name": "w", "namespace": "ns", "uid": "u", "annotations": {"kaito.sh/runtime": "transformers"}}
    seed_objs = render_inference(
        WorkspaceSpec({**inference_ws("w"), "metadata": seed}), nodes=1, node_requirements=[],
        registry="mcr.microsoft.com/aks/kaito",
    )  # fmt: skip
    # The seed's API (transformers, the seed-era image): the seed era's Service, http and torch.
    assert [(p["port"], p["targetPort"]) for p in seed_objs[0]["spec"]["ports"]] == [
        (80, 5000),
        (29500, 29500),
    ]
    tfs = seed_objs[1]["spec"]["template"]
    assert (
        tfs["spec"]["containers"][0]["image"]
        == "mcr.microsoft.com/aks/kaito/kaito-phi-3-mini-4k-instruct:0.0.2"
    )
    assert tfs["metadata"]["annotations"]["kaito.sh/runtime"] == "transformers"
    assert {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["volumes"][0] == {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}}
    assert pod["automountServiceAccountToken"] is False
    seed = WorkspaceSpec(
        {**inference_ws("w"), "metadata": {"name": "w", "namespace": "ns", "uid": "u",
                                           "annotations": {"kaito.sh/runtime": "transformers"}}}
    )  # fmt: skip
    seed_pod = render_inference(seed, nodes=1, node_requirements=[], registry="r.io")[1]["spec"]["template"][
        "spec"
    ]
    assert seed_pod["containers"][0]["image"] == "r.io/kaito-phi-3-mini-4k-instruct:0.0.2"
    assert seed_pod["containers"][0]["command"][2].startswith("accelerate launch ")
    assert seed_pod["containers"][0]["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_render_multi_node_statefulset_with_headless_service_and_adapters_roll_pods() -> None:
    base = inference_ws("big")
    base["metadata"] = {"name": "big", "namespace": "ns", "uid": "u"}
    base["resource"]["instanceType"] = "Standard_NC24ads_A100_v4"
    base["inference"]["preset"] = {
        "name": "llama-3.3-70b-instruct",
        "presetOptions": {"modelAccessSecret": "hf"},
    }
    objs = render_inference(WorkspaceSpec(base), nodes=3, node_requirements=[], registry="r.io")
    assert [o["kind"] for o in objs] == ["Service", "Service", "StatefulSet"]
    sts = objs[2]
    assert sts["spec"]["replicas"] == 3 and sts["spec"]["serviceName"] == "big-headless"
    assert objs[1]["spec"]["clusterIP"] == "None"
    container = sts["spec"]["template"]["spec"]["containers"][0]
    token = next(e for e in container["env"] if e["name"] == "HF_TOKEN")
    assert token["valueFrom"]["secretKeyRef"] == {"name": "hf", "key": "HF_TOKEN", "optional": True}
    # 15 min + 18 s/GiB x 131.42 GiB = 3265.6 s, in 10 s periods.
    assert container["startupProbe"]["failureThreshold"] == 327
    with_adapter = dict(
        base,
        inference={
            **base["inference"],
            "adapters": [{"source": {"name": "a1", "image": "r.io/a:1"}, "strength": "0.5"}],
        },
    )
    # The reconciler's revision step numbers the changed spec 2 (revisions.py); the renderer stamps it.
    with_adapter["metadata"] = {
        **base["metadata"],
        "annotations": {**(base["metadata"].get("annotations") or {}), "workspace.kaito.io/revision": "2"},
    }
    objs2 = render_inference(WorkspaceSpec(with_adapter), nodes=3, node_requirements=[], registry="r.io")
    pod2 = objs2[2]["spec"]["template"]
    puller = pod2["spec"]["initContainers"][0]
    assert puller["name"] == "puller-a1" and puller["command"][-3:] == [
        "r.io/a:1",
        "/mnt/adapter/a1",
        "/root/.docker/config.d",
    ]
    assert {"name": "a1", "value": "0.5"} in pod2["spec"]["containers"][0]["env"]
    assert "--enable-lora" in pod2["spec"]["containers"][0]["command"][2]
    assert pod2["metadata"]["annotations"] != sts["spec"]["template"]["metadata"]["annotations"], (
        "adapters roll the pods"
    )


def test_node_object_names_fit_aks_pool_limits_and_are_stable() -> None:
    ws = WorkspaceSpec({"metadata": {"name": "w", "namespace": "ns", "uid": "u"}})
    a, b = node_object_name(ws, 0), node_object_name(ws, 1)
    assert a == node_object_name(ws, 0) and a != b
    assert len(a) == 11 and a.startswith("ws") and a.isalnum() and a.islower()


def test_job_outcomes() -> None:
    from kaito_ctrl.controllers.workspace.tuning import job_outcome

    assert job_outcome(None).state == "Pending"
    assert job_outcome({"status": {"active": 1}}).state == "Running"
    done = job_outcome({"status": {"conditions": [{"type": "Complete", "status": "True"}]}})
    assert (done.state, done.reason) == ("Succeeded", "workspaceSucceeded")
    failed = job_outcome(
        {
            "status": {
                "conditions": [
                    {
                        "type": "Failed",
                        "status": "True",
                        "reason": "BackoffLimitExceeded",
                        "message": "Job has reached the specified backoff limit",
                    }
                ]
            }
        }
    )
    assert (failed.state, failed.reason) == ("Failed", "workspaceFailed")
    assert "BackoffLimitExceeded" in failed.message and "backoff limit" in failed.message


async def test_node_object_deletion_skips_a_kind_whose_crd_is_absent() -> None:
    from kaito_ctrl.controllers.workspace.nodes import KarpenterNodes
    from kaito_ctrl.kube.machines import NodeObjectAPI

    class NoKarpenter:
        deleted: list[str] = []

        async def crd_installed(self, group: str, version: str, plural: str) -> bool:
            return False

        async def delete(self, *a: Any, **kw: Any) -> None:
            self.deleted.append(a[1])

    class Cache:
        def __init__(self) -> None:
            self.store = Store()
            self.store.upsert(
                {
                    "metadata": {
                        "name": "ws1",
                        "labels": {"kaito.sh/workspace": "w", "kaito.sh/workspacenamespace": "ns"},
                    }
                }
            )

    client = NoKarpenter()
    nodes = KarpenterNodes(NodeObjectAPI(client, "nodeclaim"), Cache(), Cache())  # type: ignore[arg-type]
    ws = WorkspaceSpec({"metadata": {"name": "w", "namespace": "ns", "uid": "u"}})
    assert await nodes.delete_all(ws) == 0
    assert client.deleted == []


def test_covers_accepts_server_defaults_and_rejects_drift() -> None:
    from kaito_ctrl.controllers.workspace.reconciler import covers

    want = {
        "spec": {"ports": [{"name": "http", "port": 80}], "selector": {"app": "x"}},
        "metadata": {"labels": {"a": "1"}},
    }
    live = {
        "spec": {
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 80}],
            "selector": {"app": "x"},
            "clusterIP": "10.0.0.1",
        },
        "metadata": {"labels": {"a": "1", "extra": "y"}, "resourceVersion": "5"},
    }
    assert covers(live, want)
    edited = {**live, "spec": {**live["spec"], "ports": [{"name": "http", "port": 8080}]}}
    assert not covers(edited, want), "a hand-edited port is drift"
    extra_port = {
        **live,
        "spec": {**live["spec"], "ports": [*live["spec"]["ports"], {"name": "x", "port": 1}]},
    }
    assert not covers(extra_port, want), "an added port is drift"
    assert not covers({"spec": {"replicas": 2}}, {"spec": {"replicas": 1}})
    assert covers({"spec": {"replicas": 1, "paused": False}}, {"spec": {"replicas": 1}})
    assert not covers({"a": True}, {"a": 1}) and covers({"a": "2"}, {"a": 2})


def test_a_failing_adapter_puller_names_the_adapter_image_and_why() -> None:
    inits, _, _, _ = adapter_pieces({"adapters": [{"source": {"name": "ad", "image": "reg.io/ad:1"}}]})
    failed = {
        "name": "puller-ad",
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 1, "message": "cannot pull adapter image reg.io/ad:1"}},
    }
    pod = {
        "metadata": {"name": "p"},
        "spec": {"initContainers": inits},
        "status": {"initContainerStatuses": [failed]},
    }
    reason, message = pod_problem(pod) or ("", "")
    assert reason == "ImagePullError"
    assert "'reg.io/ad:1'" in message and "puller-ad" in message and "imagePullSecrets" in message
    # Still running its first attempt: not a problem yet.
    pod["status"]["initContainerStatuses"] = [{"name": "puller-ad", "state": {"running": {}}}]
    assert pod_problem(pod) is None
