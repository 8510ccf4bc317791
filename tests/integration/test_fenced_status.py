"""Status writes are fenced by resourceVersion against the real apiserver: a status computed from a stale copy
(a lagging cache, or a deposed leader's last reconcile) is refused with 409 and overwrites nothing; the same
write from the current object goes through."""

from __future__ import annotations

from typing import Any

import pytest

from kaito_ctrl.controllers.workspace.nodes import BYONodes
from kaito_ctrl.controllers.workspace.reconciler import Observed, WorkspaceReconciler
from kaito_ctrl.controllers.workspace.spec import WorkspaceSpec
from kaito_ctrl.kube.client import KubeClient
from kaito_ctrl.kube.errors import Conflict
from kaito_ctrl.kube.resources import WORKSPACES
from kaito_ctrl.kube.store import Store
from tests.cases.invalid_workspaces import inference_ws
from tests.integration.test_workspace_controller import kube as kube


class _Cache:
    def __init__(self) -> None:
        self.store = Store()


def _reconciler(client: KubeClient) -> WorkspaceReconciler:
    return WorkspaceReconciler(
        client, BYONodes(_Cache()), workspaces=_Cache(), deployments=_Cache(), statefulsets=_Cache(),  # type: ignore[arg-type]
        pods=_Cache(), jobs=_Cache(), services=_Cache(), image_registry="mcr.microsoft.com/aks/kaito",  # type: ignore[arg-type]
    )  # fmt: skip


def _state(obj: dict[str, Any]) -> Any:
    return (obj.get("status") or {}).get("targetNodeCount")


async def test_a_status_from_a_stale_object_is_refused_and_overwrites_nothing(
    kube: KubeClient, namespace: str
) -> None:
    ws = inference_ws("fenced")
    ws["metadata"]["namespace"] = namespace
    created = await kube.create(WORKSPACES, ws, namespace)
    stale = await kube.get(WORKSPACES, "fenced", namespace)
    # Someone else moves the object on (here a label; a successor's status write does the same).
    await kube.merge_patch(WORKSPACES, "fenced", {"metadata": {"labels": {"moved": "on"}}}, namespace)
    reconciler = _reconciler(kube)
    with pytest.raises(Conflict):
        await reconciler.write_status(WorkspaceSpec(stale), Observed(target=3))
    live = await kube.get(WORKSPACES, "fenced", namespace)
    assert _state(live) is None, "the stale status was written"
    await reconciler.write_status(WorkspaceSpec(live), Observed(target=3))
    after = await kube.get(WORKSPACES, "fenced", namespace)
    assert _state(after) == 3 and after["status"]["conditions"]
    assert created["metadata"]["uid"] == after["metadata"]["uid"]
