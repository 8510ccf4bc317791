"""A Workspace whose spec today's rules refuse (its preset left the catalog after an upgrade) can still be
labelled, lose its finalizer and be deleted through the real apiserver with the webhook registered, while a
change to its spec is still judged. Real kube-apiserver, real webhook over TLS."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from kaito_ctrl.kube.client import KubeClient
from kaito_ctrl.kube.errors import ApiError, Invalid, NotFound
from kaito_ctrl.kube.resources import WORKSPACES
from kaito_ctrl.testing.controlplane import ControlPlane
from tests.cases.invalid_workspaces import inference_ws
from tests.integration.test_workspace_controller import kube as kube
from tests.integration.webhooks import registered_webhook

FINALIZER = "workspace.kaito.io/finalizer"


async def _webhook_judges(kube: KubeClient, namespace: str) -> None:
    """Wait until the apiserver calls the webhook (a new configuration takes a moment to be used)."""
    probe = inference_ws("probe")
    probe["inference"]["preset"]["name"] = "no-such-preset"
    for _ in range(100):
        try:
            await kube.create(WORKSPACES, probe, namespace)
        except Invalid:
            return
        with contextlib.suppress(NotFound):
            await kube.delete(WORKSPACES, "probe", namespace)
        await asyncio.sleep(0.1)  # polling interval of a deadline-bounded wait
    raise AssertionError("the webhook never refused an unknown preset")


async def test_a_workspace_todays_rules_refuse_can_still_be_deleted(
    kube: KubeClient, namespace: str, control_plane: ControlPlane
) -> None:
    # Stored before the webhook judged it: the state an upgrade that retired its preset leaves behind.
    ws = inference_ws("retired")
    ws["inference"]["preset"]["name"] = "a-preset-retired-by-an-upgrade"
    ws["metadata"]["finalizers"] = [FINALIZER]
    await kube.create(WORKSPACES, ws, namespace)
    async with registered_webhook(kube, control_plane, "kaito-ratchet-webhook"):
        await _webhook_judges(kube, namespace)
        # A spec change is judged in full: refused.
        with pytest.raises(Invalid, match="a-preset-retired-by-an-upgrade"):
            await kube.merge_patch(WORKSPACES, "retired", {"resource": {"count": 2}}, namespace)
        # What does not touch the spec goes through: a label, then deletion and the finalizer's removal.
        await kube.merge_patch(WORKSPACES, "retired", {"metadata": {"labels": {"team": "a"}}}, namespace)
        await kube.delete(WORKSPACES, "retired", namespace)
        await kube.merge_patch(WORKSPACES, "retired", {"metadata": {"finalizers": None}}, namespace)
        with pytest.raises(NotFound):
            for _ in range(100):
                await kube.get(WORKSPACES, "retired", namespace)
                await asyncio.sleep(0.1)  # polling interval of a deadline-bounded wait
    with contextlib.suppress(ApiError):
        await kube.merge_patch(WORKSPACES, "retired", {"metadata": {"finalizers": None}}, namespace)
