"""The real async Azure SDK (azure-mgmt-containerservice) against the fake ARM server over HTTPS: agent pools
are created, listed and deleted through real long-running-operation polling, and a failed operation surfaces
as the SDK's error carrying the ARM code."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.containerservice.aio import ContainerServiceClient

from kaito_ctrl import pki
from kaito_ctrl.controllers.provisioner.cloud.errors import classify
from kaito_ctrl.controllers.provisioner.cloud.fake.server import FakeARM, server_ssl_context

SUB, RG, CLUSTER = "00000000-0000-0000-0000-000000000000", "rg", "aks"


class StaticToken:
    async def get_token(self, *scopes: str, **kw: Any) -> AccessToken:
        return AccessToken("fake-token", int(time.time()) + 3600)

    async def close(self) -> None:
        pass

    async def __aenter__(self) -> StaticToken:
        return self

    async def __aexit__(self, *a: object) -> None:
        pass


@pytest.fixture
async def arm(tmp_path: Path) -> AsyncIterator[tuple[FakeARM, ContainerServiceClient]]:
    ca = pki.make_ca("fake-arm-ca")
    leaf = pki.issue(ca, "localhost", dns_names=("localhost",), ip_addresses=("127.0.0.1",), server=True)
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(ca.cert_pem)
    cert, key = pki.write_pair(leaf, tmp_path, "tls")
    fake = FakeARM(operation_seconds=0.3)
    runner = web.AppRunner(fake.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ssl_context(str(cert), str(key)))
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    client = ContainerServiceClient(
        StaticToken(), SUB, base_url=f"https://127.0.0.1:{port}", connection_verify=str(ca_file),
        credential_scopes=["https://management.azure.com/.default"], polling_interval=0.1,
    )  # fmt: skip
    yield fake, client
    await client.close()
    await runner.cleanup()


def _pool(vm_size: str = "Standard_NC12s_v3") -> dict[str, Any]:
    return {
        "properties": {
            "count": 1,
            "vmSize": vm_size,
            "osDiskSizeGB": 88,
            "nodeLabels": {"kaito.sh/workspace": "w"},
            "nodeTaints": ["sku=gpu:NoSchedule"],
            "mode": "User",
        }
    }


async def test_create_get_list_delete_through_lro(arm: tuple[FakeARM, ContainerServiceClient]) -> None:
    fake, client = arm
    poller = await client.agent_pools.begin_create_or_update(RG, CLUSTER, "ws1a2b3c4d5", _pool())
    pool = await poller.result()
    assert pool.provisioning_state == "Succeeded" and pool.vm_size == "Standard_NC12s_v3"
    assert (
        fake.requests.get(
            "GET "
            + "/subscriptions/{sub}/providers/Microsoft.ContainerService/locations/{location}/operations/{op}",
            0,
        )
        >= 1
    ), "the SDK polled the operation"
    got = await client.agent_pools.get(RG, CLUSTER, "ws1a2b3c4d5")
    assert got.node_labels == {"kaito.sh/workspace": "w"} and got.node_taints == ["sku=gpu:NoSchedule"]
    names = [p.name async for p in client.agent_pools.list(RG, CLUSTER)]
    assert names == ["ws1a2b3c4d5"]
    delete = await client.agent_pools.begin_delete(RG, CLUSTER, "ws1a2b3c4d5")
    await delete.result()
    with pytest.raises(ResourceNotFoundError):
        await client.agent_pools.get(RG, CLUSTER, "ws1a2b3c4d5")


async def test_failed_operation_surfaces_the_arm_code(arm: tuple[FakeARM, ContainerServiceClient]) -> None:
    fake, client = arm
    fake.create_failures.append(
        (
            "AllocationFailed",
            "Allocation failed. We do not have sufficient capacity for the requested VM size in this region.",
        )
    )
    poller = await client.agent_pools.begin_create_or_update(RG, CLUSTER, "wsfail", _pool())
    with pytest.raises(HttpResponseError) as info:
        await poller.result()
    err = classify(
        info.value.status_code or 200,
        {"error": {"code": info.value.error.code, "message": info.value.error.message}},
    )  # type: ignore[union-attr]
    assert err.reason == "AllocationFailed" and "sufficient capacity" in err.message
    got = await client.agent_pools.get(RG, CLUSTER, "wsfail")
    assert got.provisioning_state == "Failed"


async def test_a_second_create_during_an_operation_is_refused_like_aks(
    arm: tuple[FakeARM, ContainerServiceClient],
) -> None:
    fake, client = arm
    fake.operation_seconds = 30
    await client.agent_pools.begin_create_or_update(RG, CLUSTER, "wsbusy", _pool())
    with pytest.raises(HttpResponseError) as info:
        await client.agent_pools.begin_create_or_update(RG, CLUSTER, "wsbusy", _pool())
    assert info.value.status_code == 409
    assert (
        classify(409, {"error": {"code": info.value.error.code, "message": info.value.error.message}}).reason
        == "OperationInProgress"
    )  # type: ignore[union-attr]
