"""The admission webhook registered with the real apiserver (URL client config): every invalid case is
refused naming its field, the examples pass, defaults are filled in, and a certificate rotation keeps the
apiserver's calls succeeding on new connections."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kaito_ctrl import pki
from kaito_ctrl.kube.client import KubeClient
from kaito_ctrl.kube.errors import ApiError
from kaito_ctrl.kube.resources import WORKSPACES, WORKSPACES_V1ALPHA1
from kaito_ctrl.testing.controlplane import ControlPlane
from kaito_ctrl.webhook.registration import WebhookRunner
from tests.cases.invalid_workspaces import CASES, inference_ws
from tests.integration.webhooks import registered_webhook

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
async def webhook(control_plane: ControlPlane) -> AsyncIterator[tuple[WebhookRunner, KubeClient]]:
    control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "manifests/crds"))
    control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/workspaces.kaito.sh")
    kube = await KubeClient.from_kubeconfig(control_plane.kubeconfig, qps=200, burst=200)
    async with registered_webhook(kube, control_plane, "kaito-webhook-test") as runner:
        yield runner, kube
    await kube.close()


async def _create_until_webhook_answers(kube: KubeClient, obj: dict[str, Any], ns: str) -> dict[str, Any]:
    """The apiserver picks up a new webhook configuration within a second or so; retry until it does."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return await kube.create(WORKSPACES, obj, ns)
        except ApiError as e:
            if "failed calling webhook" not in e.message or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)  # polling interval of a deadline-bounded wait


async def test_invalid_workspaces_are_refused_naming_the_field(
    webhook: tuple[WebhookRunner, KubeClient], namespace: str
) -> None:
    runner, kube = webhook
    await _create_until_webhook_answers(kube, inference_ws("warmup"), namespace)
    before = runner.server.requests
    failures = []
    for case_id, obj, field in CASES:
        obj = dict(obj, metadata={**obj.get("metadata", {}), "name": obj["metadata"]["name"]})
        if case_id != "name-not-dns-label":
            obj["metadata"]["name"] = case_id[:50]
        try:
            await kube.create(WORKSPACES, obj, namespace)
            failures.append(f"{case_id}: accepted")
        except ApiError as e:
            if field not in e.message:
                failures.append(f"{case_id}: message does not name {field}: {e.message}")
    assert not failures, "\n".join(failures)
    assert runner.server.requests > before, "the webhook itself was consulted"


async def test_examples_are_accepted_and_defaulted(
    webhook: tuple[WebhookRunner, KubeClient], namespace: str
) -> None:
    _, kube = webhook
    for path in sorted((REPO / "examples").rglob("*.yaml")):
        obj = yaml.safe_load(path.read_text())
        res = WORKSPACES_V1ALPHA1 if obj["apiVersion"].endswith("v1alpha1") else WORKSPACES
        created = (
            await _create_until_webhook_answers(kube, obj, namespace)
            if res is WORKSPACES
            else await kube.create(res, obj, namespace)
        )
        if created.get("inference", {}).get("preset"):
            assert created["inference"]["preset"]["accessMode"] == "public"
        for adapter in created.get("inference", {}).get("adapters", []):
            assert adapter["strength"]


async def test_rotation_keeps_the_apiserver_calling(
    webhook: tuple[WebhookRunner, KubeClient], namespace: str
) -> None:
    runner, kube = webhook
    await _create_until_webhook_answers(kube, inference_ws("before-rotation"), namespace)
    old_serial = runner.server.serving_serial
    await runner.rotate(force=True)
    new_serial = runner.server.serving_serial
    assert new_serial != old_serial
    # Let the apiserver's keep-alive connections (made with the old certificate) close, so its next call
    # must handshake with the new one and verify it against the caBundle we published.
    deadline = time.monotonic() + 30
    while runner.server.open_connections and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)  # polling interval of a deadline-bounded wait
    assert runner.server.open_connections == 0
    before = runner.server.requests
    await _create_until_webhook_answers(kube, inference_ws("after-rotation"), namespace)
    assert runner.server.requests > before
    # A fresh handshake is served the new certificate, which chains to the newly published CA.
    bundle = await runner.store.ensure()
    ctx = ssl.create_default_context(cadata=bundle.ca_bundle.decode())
    _, writer = await asyncio.open_connection("127.0.0.1", runner.server.port, ssl=ctx)
    peer = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    from cryptography import x509

    assert x509.load_der_x509_certificate(peer).serial_number == new_serial == pki.serial(bundle.cert)
