"""Where the AKS cluster is and how to reach ARM, from environment variables (as gpu-provisioner reads them)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

CredentialKind = Literal["default", "workload", "managed", "static"]
CREDENTIAL_KINDS: tuple[CredentialKind, ...] = ("default", "workload", "managed", "static")
PUBLIC_ARM = "https://management.azure.com"


def _credential_kind(raw: str) -> CredentialKind:
    for kind in CREDENTIAL_KINDS:
        if raw == kind:
            return kind
    raise ValueError(f"AZURE_CREDENTIAL_KIND must be one of {', '.join(CREDENTIAL_KINDS)}, not {raw!r}")


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = _first(env, name)
    return float(raw) if raw else default


def _first(env: Mapping[str, str], *names: str) -> str:
    return next((env[n].strip() for n in names if env.get(n, "").strip()), "")


@dataclass(frozen=True)
class AzureSettings:
    subscription_id: str
    resource_group: str
    cluster_name: str
    location: str = ""
    # The cluster's node resource group (MC_...), only used to recognise providerIDs.
    node_resource_group: str = ""
    # ARM endpoint; None is public Azure. The fake ARM server is given here with its CA bundle.
    arm_endpoint: str | None = None
    ca_bundle: str | None = None
    # Token audience; defaults to "<arm endpoint>/.default".
    arm_audience: str | None = None
    credential: CredentialKind = "default"
    client_id: str | None = None
    tenant_id: str | None = None
    # Only for credential "static" (the fake ARM server); never logged, and kept out of repr so a settings
    # dump in a traceback or a debug log cannot leak it.
    static_token: str | None = field(default=None, repr=False)
    # Overrides the SDK's AKS api-version when a region or cloud lags behind it.
    aks_api_version: str | None = None
    # Seconds between LRO polls when ARM sends no Retry-After (the SDK default is 30).
    polling_interval: float = 10.0
    # Retries inside the SDK for 408/429/5xx and connection errors; a Retry-After above the cap is not waited
    # out inline but returned to the caller as Throttled(retry_after) so no worker sleeps for minutes.
    retry_total: int = 3
    retry_backoff_factor: float = 0.8
    max_inline_retry_after: float = 10.0
    # Bound on waiting for an operation someone else started (a create resumed after a restart).
    operation_timeout: float = 1800.0

    @property
    def scopes(self) -> list[str]:
        audience = self.arm_audience or (self.arm_endpoint or PUBLIC_ARM).rstrip("/")
        return [audience if audience.endswith("/.default") else audience + "/.default"]

    def missing(self) -> list[str]:
        required = {
            "AZURE_SUBSCRIPTION_ID": self.subscription_id,
            "AZURE_RESOURCE_GROUP": self.resource_group,
            "AZURE_CLUSTER_NAME": self.cluster_name,
            "LOCATION": self.location,
        }
        out = [name for name, value in required.items() if not value]
        if self.credential == "static" and not self.static_token:
            out.append("ARM_STATIC_TOKEN")
        return out

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AzureSettings:
        """Read settings; the ARM_* names gpu-provisioner uses are accepted as fallbacks."""
        env = os.environ if env is None else env
        kind = _first(env, "AZURE_CREDENTIAL_KIND").lower()
        if not kind:
            if _first(env, "ARM_STATIC_TOKEN"):
                kind = "static"
            elif _first(env, "DEPLOYMENT_MODE").lower() == "managed":
                kind = "default"
            elif _first(env, "AZURE_FEDERATED_TOKEN_FILE"):
                kind = "workload"
            else:
                kind = "default"
        return cls(
            subscription_id=_first(env, "AZURE_SUBSCRIPTION_ID", "ARM_SUBSCRIPTION_ID"),
            resource_group=_first(env, "AZURE_RESOURCE_GROUP", "ARM_RESOURCE_GROUP"),
            cluster_name=_first(env, "AZURE_CLUSTER_NAME"),
            location=_first(env, "AZURE_LOCATION", "LOCATION"),
            node_resource_group=_first(env, "AZURE_NODE_RESOURCE_GROUP"),
            arm_endpoint=_first(env, "ARM_BASE_URL") or None,
            ca_bundle=_first(env, "ARM_CA_BUNDLE") or None,
            arm_audience=_first(env, "ARM_AUDIENCE") or None,
            credential=_credential_kind(kind),
            client_id=_first(env, "AZURE_CLIENT_ID") or None,
            tenant_id=_first(env, "AZURE_TENANT_ID") or None,
            static_token=_first(env, "ARM_STATIC_TOKEN") or None,
            aks_api_version=_first(env, "AKS_API_VERSION") or None,
            polling_interval=_number(env, "ARM_POLLING_INTERVAL", cls.polling_interval),
            retry_total=int(_number(env, "ARM_RETRY_TOTAL", cls.retry_total)),
            max_inline_retry_after=_number(env, "ARM_MAX_INLINE_RETRY_AFTER", cls.max_inline_retry_after),
            operation_timeout=_number(env, "ARM_OPERATION_TIMEOUT", cls.operation_timeout),
        )
