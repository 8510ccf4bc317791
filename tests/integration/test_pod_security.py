"""Pod Security baseline for Workspaces, through the real apiserver and the real webhook: a template that
shares the host's network, runs privileged, mounts hostPath or uses another ServiceAccount, or a tuning
hostPath volume, is refused naming the field; an administrator's namespace annotation allows it; a plain
template passes."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kaito_ctrl.api.podsecurity import ALLOW_ANNOTATION, workspace_violations
from kaito_ctrl.cli.run import namespace_allows_reader
from kaito_ctrl.kube.client import KubeClient
from kaito_ctrl.kube.errors import ApiError
from kaito_ctrl.kube.resources import NAMESPACES, WORKSPACES
from kaito_ctrl.testing.controlplane import ControlPlane
from kaito_ctrl.webhook.server import WebhookServer
from tests.cases.invalid_workspaces import tuning_ws
from tests.integration.webhooks import registered_webhook

REPO = Path(__file__).resolve().parents[2]

TEMPLATE: dict[str, Any] = {
    "apiVersion": "kaito.sh/v1beta1",
    "kind": "Workspace",
    "metadata": {"name": "tpl"},
    "resource": {"labelSelector": {"matchLabels": {"apps": "custom"}}},
    "inference": {
        "template": {"spec": {"containers": [{"name": "server", "image": "myregistry.azurecr.io/server:1"}]}}
    },
}


def _template(**spec: Any) -> dict[str, Any]:
    obj = copy.deepcopy(TEMPLATE)
    obj["inference"]["template"]["spec"].update(spec)
    return obj


def _privileged() -> dict[str, Any]:
    obj = _template()
    obj["inference"]["template"]["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    return obj


BAD = [
    ("host-network", _template(hostNetwork=True), "inference.template.spec.hostNetwork"),
    ("host-pid", _template(hostPID=True), "inference.template.spec.hostPID"),
    ("privileged", _privileged(), "inference.template.spec.containers[0].securityContext.privileged"),
    (
        "hostpath",
        _template(volumes=[{"name": "root", "hostPath": {"path": "/"}}]),
        "inference.template.spec.volumes[0].hostPath",
    ),
    (
        "service-account",
        _template(serviceAccountName="kaito-ctrl"),
        "inference.template.spec.serviceAccountName",
    ),
]


@pytest.mark.parametrize(("case", "obj", "field"), BAD, ids=[b[0] for b in BAD])
def test_violations_name_the_field(case: str, obj: dict[str, Any], field: str) -> None:
    assert [p for p, _ in workspace_violations(obj)] == [field]


def test_tuning_hostpath_volume_is_a_violation() -> None:
    obj = tuning_ws()
    obj["tuning"]["input"] = {"name": "in", "volumeSource": {"hostPath": {"path": "/var/lib/kubelet"}}}
    assert [p for p, _ in workspace_violations(obj)] == ["tuning.input.volumeSource.hostPath"]
    assert workspace_violations(TEMPLATE) == []


@pytest.fixture(scope="module")
async def webhook(control_plane: ControlPlane) -> AsyncIterator[KubeClient]:
    control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "manifests/crds"))
    control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/workspaces.kaito.sh")
    kube = await KubeClient.from_kubeconfig(control_plane.kubeconfig, qps=200, burst=200)
    server = WebhookServer(
        "127.0.0.1", 0, keepalive_timeout=0.5, namespace_allows=namespace_allows_reader(kube)
    )
    async with registered_webhook(kube, control_plane, "kaito-podsec-test", server):
        yield kube
    await kube.close()


async def _create(kube: KubeClient, obj: dict[str, Any], ns: str) -> dict[str, Any]:
    """Retry while the apiserver has not picked up the new webhook configuration yet."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        try:
            return await kube.create(WORKSPACES, obj, ns)
        except ApiError as e:
            if "failed calling webhook" not in e.message or loop.time() > deadline:
                raise
            await asyncio.sleep(0.2)  # polling interval of a deadline-bounded wait


async def test_baseline_refused_unless_the_namespace_is_annotated(
    webhook: KubeClient, namespace: str
) -> None:
    kube = webhook
    await _create(kube, dict(TEMPLATE, metadata={"name": "plain"}), namespace)  # a plain template passes
    for case, obj, field in BAD:
        obj = dict(obj, metadata={"name": case})
        with pytest.raises(ApiError) as refused:
            await kube.create(WORKSPACES, obj, namespace)
        assert field in refused.value.message and ALLOW_ANNOTATION in refused.value.message, case
    await kube.merge_patch(NAMESPACES, namespace, {"metadata": {"annotations": {ALLOW_ANNOTATION: "true"}}})
    created = await kube.create(WORKSPACES, dict(BAD[0][1], metadata={"name": "allowed"}), namespace)
    assert created["inference"]["template"]["spec"]["hostNetwork"] is True
