"""Own only what you made, on the real apiserver: a Workspace named like another team's Service or ConfigMap
leaves it untouched, says so in a condition and an Event, and deleting the Workspace does not delete it. A
tuning Workspace's egress NetworkPolicy reaches the apiserver with its deny list."""

from __future__ import annotations

from typing import Any

from kaito_ctrl.kube import conditions as cond
from kaito_ctrl.kube.client import KubeClient
from kaito_ctrl.kube.errors import NotFound
from kaito_ctrl.kube.resources import (
    CONFIGMAPS,
    EVENTS,
    JOBS,
    NETWORKPOLICIES,
    SERVICES,
    WORKSPACES,
    WORKSPACES_V1ALPHA1,
)
from kaito_ctrl.testing.controlplane import ControlPlane
from tests.integration import test_workspace_controller as wsc
from tests.integration.test_workspace_controller import _byo_example, _controller, _eventually

kube = wsc.kube  # the fixture: CRDs installed, a client on the test control plane

FOREIGN_SERVICE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "payments", "labels": {"team": "payments"}},
    "spec": {
        "selector": {"app": "payments-api"},
        "ports": [{"name": "https", "port": 443, "targetPort": 8443}],
    },
}


async def _condition(kube: KubeClient, name: str, namespace: str, type_: str, reason: str) -> Any:
    async def check() -> dict[str, Any] | None:
        obj = await kube.get(WORKSPACES, name, namespace)
        for c in (obj.get("status") or {}).get("conditions") or []:
            if c["type"] == type_ and c["status"] == "False" and c["reason"] == reason:
                return dict(c)
        return None

    return await _eventually(check, 60, f"{type_}={reason}")


async def _event(kube: KubeClient, namespace: str, reason: str) -> Any:
    async def check() -> dict[str, Any] | None:
        events = await kube.list_all(EVENTS, namespace=namespace)
        return next((e for e in events if e.get("reason") == reason), None)

    return await _eventually(check, 30, f"an Event {reason}")


async def _deleted(kube: KubeClient, name: str, namespace: str) -> None:
    await kube.delete(WORKSPACES, name, namespace)

    async def gone() -> bool:
        try:
            await kube.get(WORKSPACES, name, namespace)
        except NotFound:
            return True
        return False

    await _eventually(gone, 60, "workspace deleted")


async def test_workspace_does_not_take_over_a_foreign_service(
    control_plane: ControlPlane, kube: KubeClient, namespace: str
) -> None:
    before = await kube.create(SERVICES, FOREIGN_SERVICE, namespace)
    ws = _byo_example(control_plane, namespace, "inference/kaito_workspace_phi_3.yaml", "own")
    ws["metadata"]["name"] = "payments"
    async with _controller(kube, namespace, "byo"):
        await kube.create(WORKSPACES_V1ALPHA1, ws, namespace)
        c = await _condition(kube, "payments", namespace, "InferenceReady", "ObjectOwnedByOther")
        assert f"Service {namespace}/payments" in c["message"]
        event = await _event(kube, namespace, "ObjectOwnedByOther")
        assert "payments" in event["message"]
        svc = await kube.get(SERVICES, "payments", namespace)
        assert svc["spec"]["selector"] == {"app": "payments-api"}
        assert [p["port"] for p in svc["spec"]["ports"]] == [443]
        assert not svc["metadata"].get("ownerReferences")
        assert svc["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
        await _deleted(kube, "payments", namespace)
    still = await kube.get(SERVICES, "payments", namespace)
    assert still["metadata"]["uid"] == before["metadata"]["uid"], "deleting the Workspace left the Service"


async def test_tuning_workspace_leaves_a_foreign_configmap_and_ships_an_egress_policy(
    control_plane: ControlPlane, kube: KubeClient, namespace: str
) -> None:
    ws = _byo_example(
        control_plane, namespace, "fine-tuning/kaito_workspace_tuning_phi_3.yaml", "own-tune", key="app"
    )
    name = ws["metadata"]["name"]
    foreign = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{name}-qlora-params"},
        "data": {"training_config.yaml": "mine: true\n"},
    }
    await kube.create(CONFIGMAPS, foreign, namespace)
    async with _controller(kube, namespace, "byo"):
        await kube.create(WORKSPACES_V1ALPHA1, ws, namespace)
        c = await _condition(kube, name, namespace, "JobStarted", "ObjectOwnedByOther")
        assert f"ConfigMap {namespace}/{name}-qlora-params" in c["message"]
        cm = await kube.get(CONFIGMAPS, f"{name}-qlora-params", namespace)
        assert cm["data"] == {"training_config.yaml": "mine: true\n"} and not cm["metadata"].get(
            "ownerReferences"
        )
        assert not (await kube.list_all(JOBS, namespace=namespace)), "no Job while the name is taken"

        # The other team removes its ConfigMap: the Workspace proceeds, with its egress policy.
        await kube.delete(CONFIGMAPS, f"{name}-qlora-params", namespace)
        job = await _eventually(lambda: kube.get(JOBS, name, namespace), 60, "the tuning Job")
        pod = job["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        policy = await kube.get(NETWORKPOLICIES, f"{name}-egress", namespace)
        assert policy["spec"]["policyTypes"] == ["Egress"]
        blocks = [
            t["ipBlock"] for rule in policy["spec"]["egress"] for t in rule.get("to", []) if "ipBlock" in t
        ]
        assert {"169.254.0.0/16", "168.63.129.16/32", "10.0.0.0/8"} <= set(blocks[0]["except"])
        assert cond.condition_status(await kube.get(WORKSPACES, name, namespace), "JobStarted") != "Unknown"
        await _deleted(kube, name, namespace)
