"""The webhook's serving certificate: generated at start, kept in a Secret so replicas share it, and rotated
before it expires. The CA bundle handed to the apiserver keeps the previous CA too, so connections made with
either certificate verify while a rotation is in flight."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from kaito_ctrl import pki
from kaito_ctrl.kube.clock import REAL_CLOCK, Clock
from kaito_ctrl.kube.errors import Conflict, NotFound
from kaito_ctrl.kube.protocols import CreateReplace
from kaito_ctrl.kube.resources import SECRETS

DAY = 86400.0


SecretClient = CreateReplace


@dataclass(frozen=True)
class CertBundle:
    """The CA certificate (its key signs the leaf once and is then discarded: rotation makes a new CA, so
    nothing needs the old CA key, and a key that is never stored cannot leak from the Secret)."""

    ca_cert: bytes
    cert: bytes
    key: bytes
    previous_ca: bytes = b""

    @property
    def ca_bundle(self) -> bytes:
        return self.ca_cert + self.previous_ca

    @property
    def expires(self) -> float:
        return pki.not_after(self.cert)


@dataclass
class CertPolicy:
    service: str
    namespace: str
    validity_days: float = 365.0
    rotate_before_days: float = 30.0
    ip_addresses: tuple[str, ...] = ("127.0.0.1",)

    @property
    def dns_names(self) -> tuple[str, ...]:
        base = f"{self.service}.{self.namespace}.svc"
        return (self.service, f"{self.service}.{self.namespace}", base, f"{base}.cluster.local", "localhost")


def generate(policy: CertPolicy, previous: CertBundle | None = None) -> CertBundle:
    ca = pki.make_ca(f"kaito-ctrl-webhook-ca-{policy.namespace}", days=policy.validity_days + 1)
    leaf = pki.issue(
        ca,
        f"{policy.service}.{policy.namespace}.svc",
        dns_names=policy.dns_names,
        ip_addresses=policy.ip_addresses,
        server=True,
        days=policy.validity_days,
    )
    return CertBundle(ca.cert_pem, leaf.cert_pem, leaf.key_pem, previous.ca_cert if previous else b"")


def needs_rotation(bundle: CertBundle, policy: CertPolicy, clock: Clock = REAL_CLOCK) -> bool:
    return bundle.expires - clock.now() < policy.rotate_before_days * DAY


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def to_secret(bundle: CertBundle, name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/name": "kaito-ctrl"},
        },
        "data": {
            "tls.crt": _b64(bundle.cert),
            "tls.key": _b64(bundle.key),
            "ca.crt": _b64(bundle.ca_cert),
            "previous-ca.crt": _b64(bundle.previous_ca),
        },
    }


def from_secret(secret: dict[str, Any]) -> CertBundle | None:
    data = secret.get("data") or {}
    try:
        return CertBundle(
            base64.b64decode(data["ca.crt"]),
            base64.b64decode(data["tls.crt"]),
            base64.b64decode(data["tls.key"]),
            base64.b64decode(data.get("previous-ca.crt", "")),
        )
    except (KeyError, ValueError):
        return None


class CertStore:
    """Loads, creates and rotates the bundle in a Secret; the first replica to write wins, the others adopt it."""

    def __init__(self, client: SecretClient, policy: CertPolicy, secret_name: str, clock: Clock = REAL_CLOCK):
        self.client = client
        self.policy = policy
        self.secret_name = secret_name
        self.clock = clock

    async def ensure(self, *, force_rotate: bool = False) -> CertBundle:
        try:
            secret: dict[str, Any] | None = await self.client.get(
                SECRETS, self.secret_name, self.policy.namespace
            )
        except NotFound:
            secret = None
        current = from_secret(secret) if secret else None
        if current is not None and not force_rotate and not needs_rotation(current, self.policy, self.clock):
            return current
        fresh = generate(self.policy, current)
        obj = to_secret(fresh, self.secret_name, self.policy.namespace)
        try:
            if secret is None:
                await self.client.create(SECRETS, obj, self.policy.namespace)
            else:
                obj["metadata"]["resourceVersion"] = secret["metadata"]["resourceVersion"]
                await self.client.replace(SECRETS, obj)
        except Conflict:
            # Another replica wrote first: use theirs.
            theirs = from_secret(await self.client.get(SECRETS, self.secret_name, self.policy.namespace))
            if theirs is not None:
                return theirs
            raise
        return fresh
