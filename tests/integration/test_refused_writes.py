"""Writes the real apiserver refuses become a reason on the Workspace, not a silent retry loop.

Each class of refusal is produced for real: a 422 (the issue's ``badlabel`` Workspace, created with the webhook
off so it reaches the controller), a 403 (the controller runs under a ServiceAccount whose ClusterRole lacks
``create`` on NodeClaims) and a 404 (the NodeClaim CRD deleted underneath a running controller).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from kaito_ctrl.controllers.workspace.reconciler import WorkspaceReconciler
from kaito_ctrl.controllers.workspace.setup import setup
from kaito_ctrl.kube import conditions as cond
from kaito_ctrl.kube.client import KubeClient
from kaito_ctrl.kube.resources import EVENTS, NODECLAIMS, WORKSPACES, WORKSPACES_V1ALPHA1
from kaito_ctrl.runtime.manager import Manager
from kaito_ctrl.settings import Settings
from kaito_ctrl.testing.controlplane import ControlPlane, ControlPlaneOptions
from tests.integration.test_workspace_controller import _eventually
from tests.integration.test_workspace_controller import kube as kube

REPO = Path(__file__).resolve().parents[2]
# Every condition a NodeClaim-mode inference Workspace has from its first reconcile on.
APPLICABLE = {
    "ResourceReady",
    "NodeClaimReady",
    "NodesReady",
    "InferenceReady",
    "WorkspaceSucceeded",
    "WorkspaceReady",
}


@contextlib.asynccontextmanager
async def _controller(kube: KubeClient, namespace: str, *, pause: float = 60.0) -> AsyncIterator[Manager]:
    """The workspace controller in NodeClaim mode; a refused write pauses ``pause`` seconds, so a quick
    retry after an edit can only come from the edit."""
    settings = Settings(
        watch_namespace=namespace, node_provisioner="nodeclaim", leader_elect=False, webhook=False
    )
    manager = Manager(kube, sync_timeout=10)
    controller = setup(manager, kube, settings)
    reconciler = controller.reconcile
    assert isinstance(reconciler, WorkspaceReconciler)
    reconciler.refusals.base = pause
    task = asyncio.create_task(manager.run())
    try:
        yield manager
    finally:
        manager.stop()
        await task


def _example(name: str, labels: dict[str, str]) -> dict[str, Any]:
    ws: dict[str, Any] = yaml.safe_load((REPO / "examples/inference/kaito_workspace_phi_3.yaml").read_text())
    ws["metadata"]["name"] = name
    ws["resource"]["labelSelector"]["matchLabels"] = labels
    return ws


async def _refused(kube: KubeClient, name: str, namespace: str, reason: str) -> dict[str, Any]:
    async def seen() -> dict[str, Any] | None:
        obj = await kube.get(WORKSPACES, name, namespace)
        c = cond.get_condition(obj, "NodeClaimReady")
        return obj if c and c["status"] == "False" and c["reason"] == reason else None

    return await _eventually(seen, 30, f"NodeClaimReady=False {reason}")  # type: ignore[no-any-return]


def _assert_fully_reported(obj: dict[str, Any], reason: str) -> None:
    conditions = {c["type"]: c for c in obj["status"]["conditions"]}
    assert set(conditions) >= APPLICABLE, sorted(conditions)
    assert conditions["ResourceReady"]["status"] == "False"
    assert conditions["ResourceReady"]["reason"] == reason
    assert obj["status"]["state"] == "Pending"


async def _event(kube: KubeClient, namespace: str, name: str, reason: str) -> dict[str, Any]:
    async def found() -> dict[str, Any] | None:
        events = await kube.list_all(EVENTS, namespace)
        hits = [e for e in events if e["involvedObject"].get("name") == name and e.get("reason") == reason]
        return hits[0] if hits else None

    return await _eventually(found, 15, f"a {reason} Event")  # type: ignore[no-any-return]


async def test_badlabel_workspace_gets_nodeclaimrejected_then_an_edit_retries_at_once(
    kube: KubeClient, namespace: str
) -> None:
    async with _controller(kube, namespace):
        ws = _example("badlabel", {"apps": "${jndi}"})
        await kube.create(WORKSPACES_V1ALPHA1, ws, namespace)
        obj = await _refused(kube, "badlabel", namespace, "NodeClaimRejected")
        _assert_fully_reported(obj, "NodeClaimRejected")
        message = cond.get_condition(obj, "NodeClaimReady")["message"]  # type: ignore[index]
        assert "Invalid value" in message and "${jndi}" in message, message
        event = await _event(kube, namespace, "badlabel", "NodeClaimRejected")
        assert event["type"] == "Warning" and "Invalid value" in event["message"]

        # The refused create pauses for a minute; editing the Workspace retries it at once.
        live = await kube.get(WORKSPACES, "badlabel", namespace)
        live["resource"]["labelSelector"]["matchLabels"]["apps"] = "fixed"
        edited = time.monotonic()
        await kube.replace(WORKSPACES, live)

        async def claim() -> list[dict[str, Any]]:
            return await kube.list_all(NODECLAIMS, label_selector=f"kaito.sh/workspacenamespace={namespace}")

        claims = await _eventually(claim, 30, "the NodeClaim after the fix")
        assert time.monotonic() - edited < 20, "retried by the edit, not after the 60 s pause"
        assert claims[0]["metadata"]["labels"]["apps"] == "fixed"
        for c in claims:
            await kube.delete(NODECLAIMS, c["metadata"]["name"])


NARROW_RULES = [
    {"apiGroups": ["kaito.sh"], "resources": ["workspaces", "workspaces/status"],
     "verbs": ["get", "list", "watch", "patch", "update"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
    {"apiGroups": [""], "resources": ["pods", "services", "configmaps", "nodes"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "watch"]},
    # Everything on NodeClaims but create: the write the controller needs first.
    {"apiGroups": ["karpenter.sh"], "resources": ["nodeclaims"], "verbs": ["get", "list", "watch", "delete"]},
]  # fmt: skip


async def test_forbidden_nodeclaim_create_is_named_on_the_workspace(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, tmp_path: Path
) -> None:
    role = f"narrow-{uuid.uuid4().hex[:8]}"
    control_plane.kubectl("create", "serviceaccount", role, "-n", namespace)
    manifest = tmp_path / "rbac.json"
    manifest.write_bytes(orjson.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": role},
         "rules": NARROW_RULES},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": role},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
         "subjects": [{"kind": "ServiceAccount", "name": role, "namespace": namespace}]},
    ]}))  # fmt: skip
    control_plane.kubectl("apply", "-f", str(manifest))
    token = control_plane.kubectl("create", "token", role, "-n", namespace, "--duration=1h").strip()
    kubeconfig = tmp_path / "narrow.kubeconfig"
    kubeconfig.write_bytes(orjson.dumps({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": control_plane.server,
                                                "certificate-authority": control_plane.ca_file}}],
        "users": [{"name": role, "user": {"token": token}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": role}}], "current-context": "c",
    }))  # fmt: skip
    narrow = await KubeClient.from_kubeconfig(str(kubeconfig), qps=100, burst=100)
    try:
        async with _controller(narrow, namespace):
            await kube.create(WORKSPACES_V1ALPHA1, _example("forbidden", {"apps": "phi-3"}), namespace)
            obj = await _refused(kube, "forbidden", namespace, "Forbidden")
            _assert_fully_reported(obj, "Forbidden")
            message = cond.get_condition(obj, "NodeClaimReady")["message"]  # type: ignore[index]
            assert "forbidden" in message and "nodeclaims" in message, message
            await _event(kube, namespace, "forbidden", "Forbidden")
    finally:
        await narrow.close()
        control_plane.kubectl("delete", "clusterrolebinding,clusterrole", role, check=False)


async def test_nodeclaim_crd_removed_underneath_is_named_on_the_workspace(tmp_path: Path) -> None:
    cp = ControlPlane(ControlPlaneOptions(workdir=tmp_path / "cp", kwok=False, scheduler=False, gpu_nodes=()))
    cp.start()
    try:
        cp.kubectl("apply", "--server-side", "-f", str(REPO / "manifests/crds"))
        cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/workspaces.kaito.sh",
                   "crd/nodeclaims.karpenter.sh")  # fmt: skip
        kube = await KubeClient.from_kubeconfig(cp.kubeconfig)
        try:
            async with _controller(kube, "default") as manager:

                async def synced() -> bool:
                    return bool(manager.informers.has_synced())

                await _eventually(synced, 30, "the controller's caches")
                cp.kubectl("delete", "crd", "nodeclaims.karpenter.sh", "--wait=true")
                await kube.create(WORKSPACES_V1ALPHA1, _example("nocrd", {"apps": "phi-3"}), "default")
                obj = await _refused(kube, "nocrd", "default", "KindNotInstalled")
                _assert_fully_reported(obj, "KindNotInstalled")
                await _event(kube, "default", "nocrd", "KindNotInstalled")
        finally:
            await kube.close()
    finally:
        cp.stop()


@pytest.fixture(autouse=True)
def _crds(control_plane: ControlPlane) -> None:
    control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "manifests/crds"))
    control_plane.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/nodeclaims.karpenter.sh"
    )
