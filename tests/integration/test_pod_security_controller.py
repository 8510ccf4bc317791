"""Pod Security baseline behind the webhook: with no webhook registered, the Workspace reconciler's own check
refuses a violating Workspace (condition, no Deployment), then follows the namespace's admin annotation."""

from __future__ import annotations

import pytest

from kaito_ctrl.api.podsecurity import ALLOW_ANNOTATION
from kaito_ctrl.kube.client import KubeClient
from kaito_ctrl.kube.errors import NotFound
from kaito_ctrl.kube.resources import DEPLOYMENTS, NAMESPACES, WORKSPACES
from kaito_ctrl.testing.controlplane import ControlPlane
from tests.integration import test_workspace_controller as wsc
from tests.integration.test_pod_security import REPO, _template


async def test_controller_does_not_render_a_violating_workspace_the_webhook_missed(
    control_plane: ControlPlane, namespace: str
) -> None:
    """No webhook in this test: the reconciler's own check refuses, then follows the namespace annotation."""

    kube = await KubeClient.from_kubeconfig(control_plane.kubeconfig, qps=100, burst=100)
    control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "manifests/crds"))
    control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/workspaces.kaito.sh")
    obj = wsc._byo_example(control_plane, namespace, "inference/kaito_workspace_phi_3.yaml", "podsec")
    selector = obj["resource"]["labelSelector"]
    ws = _template(hostNetwork=True)
    ws["metadata"]["name"] = "hostnet"
    ws["resource"] = {"labelSelector": selector}
    try:
        async with wsc._controller(kube, namespace, "byo"):
            await kube.create(WORKSPACES, ws, namespace)

            async def refused() -> bool:
                got = await kube.get(WORKSPACES, "hostnet", namespace)
                conds = {c["type"]: c for c in (got.get("status") or {}).get("conditions") or []}
                c = conds.get("InferenceReady")
                return bool(
                    c and c["reason"] == "PodSecurityBaselineViolation" and "hostNetwork" in c["message"]
                )

            await wsc._eventually(refused, 60, "InferenceReady PodSecurityBaselineViolation")
            with pytest.raises(NotFound):
                await kube.get(DEPLOYMENTS, "hostnet", namespace)
            await kube.merge_patch(
                NAMESPACES, namespace, {"metadata": {"annotations": {ALLOW_ANNOTATION: "true"}}}
            )
            await kube.merge_patch(WORKSPACES, "hostnet", {"metadata": {"labels": {"nudge": "1"}}}, namespace)
            await wsc._eventually(lambda: kube.get(DEPLOYMENTS, "hostnet", namespace), 60, "the Deployment")
    finally:
        await kube.close()
