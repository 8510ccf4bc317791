"""Azure credentials for ARM: the azure-identity chain in a cluster, a fixed token for the fake ARM server."""

from __future__ import annotations

import time
from typing import Any

from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions
from azure.core.credentials_async import AsyncTokenCredential
from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential, WorkloadIdentityCredential

from kaito_ctrl.controllers.provisioner.cloud.config import PUBLIC_ARM, AzureSettings

# ARM of Azure's public and sovereign clouds, where only a refreshing credential can work.
AZURE_ARM_HOSTS = frozenset(
    {
        PUBLIC_ARM.split("://", 1)[1],
        "management.usgovcloudapi.net",
        "management.chinacloudapi.cn",
        "management.microsoftazure.de",
    }
)


def is_azure_arm(endpoint: str) -> bool:
    host = endpoint.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0].lower()
    return host in AZURE_ARM_HOSTS


class StaticTokenCredential:
    """Hands out one fixed bearer token (for the fake ARM server; never for Azure)."""

    def __init__(self, token: str, lifetime: float = 3600.0) -> None:
        self._token = token
        self._lifetime = lifetime

    def _expiry(self) -> int:
        return int(time.time() + self._lifetime)

    async def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        return AccessToken(self._token, self._expiry())

    async def get_token_info(
        self, *scopes: str, options: TokenRequestOptions | None = None
    ) -> AccessTokenInfo:
        return AccessTokenInfo(self._token, self._expiry())

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> StaticTokenCredential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def __repr__(self) -> str:
        return "StaticTokenCredential(token=[redacted])"


def build_credential(settings: AzureSettings) -> AsyncTokenCredential:
    """The credential ``settings.credential`` names; azure-identity reads the AZURE_* variables itself.

    ``workload`` is gpu-provisioner's self-hosted mode (federated token file injected by the workload identity
    webhook), ``default`` its managed mode; ``managed`` is a user-assigned managed identity by client id.
    """
    kind = settings.credential
    if kind == "static":
        if not settings.static_token:
            raise ValueError("credential 'static' needs ARM_STATIC_TOKEN")
        if settings.arm_endpoint is None or is_azure_arm(settings.arm_endpoint):
            # A fixed token never refreshes: against Azure it would work for an hour and then fail every call.
            raise ValueError(
                "AZURE_CREDENTIAL_KIND 'static' is only for the fake ARM server (ARM_BASE_URL); "
                "against Azure use 'workload', 'managed' or 'default'"
            )
        return StaticTokenCredential(settings.static_token)
    if kind == "workload":
        return WorkloadIdentityCredential(tenant_id=settings.tenant_id, client_id=settings.client_id)
    if kind == "managed":
        return ManagedIdentityCredential(client_id=settings.client_id)
    if settings.client_id:
        return DefaultAzureCredential(managed_identity_client_id=settings.client_id)
    return DefaultAzureCredential()
