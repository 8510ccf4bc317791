"""Azure settings from the environment, credentials, and the provider's ARM JSON mapping."""

from __future__ import annotations

from pathlib import Path

import pytest
from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential, WorkloadIdentityCredential

from kaito_ctrl.controllers.provisioner.cloud.azure import (
    _location_restriction,
    pool_from_arm,
    spec_to_arm,
)
from kaito_ctrl.controllers.provisioner.cloud.base import AgentPoolSpec, Reason
from kaito_ctrl.controllers.provisioner.cloud.config import AzureSettings
from kaito_ctrl.controllers.provisioner.cloud.credentials import StaticTokenCredential, build_credential

BASE_ENV = {
    "AZURE_SUBSCRIPTION_ID": "sub",
    "AZURE_RESOURCE_GROUP": "rg",
    "AZURE_CLUSTER_NAME": "aks",
    "LOCATION": "westus3",
}


def test_settings_from_env() -> None:
    s = AzureSettings.from_env(
        {
            **BASE_ENV,
            "ARM_BASE_URL": "https://127.0.0.1:8443/",
            "ARM_CA_BUNDLE": "/tmp/ca.crt",
            "ARM_STATIC_TOKEN": "t",
            "ARM_POLLING_INTERVAL": "0.5",
            "ARM_RETRY_TOTAL": "5",
        }
    )
    assert (s.subscription_id, s.resource_group, s.cluster_name, s.location) == (
        "sub",
        "rg",
        "aks",
        "westus3",
    )
    assert s.arm_endpoint == "https://127.0.0.1:8443/" and s.ca_bundle == "/tmp/ca.crt"
    assert s.credential == "static" and s.polling_interval == 0.5 and s.retry_total == 5
    assert s.scopes == ["https://127.0.0.1:8443/.default"]
    assert s.missing() == []


def test_gpu_provisioner_variable_names_are_accepted() -> None:
    s = AzureSettings.from_env(
        {
            "ARM_SUBSCRIPTION_ID": "sub",
            "ARM_RESOURCE_GROUP": "rg",
            "AZURE_CLUSTER_NAME": "c",
            "AZURE_LOCATION": "x",
        }
    )
    assert (s.subscription_id, s.resource_group, s.location) == ("sub", "rg", "x")
    assert s.scopes == ["https://management.azure.com/.default"]


@pytest.mark.parametrize(
    ("env", "kind"),
    [
        ({}, "default"),
        ({"DEPLOYMENT_MODE": "managed", "AZURE_FEDERATED_TOKEN_FILE": "/f"}, "default"),
        ({"AZURE_FEDERATED_TOKEN_FILE": "/var/run/secrets/azure/tokens/azure-identity-token"}, "workload"),
        ({"AZURE_CREDENTIAL_KIND": "managed"}, "managed"),
    ],
)
def test_credential_kind(env: dict[str, str], kind: str) -> None:
    assert AzureSettings.from_env({**BASE_ENV, **env}).credential == kind


def test_bad_credential_kind_and_missing_settings() -> None:
    with pytest.raises(ValueError, match="AZURE_CREDENTIAL_KIND"):
        AzureSettings.from_env({"AZURE_CREDENTIAL_KIND": "password"})
    s = AzureSettings.from_env({"AZURE_CREDENTIAL_KIND": "static"})
    assert s.missing() == [
        "AZURE_SUBSCRIPTION_ID",
        "AZURE_RESOURCE_GROUP",
        "AZURE_CLUSTER_NAME",
        "LOCATION",
        "ARM_STATIC_TOKEN",
    ]


async def test_credentials_are_built_per_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = AzureSettings("s", "rg", "c", "l", client_id="00000000-0000-0000-0000-00000000000c")
    token_file = tmp_path / "token"
    token_file.write_text("jwt")
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(token_file))
    workload = build_credential(
        AzureSettings("s", "rg", "c", "l", credential="workload", client_id="id", tenant_id="t")
    )
    managed = build_credential(AzureSettings("s", "rg", "c", "l", credential="managed", client_id="id"))
    default = build_credential(base)
    static = build_credential(
        AzureSettings(
            "s",
            "rg",
            "c",
            "l",
            credential="static",
            static_token="secret",
            arm_endpoint="https://127.0.0.1:8443",
        )
    )
    try:
        assert isinstance(workload, WorkloadIdentityCredential)
        assert isinstance(managed, ManagedIdentityCredential)
        assert isinstance(default, DefaultAzureCredential)
        assert isinstance(static, StaticTokenCredential)
        assert (await static.get_token("https://management.azure.com/.default")).token == "secret"
        info = await static.get_token_info("scope")
        assert info.token == "secret" and info.expires_on > 0
        assert "secret" not in repr(static)
    finally:
        for cred in (workload, managed, default, static):
            await cred.close()
    with pytest.raises(ValueError, match="ARM_STATIC_TOKEN"):
        build_credential(AzureSettings("s", "rg", "c", "l", credential="static"))


