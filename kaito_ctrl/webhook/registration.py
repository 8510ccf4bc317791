"""Registering the webhook with the apiserver and keeping its caBundle current.

Real clusters reach the webhook through its Service (``service`` clientConfig); a local apiserver cannot
reach ClusterIPs, so the sandbox and tests register it by URL on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from dataclasses import dataclass
from typing import Any

import structlog

from kaito_ctrl.kube.clock import REAL_CLOCK, Clock
from kaito_ctrl.kube.protocols import Applier
from kaito_ctrl.kube.resources import MUTATING_WEBHOOKS, VALIDATING_WEBHOOKS
from kaito_ctrl.webhook.certs import CertPolicy, CertStore
from kaito_ctrl.webhook.server import MUTATE_PATH, VALIDATE_PATH, WebhookServer

log = structlog.get_logger(__name__)

VALIDATING_NAME = "kaito-ctrl-validating-webhook"
MUTATING_NAME = "kaito-ctrl-mutating-webhook"


ApplyClient = Applier


@dataclass(frozen=True)
class ClientConfig:
    """Either a Service (namespace, name, port) or a URL base such as https://127.0.0.1:9443."""

    service_namespace: str = "kaito-system"
    service_name: str = "kaito-ctrl-webhook"
    service_port: int = 443
    url_base: str | None = None

    def render(self, path: str, ca_bundle: bytes) -> dict[str, Any]:
        cfg: dict[str, Any] = {"caBundle": base64.b64encode(ca_bundle).decode()}
        if self.url_base:
            cfg["url"] = self.url_base.rstrip("/") + path
        else:
            cfg["service"] = {
                "namespace": self.service_namespace,
                "name": self.service_name,
                "path": path,
                "port": self.service_port,
            }
        return cfg


def _webhook(name: str, path: str, client: ClientConfig, ca_bundle: bytes) -> dict[str, Any]:
    return {
        "name": name,
        "clientConfig": client.render(path, ca_bundle),
        "rules": [
            {
                "apiGroups": ["kaito.sh"],
                "apiVersions": ["v1alpha1", "v1beta1"],
                "operations": ["CREATE", "UPDATE"],
                "resources": ["workspaces"],
                "scope": "Namespaced",
            }
        ],
        "failurePolicy": "Fail",
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "timeoutSeconds": 10,
        "matchPolicy": "Equivalent",
    }


def configurations(client: ClientConfig, ca_bundle: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    validating = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": VALIDATING_NAME},
        "webhooks": [_webhook("validation.workspace.kaito.sh", VALIDATE_PATH, client, ca_bundle)],
    }
    mutating = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": MUTATING_NAME},
        "webhooks": [
            dict(
                _webhook("defaulting.workspace.kaito.sh", MUTATE_PATH, client, ca_bundle),
                reinvocationPolicy="Never",
            )
        ],
    }
    return validating, mutating


async def register(kube: ApplyClient, client: ClientConfig, ca_bundle: bytes) -> None:
    validating, mutating = configurations(client, ca_bundle)
    await kube.apply(VALIDATING_WEBHOOKS, validating)
    await kube.apply(MUTATING_WEBHOOKS, mutating)


class WebhookRunner:
    """Certificates, server, registration and rotation as one runnable for the manager (every replica)."""

    def __init__(
        self,
        kube: Any,
        policy: CertPolicy,
        server: WebhookServer,
        client_config: ClientConfig,
        *,
        secret_name: str = "kaito-ctrl-webhook-cert",  # noqa: S107 - a Secret name, not a password
        check_interval: float = 3600.0,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        self.kube = kube
        self.policy = policy
        self.server = server
        self.client_config = client_config
        self.store = CertStore(kube, policy, secret_name, clock)
        self.check_interval = check_interval
        self.clock = clock
        self.ready = asyncio.Event()

    async def start(self) -> None:
        bundle = await self.store.ensure()
        self.server.load(bundle)
        await self.server.start()
        await register(self.kube, self._client_config(), bundle.ca_bundle)
        self.ready.set()

    def _client_config(self) -> ClientConfig:
        if self.client_config.url_base and self.client_config.url_base.endswith(":0"):
            return ClientConfig(url_base=self.client_config.url_base[:-2] + f":{self.server.port}")
        return self.client_config

    async def rotate(self, *, force: bool = False) -> None:
        """Rotate if due (or forced): publish the CA bundle with both CAs first, then swap the certificate."""
        bundle = await self.store.ensure(force_rotate=force)
        await register(self.kube, self._client_config(), bundle.ca_bundle)
        self.server.load(bundle)

    async def run(self) -> None:
        await self.start()
        try:
            while True:
                await self.clock.sleep(self.check_interval)
                try:
                    await self.rotate()
                except Exception as e:  # keep serving with the current certificate; retry next interval
                    log.warning("webhook certificate check failed", error=str(e)[:300])
        finally:
            # Not serving any more: readiness drops until the supervisor's restart registers again.
            self.ready.clear()
            with contextlib.suppress(Exception):
                await self.server.stop()
