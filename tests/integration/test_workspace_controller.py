"""The Workspace controller on the real control plane with kwok GPU nodes (BYO and NodeClaim modes)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest

from kaito_ctrl.api.catalog import catalog
from kaito_ctrl.controllers.workspace import reconciler as reconciler_module
from kaito_ctrl.controllers.workspace.setup import setup
from kaito_ctrl.kube import conditions as cond
from kaito_ctrl.kube.client import KubeClient
from kaito_ctrl.kube.errors import Conflict, NotFound, TooManyRequests
from kaito_ctrl.kube.resources import (
    CONFIGMAPS,
    CONTROLLER_REVISIONS,
    DEPLOYMENTS,
    EVENTS,
    JOBS,
    MACHINES,
    NODECLAIMS,
    PODS,
    SERVICES,
    STATEFULSETS,
    WORKSPACES,
    WORKSPACES_V1ALPHA1,
)
from kaito_ctrl.metrics import REGISTRY
from kaito_ctrl.runtime.manager import Manager
from kaito_ctrl.settings import Settings
from kaito_ctrl.testing.controlplane import ControlPlane, ControlPlaneOptions
from kaito_ctrl.testing.gpunodes import GpuNodeSpec

REPO = Path(__file__).resolve().parents[2]


async def _eventually(fn: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await fn()
        except (NotFound, TooManyRequests):  # TooManyRequests: a fresh CRD's storage is still initializing
            last = None
        if last:
            return last
        await asyncio.sleep(0.2)  # polling interval of a deadline-bounded wait
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


@pytest.fixture
async def kube(control_plane: ControlPlane) -> AsyncIterator[KubeClient]:
    control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "manifests/crds"))
    control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/workspaces.kaito.sh")
    client = await KubeClient.from_kubeconfig(control_plane.kubeconfig, qps=100, burst=100)
    yield client
    await client.close()


async def _run_controller(
    kube: KubeClient, namespace: str, mode: str, **kw: Any
) -> tuple[Manager, asyncio.Task[bool]]:
    settings = Settings(
        watch_namespace=namespace, node_provisioner=mode, leader_elect=False, webhook=False, **kw
    )  # type: ignore[arg-type]
    manager = Manager(kube, sync_timeout=30)
    setup(manager, kube, settings)
    task = asyncio.create_task(manager.run())
    return manager, task


@contextlib.asynccontextmanager
async def _controller(kube: KubeClient, namespace: str, mode: str, **kw: Any) -> AsyncIterator[Manager]:
    manager, task = await _run_controller(kube, namespace, mode, **kw)
    try:
        yield manager
    finally:
        manager.stop()
        await task


def _byo_example(
    control_plane: ControlPlane, namespace: str, example: str, prefix: str, *, key: str = "apps", **node: Any
) -> dict[str, Any]:
    """An example Workspace whose selector matches one fresh kwok GPU node of its own."""
    label = f"{prefix}-{namespace}"
    ws: dict[str, Any] = yaml.safe_load((REPO / "examples" / example).read_text())
    # A node of the example's own size (the seed's Standard_NC6s_v3: one V100), so BYO matches it.
    sku = catalog().sku(ws["resource"].get("instanceType") or "")
    if sku is not None:
        node = {"instance_type": sku.name, "gpus": sku.gpu_count, **node}
    control_plane.add_gpu_node(GpuNodeSpec(label, extra_labels={key: label}, **node))
    ws["resource"]["labelSelector"]["matchLabels"][key] = label
    return ws


async def _update_workspace(kube: KubeClient, name: str, namespace: str, change: Any) -> None:
    """Read-modify-write a Workspace as a user would, retrying when the controller wrote in between."""
    for _ in range(20):
        live = await kube.get(WORKSPACES, name, namespace)
        change(live)
        try:
            await kube.replace(WORKSPACES, live)
            return
        except Conflict:
            continue
    raise AssertionError("could not update the workspace")


def _cond(ws: dict[str, Any], type_: str) -> str:
    return cond.condition_status(ws, type_)


async def test_phi3_byo_reaches_ready_with_seed_service_and_columns(
    control_plane: ControlPlane, kube: KubeClient, namespace: str
) -> None:
    label = f"phi-3-{namespace}"
    control_plane.add_gpu_node(
        GpuNodeSpec(
            f"byo-{namespace}", instance_type="Standard_NC6s_v3", gpus=1, extra_labels={"apps": label}
        )
    )
    ws = yaml.safe_load((REPO / "examples/inference/kaito_workspace_phi_3.yaml").read_text())
    ws["resource"]["labelSelector"]["matchLabels"]["apps"] = label
    async with _controller(kube, namespace, "byo"):
        await kube.create(WORKSPACES_V1ALPHA1, ws, namespace)
        name = ws["metadata"]["name"]

        async def ready() -> dict[str, Any] | None:
            obj = await kube.get(WORKSPACES, name, namespace)
            ok = all(
                _cond(obj, t) == "True"
                for t in ("ResourceReady", "InferenceReady", "WorkspaceReady", "WorkspaceSucceeded")
            )
            return obj if ok else None

        obj = await _eventually(ready, 90, "ResourceReady, InferenceReady and WorkspaceReady True")
        assert obj["status"]["state"] == "Ready" and obj["status"]["targetNodeCount"] == 1
        assert obj["status"]["workerNodes"] == [f"byo-{namespace}"]
        assert "workspace.finalizer.kaito.sh" in obj["metadata"]["finalizers"]
        svc = await kube.get(SERVICES, name, namespace)
        # No webhook, so the preset's default runtime (vLLM on the base image): Kaito v0.12's Service ports.
        assert sorted((p["port"], p["targetPort"]) for p in svc["spec"]["ports"]) == [
            (80, 5000),
            (5557, 5557),
            (6379, 6379),
            (8265, 8265),
        ]
        dep = await kube.get(DEPLOYMENTS, name, namespace)
        container = dep["spec"]["template"]["spec"]["containers"][0]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
        # Created without the webhook, so no kaito.sh/runtime: the preset's default, vLLM on the base image.
        assert container["image"].endswith("kaito-base:0.5.0")
        row = control_plane.kubectl(
            "get", "workspaces.v1alpha1.kaito.sh", name, "-n", namespace, "--no-headers"
        ).split()
        assert row[1:5] == ["Standard_NC6s_v3", "True", "True", "True"], row

        # Drift repair: a hand-edited Service and a deleted Deployment come back.
        await kube.merge_patch(
            SERVICES,
            name,
            {"spec": {"ports": [{"name": "http", "port": 8080, "targetPort": 5000, "protocol": "TCP"}]}},
            namespace,
        )
        await kube.delete(DEPLOYMENTS, name, namespace)

        async def repaired() -> bool:
            svc = await kube.get(SERVICES, name, namespace)
            await kube.get(DEPLOYMENTS, name, namespace)
            return sorted(p["port"] for p in svc["spec"]["ports"]) == [80, 5557, 6379, 8265]

        await _eventually(repaired, 60, "Service and Deployment repaired")
        await _reconciles_without_rendering_until_something_changes(kube, name, namespace)

        # Deletion completes and releases the finalizer.
        await kube.delete(WORKSPACES, name, namespace)

        async def gone() -> bool:
            try:
                await kube.get(WORKSPACES, name, namespace)
            except NotFound:
                return True
            return False

        await _eventually(gone, 60, "workspace deleted")


def _workspace_reconciles() -> float:
    return sum(
        s.value
        for metric in REGISTRY.collect()
        if metric.name == "controller_runtime_reconcile"
        for s in metric.samples
        if s.name == "controller_runtime_reconcile_total" and s.labels.get("controller") == "workspace"
    )


async def _reconciles_without_rendering_until_something_changes(
    kube: KubeClient, name: str, namespace: str
) -> None:
    """Pod events reconcile a ready Workspace without rendering its workload again (nothing it is rendered from
    changed); a hand edit of the Deployment renders, and the edit is repaired."""
    renders: list[str] = []
    real = reconciler_module.render_inference

    def counting(ws: Any, **kw: Any) -> list[dict[str, Any]]:
        renders.append(ws.name)
        return real(ws, **kw)

    reconciler_module.render_inference = counting  # type: ignore[assignment]
    try:
        pod = (await kube.list_all(PODS, namespace, label_selector=f"kaito.sh/workspace={name}"))[0]
        for i in range(3):
            before = _workspace_reconciles()
            await kube.merge_patch(
                PODS, pod["metadata"]["name"], {"metadata": {"annotations": {"touched": str(i)}}}, namespace
            )

            async def reconciled(mark: float = before) -> bool:
                return _workspace_reconciles() > mark

            await _eventually(reconciled, 30, "a reconcile after a pod event")
        assert renders == [], "the workload was rendered again with nothing changed"
        dep = await kube.get(DEPLOYMENTS, name, namespace)
        image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
        edit = {"spec": {"template": {"spec": {"containers": [{"name": dep["spec"]["template"]["spec"]["containers"][0]["name"], "image": "registry.invalid/edited:1"}]}}}}  # fmt: skip
        await kube.request(
            "PATCH", DEPLOYMENTS.path(namespace, name), body=edit,
            content_type="application/strategic-merge-patch+json",
        )  # fmt: skip

        async def repaired() -> bool:
            d = await kube.get(DEPLOYMENTS, name, namespace)
            return bool(renders) and d["spec"]["template"]["spec"]["containers"][0]["image"] == image

        await _eventually(repaired, 60, "the hand-edited image rendered and put back")
    finally:
        reconciler_module.render_inference = real  # type: ignore[assignment]


@pytest.mark.parametrize("mode", ["nodeclaim", "machine"])
async def test_node_object_mode_creates_claim_and_names_quota_error(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, mode: str
) -> None:
    ws = yaml.safe_load((REPO / "examples/inference/kaito_workspace_phi_3.yaml").read_text())
    ws["metadata"]["name"] = "nc-phi"
    res = NODECLAIMS if mode == "nodeclaim" else MACHINES
    prefix = "" if mode == "nodeclaim" else "Machine"
    manager, task = await _run_controller(kube, namespace, mode)
    try:
        await kube.create(WORKSPACES_V1ALPHA1, ws, namespace)

        async def claim() -> dict[str, Any] | None:
            claims = await kube.list_all(
                res,
                label_selector=f"kaito.sh/workspace=nc-phi,kaito.sh/workspacenamespace={namespace}",
            )
            return claims[0] if claims else None

        nc = await _eventually(claim, 30, "a NodeClaim")
        assert nc["metadata"]["labels"]["apps"] == "phi-3"
        if mode == "nodeclaim":
            assert nc["metadata"]["labels"]["karpenter.sh/nodepool"] == "kaito"
            assert nc["spec"]["nodeClassRef"] == {
                "group": "kaito.sh",
                "kind": "KaitoNodeClass",
                "name": "default",
            }
        else:
            assert nc["metadata"]["labels"]["karpenter.sh/provisioner-name"] == "default"
            assert nc["spec"]["machineTemplateRef"] == {"name": nc["metadata"]["name"]}
        assert nc["spec"]["taints"] == [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]
        # No webhook here, so no runtime annotation: the preset's default (vLLM on the base image), whose node disk
        # is Kaito v0.12's int(7.12 GiB of weights + 80). Through the webhook (transformers, the seed image) it
        # is the seed era's 50Gi (tests/golden/phi3-nodeclaim.yaml).
        assert nc["spec"]["resources"]["requests"]["storage"] == "87Gi"
        assert {
            "key": "node.kubernetes.io/instance-type",
            "operator": "In",
            "values": ["Standard_NC6s_v3"],
        } in nc["spec"]["requirements"]
        # The provisioner reports a quota failure: the Workspace names the reason and Azure's code; Azure's text
        # (with its ids) stays on the cluster-scoped claim.
        quota = "Operation could not be completed as it results in exceeding approved standardNCSv3Family Cores quota"
        text = f"creating the AKS agent pool failed: OperationNotAllowed: {quota}"
        status = {"conditions": [
            {"type": f"{prefix}Launched", "status": "False", "reason": "QuotaExceeded", "message": text, "lastTransitionTime": "2026-01-01T00:00:00Z"},
            {"type": "Ready", "status": "False", "reason": "UnhealthyDependents", "message": "Launched=False", "lastTransitionTime": "2026-01-01T00:00:00Z"},
        ]}  # fmt: skip
        await kube.merge_patch(res, nc["metadata"]["name"], {"status": status}, subresource="status")

        async def names_quota() -> dict[str, Any] | None:
            obj = await kube.get(WORKSPACES, "nc-phi", namespace)
            c = cond.get_condition(obj, "ResourceReady")
            return (
                obj
                if c
                and c["status"] == "False"
                and c["reason"] == "QuotaExceeded"
                and "Azure error code OperationNotAllowed" in c["message"]
                and quota not in c["message"]
                else None
            )

        obj = await _eventually(names_quota, 30, "ResourceReady False with the quota reason and code")
        assert _cond(obj, "NodeClaimReady" if mode == "nodeclaim" else "MachineReady") == "False"
        assert _cond(obj, "InferenceReady") != "True"
        # Ready claim + matching node: the workload follows.
        node_name = f"aks-{nc['metadata']['name']}-vmss000000"
        control_plane.add_gpu_node(
            GpuNodeSpec(
                node_name,
                instance_type="Standard_NC6s_v3",  # the seed example's size: one V100
                gpus=1,
                extra_labels={
                    "kaito.sh/workspace": "nc-phi",
                    "kaito.sh/workspacenamespace": namespace,
                    "apps": "phi-3",
                },
            )
        )
        ready = {"nodeName": node_name, "conditions": [
            {"type": t, "status": "True", "reason": t, "message": "", "lastTransitionTime": "2026-01-01T00:00:01Z"}
            for t in (f"{prefix}Launched", f"{prefix}Registered", f"{prefix}Initialized", "Ready")
        ]}  # fmt: skip
        await kube.merge_patch(res, nc["metadata"]["name"], {"status": ready}, subresource="status")

        async def deployed() -> bool:
            obj = await kube.get(WORKSPACES, "nc-phi", namespace)
            return _cond(obj, "ResourceReady") == "True" and _cond(obj, "InferenceReady") == "True"

        await _eventually(deployed, 90, "workload ready after the claim")
        # No runtime annotation (no webhook here): Kaito 0.12's reason and message (gpu_provisioner.go;
        # node_claim_test.go TestSetNodeClaimsReadyCondition_SetsToTrue). The seed era's is in e2e/test_seed_journey.py.
        claims_cond = cond.get_condition(
            await kube.get(WORKSPACES, "nc-phi", namespace),
            "NodeClaimReady" if mode == "nodeclaim" else "MachineReady",
        )
        kind = "NodeClaim" if mode == "nodeclaim" else "Machine"
        assert claims_cond is not None
        assert (claims_cond["reason"], claims_cond["message"]) == (
            f"{kind}sReady",
            f"Enough {kind}s are ready",
        )
        dep = await kube.get(DEPLOYMENTS, "nc-phi", namespace)
        terms = dep["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"
        ]["nodeSelectorTerms"]
        assert {"key": "kaito.sh/workspace", "operator": "In", "values": ["nc-phi"]} in terms[0][
            "matchExpressions"
        ]
        # Deletion deletes the claim (no provisioner here holds a finalizer on it) and completes.
        await kube.delete(WORKSPACES, "nc-phi", namespace)

        async def cleaned() -> bool:
            try:
                await kube.get(WORKSPACES, "nc-phi", namespace)
                return False
            except NotFound:
                return await claim() is None

        await _eventually(cleaned, 60, "workspace and claim deleted")
    finally:
        manager.stop()
        await task
        control_plane.kubectl(
            "delete",
            "node",
            f"aks-{nc['metadata']['name']}-vmss000000" if "nc" in dir() else "none",
            check=False,
        )


async def test_tuning_example_runs_a_job_to_success(
    control_plane: ControlPlane, kube: KubeClient, namespace: str
) -> None:
    ws = _byo_example(
        control_plane, namespace, "fine-tuning/kaito_workspace_tuning_phi_3.yaml", "tune", key="app"
    )
    name = ws["metadata"]["name"]
    async with _controller(kube, namespace, "byo"):
        await kube.create(WORKSPACES_V1ALPHA1, ws, namespace)

        async def job() -> dict[str, Any]:
            return await kube.get(JOBS, name, namespace)

        created = await _eventually(job, 60, "the tuning Job")
        pod = created["spec"]["template"]["spec"]
        assert [c["name"] for c in pod["initContainers"]] == ["model-weights-downloader", "data-downloader"]
        assert [c["name"] for c in pod["containers"]] == [name, "pusher"]
        assert pod["restartPolicy"] == "Never" and pod["imagePullSecrets"] == [
            {"name": "ACR_REGISTRY_SECRET_HERE"}
        ]
        assert pod["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "1"}
        params = await kube.get(CONFIGMAPS, f"{name}-qlora-params", namespace)
        assert "load_in_4bit: true" in params["data"]["training_config.yaml"]

        async def succeeded() -> dict[str, Any] | None:
            obj = await kube.get(WORKSPACES, name, namespace)
            return (
                obj
                if _cond(obj, "WorkspaceSucceeded") == "True" and _cond(obj, "JobStarted") == "True"
                else None
            )

        obj = await _eventually(succeeded, 120, "WorkspaceSucceeded True after the Job completes")
        assert obj["status"]["state"] == "Succeeded"
        # A changed spec replaces the Job (its pod template is immutable).
        old_uid = created["metadata"]["uid"]
        await _update_workspace(
            kube,
            name,
            namespace,
            lambda w: w["tuning"]["output"].update(image="myregistry.azurecr.io/tuned-phi-3:0.0.2"),
        )

        async def replaced() -> dict[str, Any] | None:
            j = await job()
            return j if j["metadata"]["uid"] != old_uid else None

        new = await _eventually(replaced, 90, "a new Job for the new revision")
        assert created["metadata"]["annotations"]["workspace.kaito.io/revision"] == "1"
        assert new["metadata"]["annotations"]["workspace.kaito.io/revision"] == "2"
        pusher = new["spec"]["template"]["spec"]["containers"][1]["command"]
        assert pusher[4] == "myregistry.azurecr.io/tuned-phi-3:0.0.2", "the image is an argument, not script"


async def test_multi_node_preset_gets_a_statefulset_with_one_replica_per_node(
    control_plane: ControlPlane, kube: KubeClient, namespace: str
) -> None:
    label = f"llama-{namespace}"
    for i in range(3):
        control_plane.add_gpu_node(GpuNodeSpec(
            f"a100-{i}-{namespace}", instance_type="Standard_NC24ads_A100_v4", gpus=1,
            gpu_product="NVIDIA-A100-PCIE-80GB", gpu_memory_mib=81920, extra_labels={"apps": label},
        ))  # fmt: skip
    ws = yaml.safe_load(
        (REPO / "examples/inference/kaito_workspace_llama_3_3_70b_multinode.yaml").read_text()
    )
    ws["resource"]["labelSelector"]["matchLabels"]["apps"] = label
    async with _controller(kube, namespace, "byo"):
        await kube.create(WORKSPACES, ws, namespace)
        name = ws["metadata"]["name"]

        async def ready() -> dict[str, Any] | None:
            obj = await kube.get(WORKSPACES, name, namespace)
            return obj if _cond(obj, "InferenceReady") == "True" else None

        obj = await _eventually(ready, 120, "three pods ready")
        assert obj["status"]["targetNodeCount"] == 3
        assert len(obj["status"]["workerNodes"]) == 3
        sts = await kube.get(STATEFULSETS, name, namespace)
        assert sts["spec"]["replicas"] == 3 and sts["spec"]["serviceName"] == f"{name}-headless"
        headless = await kube.get(SERVICES, f"{name}-headless", namespace)
        assert headless["spec"]["clusterIP"] == "None"


async def test_unschedulable_pods_are_named_and_never_reported_ready(
    control_plane: ControlPlane, kube: KubeClient, namespace: str
) -> None:
    # The node claims the SKU but offers one GPU; the workload asks for the SKU's two.
    ws = _byo_example(
        control_plane, namespace, "inference/kaito_workspace_phi_3.yaml", "small",
        instance_type="Standard_NC12s_v3", gpus=1,
    )  # fmt: skip
    ws["resource"]["instanceType"] = "Standard_NC12s_v3"
    async with _controller(kube, namespace, "byo"):
        await kube.create(WORKSPACES_V1ALPHA1, ws, namespace)

        async def unschedulable() -> dict[str, Any] | None:
            obj = await kube.get(WORKSPACES, ws["metadata"]["name"], namespace)
            c = cond.get_condition(obj, "InferenceReady")
            # The scheduler's message may first cite the new node's not-ready taint; it settles on the GPUs.
            ok = (
                c
                and c["status"] == "False"
                and c["reason"] == "Unschedulable"
                and "nvidia.com/gpu" in c["message"]
            )
            return obj if ok else None

        obj = await _eventually(unschedulable, 60, "InferenceReady False, reason Unschedulable")
        assert "nvidia.com/gpu" in cond.get_condition(obj, "InferenceReady")["message"]  # type: ignore[index]
        assert _cond(obj, "ResourceReady") == "True" and _cond(obj, "WorkspaceReady") == "False"


async def test_deletion_is_bounded_when_a_node_object_never_goes_away(
    control_plane: ControlPlane, kube: KubeClient, namespace: str
) -> None:
    ws = yaml.safe_load((REPO / "examples/inference/kaito_workspace_phi_3.yaml").read_text())
    ws["metadata"]["name"] = "stuck"
    manager, task = await _run_controller(kube, namespace, "nodeclaim", deletion_timeout=3.0)
    try:
        await kube.create(WORKSPACES_V1ALPHA1, ws, namespace)
        selector = f"kaito.sh/workspace=stuck,kaito.sh/workspacenamespace={namespace}"

        async def claim() -> dict[str, Any] | None:
            claims = await kube.list_all(NODECLAIMS, label_selector=selector)
            return claims[0] if claims else None

        nc = await _eventually(claim, 30, "a NodeClaim")
        # A finalizer nobody will remove (a provisioner that is down, a cloud that does not answer).
        await kube.merge_patch(
            NODECLAIMS, nc["metadata"]["name"], {"metadata": {"finalizers": ["test/never"]}}
        )
        await kube.delete(WORKSPACES, "stuck", namespace)

        async def gone() -> bool:
            try:
                await kube.get(WORKSPACES, "stuck", namespace)
                return False
            except NotFound:
                return True

        await _eventually(gone, 30, "the workspace released after the deletion bound")
        events = await kube.list_all(EVENTS, namespace, field_selector="involvedObject.name=stuck")
        assert any(e["reason"] == "NodeDeletionTimedOut" for e in events)
        assert (await claim())["metadata"].get("deletionTimestamp"), "the claim was asked to go"  # type: ignore[index]
    finally:
        manager.stop()
        await task
        with contextlib.suppress(Exception):
            if nc:
                await kube.merge_patch(NODECLAIMS, nc["metadata"]["name"], {"metadata": {"finalizers": None}})


async def test_adapters_roll_pods_and_templates_follow_edits(
    control_plane: ControlPlane, kube: KubeClient, namespace: str
) -> None:
    ws = _byo_example(control_plane, namespace, "inference/kaito_workspace_phi_3_with_adapters.yaml", "adapt")
    # An adapter image that pulls (the example's placeholder never does), so revision 1's pod becomes ready and
    # holds the node's only GPU when revision 2 rolls out.
    ws["inference"]["adapters"][0]["source"]["image"] = "registry.invalid/phi-3-adapter:1"
    label = ws["resource"]["labelSelector"]["matchLabels"]["apps"]
    name = ws["metadata"]["name"]
    template_ws = {
        "apiVersion": "kaito.sh/v1beta1", "kind": "Workspace", "metadata": {"name": "custom"},
        "resource": {"labelSelector": {"matchLabels": {"apps": label}}},
        "inference": {"template": {"spec": {"containers": [{"name": "server", "image": "registry.invalid/custom:1"}]}}},
    }  # fmt: skip
    async with _controller(kube, namespace, "byo"):
        await kube.create(WORKSPACES_V1ALPHA1, ws, namespace)
        await kube.create(WORKSPACES, template_ws, namespace)

        async def deployment() -> dict[str, Any]:
            return await kube.get(DEPLOYMENTS, name, namespace)

        dep = await _eventually(deployment, 60, "the adapters Deployment")
        pod = dep["spec"]["template"]["spec"]
        assert [c["name"] for c in pod["initContainers"]] == ["puller-phi-3-adapter"]
        assert {"name": "phi-3-adapter", "value": "1.0"} in pod["containers"][0]["env"]
        # Revision 1, as Kaito numbers them: on the Workspace, its workload and its pods, and one
        # ControllerRevision (Kaito's TestSyncControllerRevision / e2e "update adapters" expectations).
        rev = "workspace.kaito.io/revision"
        assert dep["spec"]["template"]["metadata"]["annotations"][rev] == "1"
        assert dep["metadata"]["annotations"][rev] == "1"
        live = await kube.get(WORKSPACES, name, namespace)
        assert live["metadata"]["annotations"][rev] == "1"
        assert len(live["metadata"]["annotations"]["workspace.kaito.io/hash"]) == 64

        async def pods_by_revision() -> dict[str, list[dict[str, Any]]]:
            out: dict[str, list[dict[str, Any]]] = {}
            for p in await kube.list_all(PODS, namespace, label_selector=f"kaito.sh/workspace={name}"):
                out.setdefault(p["metadata"]["annotations"][rev], []).append(p)
            return out

        async def serving() -> bool:
            return any(
                all(c.get("ready") for c in p["status"].get("containerStatuses") or [{}])
                for p in (await pods_by_revision()).get("1", [])
            )

        await _eventually(serving, 60, "revision 1's pod ready on the node's one GPU")
        second = {"source": {"name": "second", "image": "registry.invalid/second:1"}, "strength": "0.5"}
        await _update_workspace(kube, name, namespace, lambda w: w["inference"]["adapters"].append(second))

        async def rolled() -> bool:
            d = await deployment()
            inits = [c["name"] for c in d["spec"]["template"]["spec"].get("initContainers", [])]
            return (
                inits == ["puller-phi-3-adapter", "puller-second"]
                and d["spec"]["template"]["metadata"]["annotations"][rev] == "2"
                and d["metadata"]["annotations"][rev] == "2"
            )

        await _eventually(rolled, 60, "revision 2: a new pod template with the second adapter")

        async def replaced_on_the_one_gpu() -> bool:
            # The node has one GPU: revision 2's pod can only run once revision 1's is gone (maxSurge 0), and a
            # surge pod would sit Pending for GPUs instead.
            pods = await pods_by_revision()
            return "1" not in pods and any(
                p["spec"].get("nodeName") and p["status"].get("phase") == "Running" for p in pods.get("2", [])
            )

        await _eventually(replaced_on_the_one_gpu, 90, "revision 2's pod running in place of revision 1's")
        live = await kube.get(WORKSPACES, name, namespace)
        assert live["metadata"]["annotations"][rev] == "2"
        history = await kube.list_all(
            CONTROLLER_REVISIONS, namespace, label_selector=f"workspace.kaito.io/name={name}"
        )
        assert sorted(int(r["revision"]) for r in history) == [1, 2]
        assert {r["metadata"]["name"] for r in history} == {
            f"{name}-{r['metadata']['annotations']['workspace.kaito.io/hash'][:5]}" for r in history
        }

        async def custom() -> dict[str, Any]:
            return await kube.get(DEPLOYMENTS, "custom", namespace)

        await _eventually(custom, 60, "the template Deployment")
        await _update_workspace(
            kube, "custom", namespace,
            lambda w: w["inference"]["template"]["spec"]["containers"][0].update(image="registry.invalid/custom:2"),
        )  # fmt: skip

        async def followed() -> bool:
            d = await custom()
            return d["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.invalid/custom:2"

        await _eventually(followed, 60, "the template edit reaching the Deployment")
        metrics_text = generate_latest(REGISTRY).decode()
        assert 'kaito_workspace_count{mode="byo",phase=' in metrics_text
        assert "kaito_workspace_time_to_ready_seconds_bucket" in metrics_text


POD_FAILURES = {
    "ContainerCrashLoopBackOff": {
        "state": {
            "waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s restarting failed container"}
        },
        "restartCount": 7,
    },
    "ImagePullError": {
        "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}},
        "restartCount": 0,
    },
    "ContainerOOMKilled": {
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}},
        "restartCount": 2,
    },
}


@pytest.mark.parametrize("reason", sorted(POD_FAILURES))
async def test_failing_pods_turn_inference_ready_false_with_their_reason(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, reason: str
) -> None:
    ws = _byo_example(control_plane, namespace, "inference/kaito_workspace_phi_3.yaml", "fail")
    name = ws["metadata"]["name"]
    async with _controller(kube, namespace, "byo"):
        await kube.create(WORKSPACES_V1ALPHA1, ws, namespace)

        async def inference(status: str) -> dict[str, Any] | None:
            obj = await kube.get(WORKSPACES, name, namespace)
            return obj if _cond(obj, "InferenceReady") == status else None

        await _eventually(lambda: inference("True"), 90, "ready first")
        pods = await kube.list_all(PODS, namespace, label_selector=f"kaito.sh/workspace={name}")
        pod = pods[0]
        # The container starts failing (kwok leaves Running pods alone, as a kubelet would report this).
        failing = {"name": name, "ready": False, "image": "x", "imageID": "", **POD_FAILURES[reason]}
        status = {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "ContainersNotReady",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                },
                {
                    "type": "ContainersReady",
                    "status": "False",
                    "reason": "ContainersNotReady",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                },
            ],
            "containerStatuses": [failing],
        }
        await kube.merge_patch(
            PODS, pod["metadata"]["name"], {"status": status}, namespace, subresource="status"
        )

        async def failed() -> dict[str, Any] | None:
            obj = await inference("False")
            c = cond.get_condition(obj, "InferenceReady") if obj else None
            return obj if c and c["reason"] == reason else None

        obj = await _eventually(failed, 60, f"InferenceReady False with reason {reason}")
        assert pod["metadata"]["name"] in cond.get_condition(obj, "InferenceReady")["message"]  # type: ignore[index]
        assert _cond(obj, "WorkspaceReady") == "False" and obj["status"]["state"] == "NotReady"


async def test_tuning_job_failure_is_named_on_the_workspace(
    control_plane: ControlPlane, kube: KubeClient, namespace: str
) -> None:
    # One GPU where the Job asks for two: its pod stays Pending, so the test, not kwok, decides the outcome.
    ws = _byo_example(
        control_plane,
        namespace,
        "fine-tuning/kaito_workspace_tuning_phi_3.yaml",
        "tunefail",
        key="app",
        gpus=1,
    )
    name = ws["metadata"]["name"]
    async with _controller(kube, namespace, "byo"):
        await kube.create(WORKSPACES_V1ALPHA1, ws, namespace)

        async def job() -> dict[str, Any]:
            return await kube.get(JOBS, name, namespace)

        created = await _eventually(job, 60, "the tuning Job")
        now = "2026-11-24T00:00:00Z"
        failed = {
            "active": 0,
            "ready": 0,
            "startTime": created["status"].get("startTime") or now,
            "conditions": [
                {
                    "type": "FailureTarget",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit",
                    "lastProbeTime": now,
                    "lastTransitionTime": now,
                },
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit",
                    "lastProbeTime": now,
                    "lastTransitionTime": now,
                },
            ],
        }
        await kube.merge_patch(JOBS, name, {"status": failed}, namespace, subresource="status")

        async def named() -> dict[str, Any] | None:
            obj = await kube.get(WORKSPACES, name, namespace)
            c = cond.get_condition(obj, "WorkspaceSucceeded")
            return obj if c and c["status"] == "False" and c["reason"] == "workspaceFailed" else None

        obj = await _eventually(named, 60, "WorkspaceSucceeded False, workspaceFailed")
        assert "BackoffLimitExceeded" in cond.get_condition(obj, "WorkspaceSucceeded")["message"]  # type: ignore[index]
        assert obj["status"]["state"] == "Failed"


async def test_a_tuning_input_image_that_cannot_be_pulled_is_named_on_the_workspace(
    control_plane: ControlPlane, kube: KubeClient, namespace: str
) -> None:
    """The seed's tuning example with its input image left as a placeholder: the Job is active while its data
    puller fails (kwok plays the puller failing as on a node), and the Workspace names that, not "running"."""
    ws = _byo_example(
        control_plane, namespace, "fine-tuning/kaito_workspace_tuning_phi_3.yaml", "tuneimg", key="app"
    )
    ws["tuning"]["input"] = {"name": "in", "image": "ACR_REPO_HERE.azurecr.io/DATA_HERE:0.0.1"}
    name = ws["metadata"]["name"]
    async with _controller(kube, namespace, "byo"):
        await kube.create(WORKSPACES_V1ALPHA1, ws, namespace)

        async def named() -> dict[str, Any] | None:
            obj = await kube.get(WORKSPACES, name, namespace)
            c = cond.get_condition(obj, "WorkspaceSucceeded")
            return obj if c and c["reason"] == "InvalidImageName" else None

        obj = await _eventually(named, 90, "WorkspaceSucceeded naming the input image")
        message = cond.get_condition(obj, "WorkspaceSucceeded")["message"]  # type: ignore[index]
        assert "tuning input image 'ACR_REPO_HERE.azurecr.io/DATA_HERE:0.0.1'" in message, message
        assert _cond(obj, "WorkspaceSucceeded") == "False" and _cond(obj, "JobStarted") == "True"
        events = await kube.list_all(EVENTS, namespace)
        assert any(e["reason"] == "InvalidImageName" for e in events), "and an Event says it"


async def test_deletion_completes_without_karpenter_crds(tmp_path: Path) -> None:
    """A cluster with only the Workspace CRD: nothing to wait for on deletion, so it completes at once."""
    cp = ControlPlane(ControlPlaneOptions(workdir=tmp_path / "cp", kwok=False, scheduler=False, gpu_nodes=()))
    cp.start()
    try:
        cp.kubectl("apply", "--server-side", "-f", str(REPO / "manifests/crds/kaito.sh_workspaces.yaml"))
        cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/workspaces.kaito.sh")
        kube = await KubeClient.from_kubeconfig(cp.kubeconfig)
        settings = Settings(
            watch_namespace="default", node_provisioner="nodeclaim", leader_elect=False, webhook=False
        )
        manager = Manager(kube, sync_timeout=3)
        setup(manager, kube, settings)
        task = asyncio.create_task(manager.run())
        try:
            ws = yaml.safe_load((REPO / "examples/inference/kaito_workspace_phi_3.yaml").read_text())
            await kube.create(WORKSPACES_V1ALPHA1, ws, "default")
            name = ws["metadata"]["name"]

            async def finalized() -> bool:
                obj = await kube.get(WORKSPACES, name, "default")
                return "workspace.finalizer.kaito.sh" in obj["metadata"].get("finalizers", [])

            await _eventually(finalized, 30, "the finalizer")
            await kube.delete(WORKSPACES, name, "default")

            async def gone() -> bool:
                try:
                    await kube.get(WORKSPACES, name, "default")
                    return False
                except NotFound:
                    return True

            await _eventually(gone, 30, "deletion without Karpenter CRDs")
        finally:
            manager.stop()
            await task
            await kube.close()
    finally:
        cp.stop()


async def test_a_users_tuning_config_decides_where_results_go_and_a_bad_one_is_named(
    control_plane: ControlPlane, kube: KubeClient, namespace: str
) -> None:
    """Kaito reads TrainingArguments.output_dir from the Workspace's tuning config and mounts the results there
    (preset_tuning.go GetTrainingOutputDir / PrepareOutputDir); the pusher waits for the results in the same
    place. A config that is missing, or whose output_dir is not a directory under /mnt, creates no Job and is
    named on the Workspace."""
    ws = _byo_example(
        control_plane, namespace, "fine-tuning/kaito_workspace_tuning_phi_3.yaml", "tunecfg", key="app"
    )
    name = ws["metadata"]["name"]
    ws["tuning"]["config"] = "my-tuning-config"
    config = "training_config:\n  TrainingArguments:\n    output_dir: checkpoints\n    num_train_epochs: 1\n"
    async with _controller(kube, namespace, "byo"):
        await kube.create(WORKSPACES_V1ALPHA1, ws, namespace)

        async def pending(reason: str) -> dict[str, Any] | None:
            obj = await kube.get(WORKSPACES, name, namespace)
            c = cond.get_condition(obj, "JobStarted")
            return obj if c and c["reason"] == reason else None

        obj = await _eventually(lambda: pending("InvalidTuningConfig"), 60, "the missing ConfigMap named")
        assert "ConfigMap my-tuning-config not found" in cond.get_condition(obj, "JobStarted")["message"]  # type: ignore[index]
        with contextlib.suppress(NotFound):
            await kube.get(JOBS, name, namespace)
            raise AssertionError("no Job may be created from a config that is not there")
        await kube.create(
            CONFIGMAPS,
            {"metadata": {"name": "my-tuning-config"}, "data": {"training_config.yaml": config.replace("checkpoints", "/etc")}},
            namespace,
        )  # fmt: skip

        async def names_etc() -> bool:
            o = await kube.get(WORKSPACES, name, namespace)
            c = cond.get_condition(o, "JobStarted")
            return bool(c and "must be a directory under /mnt" in c["message"])

        await _eventually(names_etc, 60, "the output_dir outside /mnt named")
        await kube.merge_patch(
            CONFIGMAPS, "my-tuning-config", {"data": {"training_config.yaml": config}}, namespace
        )

        async def job() -> dict[str, Any]:
            return await kube.get(JOBS, name, namespace)

        created = await _eventually(job, 90, "the tuning Job once the config is fixed")
        pod = created["spec"]["template"]["spec"]
        trainer, pusher = pod["containers"]
        assert {"name": "results", "mountPath": "/mnt/checkpoints"} in trainer["volumeMounts"]
        assert {"name": "results", "mountPath": "/mnt/checkpoints"} in pusher["volumeMounts"]
        assert pusher["command"][-1] == "/mnt/checkpoints" and "/mnt/checkpoints" not in pusher["command"][2]
        assert [v["configMap"]["name"] for v in pod["volumes"] if v["name"] == "config"] == [
            "my-tuning-config"
        ]
