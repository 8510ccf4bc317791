"""The node provisioner under an identity that may not make a write it needs: the refusal is named (a
condition on the claim, or an Event when the status itself is refused), the retry pauses, and granting the
right lets the claim go on to Ready."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from kaito_ctrl.kube import conditions as cond
from kaito_ctrl.kube.client import KubeClient
from kaito_ctrl.kube.resources import EVENTS
from kaito_ctrl.testing.controlplane import ControlPlane
from tests.integration.provisioning import eventually, new_name, rig

READ = ["get", "list", "watch"]


def _rules(*, node_patch: bool, status_patch: bool) -> list[dict[str, Any]]:
    return [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": [*READ, "delete", *(["patch", "update"] if node_patch else [])]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
        {"apiGroups": [""], "resources": ["pods", "configmaps", "secrets"], "verbs": READ},
        {"apiGroups": ["karpenter.sh"], "resources": ["nodeclaims", "machines"],
         "verbs": [*READ, "create", "update", "patch", "delete"]},
        {"apiGroups": ["karpenter.sh"], "resources": ["nodeclaims/status", "machines/status"],
         "verbs": ["get", *(["patch", "update"] if status_patch else [])]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": [*READ, "create", "update", "patch"]},
    ]  # fmt: skip


def _apply_role(cp: ControlPlane, tmp: Path, role: str, namespace: str, rules: list[dict[str, Any]]) -> None:
    path = tmp / f"{role}.json"
    path.write_bytes(orjson.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": role},
         "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": role},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
         "subjects": [{"kind": "ServiceAccount", "name": role, "namespace": namespace}]},
    ]}))  # fmt: skip
    cp.kubectl("apply", "-f", str(path))


async def _narrow_client(cp: ControlPlane, tmp: Path, role: str, namespace: str) -> KubeClient:
    cp.kubectl("create", "serviceaccount", role, "-n", namespace)
    token = cp.kubectl("create", "token", role, "-n", namespace, "--duration=1h").strip()
    path = tmp / f"{role}.kubeconfig"
    path.write_bytes(orjson.dumps({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": cp.server, "certificate-authority": cp.ca_file}}],
        "users": [{"name": role, "user": {"token": token}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": role}}], "current-context": "c",
    }))  # fmt: skip
    return await KubeClient.from_kubeconfig(str(path), qps=100, burst=100)


@pytest.mark.parametrize("refused", ["node-patch", "status-write"])
async def test_refused_writes_are_named_and_granting_the_right_recovers(
    control_plane: ControlPlane, namespace: str, tmp_path: Path, refused: str
) -> None:
    role = f"prov-{uuid.uuid4().hex[:8]}"
    narrow_rules = _rules(node_patch=refused != "node-patch", status_patch=refused != "status-write")
    _apply_role(control_plane, tmp_path, role, namespace, narrow_rules)
    narrow = await _narrow_client(control_plane, tmp_path, role, namespace)
    try:
        async with rig(control_plane, "nodeclaim") as r:
            admin = r.kube
            r.kube = narrow  # the provisioner runs as the narrowed identity; the rig's own calls stay admin
            await r.start(leader_elect=False)
            r.kube = admin
            name = new_name()
            await r.api.create(r.claim(name))
            if refused == "node-patch":

                async def named() -> dict[str, Any] | None:
                    obj = await r.api.get(name)
                    c = cond.get_condition(obj, "Registered")
                    return obj if c and c["status"] == "False" and c["reason"] == "Forbidden" else None

                obj = await eventually(named, 60, "Registered=False Forbidden")
                message = cond.get_condition(obj, "Registered")["message"]  # type: ignore[index]
                assert "patch Node" in message and "forbidden" in message, message
                assert cond.get_condition(obj, "Ready")["reason"] == "Forbidden"  # type: ignore[index]
            else:

                async def event() -> dict[str, Any] | None:
                    events = await admin.list_all(EVENTS, "default")
                    hits = [e for e in events if e["involvedObject"].get("name") == name
                            and e.get("reason") == "Forbidden"]  # fmt: skip
                    return hits[0] if hits else None

                found = await eventually(event, 60, "a Forbidden Event on the claim")
                assert "status" in found["message"] and "forbidden" in found["message"], found["message"]
            _apply_role(control_plane, tmp_path, role, namespace, _rules(node_patch=True, status_patch=True))

            async def ready() -> bool:
                return cond.is_true(await r.api.get(name), "Ready")

            await eventually(ready, 90, "the claim Ready once the right is granted")
    finally:
        await narrow.close()
        control_plane.kubectl("delete", "clusterrolebinding,clusterrole", role, check=False)