@pytest.mark.parametrize(
    "endpoint",
    [
        None,
        "https://management.azure.com",
        "https://MANAGEMENT.azure.com:443/",
        "https://management.chinacloudapi.cn",
    ],
)
def test_the_static_token_is_refused_against_azure_arm(endpoint: str | None) -> None:
    settings = AzureSettings(
        "s", "rg", "c", "l", credential="static", static_token="secret", arm_endpoint=endpoint
    )
    with pytest.raises(ValueError, match="only for the fake ARM server") as refused:
        build_credential(settings)
    assert "secret" not in str(refused.value)


def test_spec_to_arm_is_the_body_gpu_provisioner_sends() -> None:
    spec = AgentPoolSpec(
        name="ws1a2b3c4d5",
        vm_size="Standard_NC12s_v3",
        labels={"kaito.sh/workspace": "w"},
        taints=("sku=gpu:NoSchedule",),
        os_disk_size_gb=120,
        os_sku="AzureLinux",
        tags={"kaito-created": "2025-01-01T00-00-00Z"},
    )
    assert spec_to_arm(spec) == {
        "properties": {
            "count": 1,
            "vmSize": "Standard_NC12s_v3",
            "type": "VirtualMachineScaleSets",
            "osType": "Linux",
            "osSKU": "AzureLinux",
            "mode": "User",
            "nodeLabels": {"kaito.sh/workspace": "w"},
            "nodeTaints": ["sku=gpu:NoSchedule"],
            "osDiskSizeGB": 120,
            "tags": {"kaito-created": "2025-01-01T00-00-00Z"},
        }
    }
    assert "osDiskSizeGB" not in spec_to_arm(AgentPoolSpec("a", "b"))["properties"]


def test_pool_from_arm_reads_state_and_the_provisioning_error() -> None:
    pool = pool_from_arm(
        {
            "id": "/subscriptions/s/resourcegroups/rg/providers/Microsoft.ContainerService/managedClusters/c/agentPools/p",
            "name": "p",
            "properties": {
                "vmSize": "Standard_NC6s_v3",
                "count": 1,
                "provisioningState": "Failed",
                "powerState": {"code": "Running"},
                "nodeImageVersion": "AKSUbuntu-2204gen2containerd-202501.12.0",
                "osDiskSizeGB": 100,
                "status": {
                    "provisioningError": {"code": "ZonalAllocationFailed", "message": "no capacity in zone"}
                },
            },
        }
    )
    assert (
        pool.failed and not pool.in_progress and pool.power_state == "Running" and pool.os_disk_size_gb == 100
    )
    assert pool.error is not None and pool.error.reason is Reason.ALLOCATION_FAILED
    assert pool.error.message == "no capacity in zone"
    creating = pool_from_arm({"name": "q", "properties": {"provisioningState": "Creating"}})
    assert creating.in_progress and creating.error is None and not creating.succeeded


def test_only_a_location_wide_restriction_takes_a_size_away() -> None:
    zonal = {
        "restrictions": [{"type": "Zone", "values": ["eastus"], "reasonCode": "NotAvailableForSubscription"}]
    }
    regional = {
        "restrictions": [
            {
                "type": "Location",
                "values": ["eastus"],
                "restrictionInfo": {"locations": ["eastus"]},
                "reasonCode": "NotAvailableForSubscription",
            }
        ]
    }
    assert _location_restriction(zonal, "eastus") is None
    assert _location_restriction(regional, "EastUS") == "NotAvailableForSubscription"
    assert _location_restriction(regional, "westus") is None


def test_the_static_token_is_not_in_the_settings_repr() -> None:
    token = "tok-5f1e9c-not-for-logs"
    settings = AzureSettings("s", "rg", "c", "l", credential="static", static_token=token)
    assert token not in repr(settings) and token not in str(settings)
    assert settings.static_token == token
