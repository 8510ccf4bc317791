"""The admission webhook registered with the real apiserver for a test, and removed after it: one helper for
every integration test that needs the apiserver to call kaito-ctrl's webhook."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from kaito_ctrl.kube.client import KubeClient
from kaito_ctrl.kube.errors import Conflict
from kaito_ctrl.kube.resources import NAMESPACES
from kaito_ctrl.testing.controlplane import ControlPlane
from kaito_ctrl.webhook.certs import CertPolicy
from kaito_ctrl.webhook.registration import MUTATING_NAME, VALIDATING_NAME, ClientConfig, WebhookRunner
from kaito_ctrl.webhook.server import WebhookServer


def runner_for(kube: KubeClient, server: WebhookServer, cert_namespace: str) -> WebhookRunner:
    """A webhook runner whose certificate Secret lives in ``cert_namespace`` and whose URL is the server's port."""
    return WebhookRunner(
        kube,
        CertPolicy("kaito-ctrl-webhook", cert_namespace),
        server,
        ClientConfig(url_base="https://127.0.0.1:0"),
    )


def delete_configurations(control_plane: ControlPlane) -> None:
    """Unregister the webhook so later tests on the shared control plane are not sent to a server that is gone."""
    control_plane.kubectl("delete", "validatingwebhookconfiguration", VALIDATING_NAME, check=False)
    control_plane.kubectl("delete", "mutatingwebhookconfiguration", MUTATING_NAME, check=False)


@contextlib.asynccontextmanager
async def registered_webhook(
    kube: KubeClient, control_plane: ControlPlane, cert_namespace: str, server: WebhookServer | None = None
) -> AsyncIterator[WebhookRunner]:
    with contextlib.suppress(Conflict):
        await kube.create(NAMESPACES, {"metadata": {"name": cert_namespace}})
    runner = runner_for(kube, server or WebhookServer("127.0.0.1", 0, keepalive_timeout=0.5), cert_namespace)
    task = asyncio.create_task(runner.run())
    try:
        await asyncio.wait_for(runner.ready.wait(), 30)
        yield runner
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        delete_configurations(control_plane)
