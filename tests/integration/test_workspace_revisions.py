"""Revision history on the real apiserver, as Kaito keeps it (pkg/workspace/controllers/workspace_controller.go
syncControllerRevision and its tests): each distinct spec is a ControllerRevision ``<ws>-<hash[:5]>`` numbered
1, 2, ..., labelled ``workspace.kaito.io/name``, owned by the Workspace; the last ten are kept; going back to an
earlier spec makes that revision current again. The controller's use of it (revision 2 on the Workspace and its
workload after an update) is in test_workspace_controller.py."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kaito_ctrl.api import labels as L
from kaito_ctrl.controllers.workspace import revisions
from kaito_ctrl.controllers.workspace.spec import WorkspaceSpec
from kaito_ctrl.kube.client import KubeClient
from kaito_ctrl.kube.resources import CONTROLLER_REVISIONS, WORKSPACES
from kaito_ctrl.testing.controlplane import ControlPlane
from tests.cases.invalid_workspaces import inference_ws

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def kube(control_plane: ControlPlane) -> AsyncIterator[KubeClient]:
    control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "manifests/crds"))
    control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/workspaces.kaito.sh")
    client = await KubeClient.from_kubeconfig(control_plane.kubeconfig)
    yield client
    await client.close()


async def _stored(kube: KubeClient, namespace: str, name: str) -> dict[str, Any]:
    ws = inference_ws(name)
    ws["resource"] = {"instanceType": "Standard_NC6s_v3", "labelSelector": {"matchLabels": {"a": "b"}}}
    return dict(await kube.create(WORKSPACES, ws, namespace))


def _with_strength(stored: dict[str, Any], i: int, annotations: dict[str, str]) -> WorkspaceSpec:
    obj = copy.deepcopy(stored)
    obj["inference"]["adapters"] = [
        {"source": {"name": "a", "image": "registry.invalid/a:1"}, "strength": f"0.{i:02d}"}
    ]
    obj["metadata"].setdefault("annotations", {}).update(annotations)
    return WorkspaceSpec(obj)


async def _history(kube: KubeClient, namespace: str, name: str) -> list[dict[str, Any]]:
    items = await kube.list_all(
        CONTROLLER_REVISIONS, namespace, label_selector=f"{L.LABEL_REVISION_OF}={name}"
    )
    return sorted(items, key=lambda r: int(r["revision"]))


async def test_each_spec_is_a_numbered_revision_and_ten_are_kept(kube: KubeClient, namespace: str) -> None:
    stored = await _stored(kube, namespace, "revs")
    annotations: dict[str, str] = {}
    hashes = []
    for i in range(12):
        ws = _with_strength(stored, i, annotations)
        got = await revisions.ensure_revision(kube, ws)
        assert got == {L.ANNOTATION_HASH: ws.spec_hash, L.ANNOTATION_REVISION: str(i + 1)}
        annotations = got
        hashes.append(ws.spec_hash)
        # Unchanged spec, annotations current: nothing to do, nothing read.
        assert await revisions.ensure_revision(kube, _with_strength(stored, i, annotations)) == {}
    history = await _history(kube, namespace, "revs")
    assert [int(r["revision"]) for r in history] == list(range(3, 13)), "the last ten revisions are kept"
    latest = history[-1]
    assert latest["metadata"]["name"] == f"revs-{hashes[-1][:5]}"
    assert latest["metadata"]["annotations"][L.ANNOTATION_HASH] == hashes[-1]
    owner = latest["metadata"]["ownerReferences"][0]
    assert owner["uid"] == stored["metadata"]["uid"] and owner["kind"] == "Workspace" and owner["controller"]
    assert latest["data"]["inference"]["adapters"][0]["strength"] == "0.11"
    # Going back to the spec of revision 11 makes revision 11 current again; nothing new is recorded.
    back = await revisions.ensure_revision(kube, _with_strength(stored, 10, annotations))
    assert back == {L.ANNOTATION_HASH: hashes[10], L.ANNOTATION_REVISION: "11"}
    assert len(await _history(kube, namespace, "revs")) == 10


async def test_a_revision_a_racing_reconcile_made_first_is_used(kube: KubeClient, namespace: str) -> None:
    stored = await _stored(kube, namespace, "race")
    ws = _with_strength(stored, 1, {})
    first = await revisions.ensure_revision(kube, ws)

    class ListedBeforeTheOtherCreated:
        """The apiserver as a reconcile sees it that listed the history just before another one created."""

        def __getattr__(self, name: str) -> Any:
            return getattr(kube, name)

        async def list_all(self, *args: Any, **kw: Any) -> list[dict[str, Any]]:
            return []

    again = await revisions.ensure_revision(ListedBeforeTheOtherCreated(), _with_strength(stored, 1, {}))
    assert again == first
    assert len(await _history(kube, namespace, "race")) == 1
