"""The fake ARM server on the wire: ARM's LRO headers and status resources, error shapes, paging, the compute
SKU and usage listings through the real SDK clients, and the /_fake admin API."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.compute.aio import ComputeManagementClient
from azure.mgmt.containerservice.aio import ContainerServiceClient

from kaito_ctrl.controllers.provisioner.cloud.credentials import StaticTokenCredential
from kaito_ctrl.sandbox.fakearm.server import FakeArmServer
from kaito_ctrl.sandbox.fakearm.state import FakeArmConfig

API = "2024-01-01"
BODY: Any = {"properties": {"count": 1, "vmSize": "Standard_NC12s_v3", "nodeTaints": ["sku=gpu:NoSchedule"]}}


@pytest.fixture
async def fake() -> AsyncIterator[FakeArmServer]:
    async with FakeArmServer(FakeArmConfig(create_seconds=0.3, delete_seconds=0.2, retry_after=1)) as server:
        yield server


@pytest.fixture
async def http(fake: FakeArmServer) -> AsyncIterator[aiohttp.ClientSession]:
    ctx = ssl.create_default_context(cafile=fake.ca_file)
    async with aiohttp.ClientSession(
        base_url=fake.url, connector=aiohttp.TCPConnector(ssl=ctx), headers={"Authorization": "Bearer x"}
    ) as session:
        yield session


def pool_path(fake: FakeArmServer, name: str = "") -> str:
    c = fake.config
    path = (
        f"/subscriptions/{c.subscription_id}/resourceGroups/{c.resource_group}/providers/"
        f"Microsoft.ContainerService/managedClusters/{c.cluster_name}/agentPools"
    )
    return f"{path}/{name}" if name else path


async def test_put_answers_like_arm_with_lro_headers(
    fake: FakeArmServer, http: aiohttp.ClientSession
) -> None:
    async with http.put(pool_path(fake, "ws1"), params={"api-version": API}, json=BODY) as put:
        assert put.status == 201
        body = await put.json()
        async_op, location = put.headers["Azure-AsyncOperation"], put.headers["Location"]
        assert put.headers["Retry-After"] == "1" and put.headers["x-ms-request-id"]
    assert body["properties"]["provisioningState"] == "Creating"
    assert body["type"] == "Microsoft.ContainerService/managedClusters/agentPools" and body["name"] == "ws1"
    assert "/providers/Microsoft.ContainerService/locations/eastus/operations/" in async_op
    assert async_op.endswith(f"?api-version={API}") and "/operationresults/" in location
    async with http.get(async_op) as op:
        status = await op.json()
    assert status["status"] == "InProgress" and status["name"] in async_op and "startTime" in status
    async with http.get(location) as result:
        assert result.status == 202
    async with http.put(pool_path(fake, "ws1"), params={"api-version": API}, json=BODY) as again:
        assert again.status == 409
        assert (await again.json())["error"]["code"] == "OperationNotAllowed"
        assert "Retry-After" not in again.headers, "a Retry-After would make the SDK retry a 409"
    deadline = time.monotonic() + 10
    while True:
        async with http.get(async_op) as op:
            status = await op.json()
        if status["status"] != "InProgress" or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert status["status"] == "Succeeded" and "endTime" in status and "error" not in status
    async with http.get(location) as result:
        assert result.status == 204
    async with http.delete(pool_path(fake, "ws1"), params={"api-version": API}) as delete:
        assert delete.status == 202 and "Azure-AsyncOperation" in delete.headers
    async with http.get(pool_path(fake, "ws1"), params={"api-version": API}) as deleting:
        assert (await deleting.json())["properties"]["provisioningState"] == "Deleting"


async def test_errors_have_arm_shapes(fake: FakeArmServer, http: aiohttp.ClientSession) -> None:
    async with http.get(pool_path(fake, "nope"), params={"api-version": API}) as missing:
        assert missing.status == 404
        assert (await missing.json())["error"]["code"] == "NotFound"
    async with http.get(pool_path(fake, "nope")) as no_version:
        assert no_version.status == 400
        assert (await no_version.json())["error"]["code"] == "MissingApiVersionParameter"
    async with http.get(
        pool_path(fake), params={"api-version": API}, headers={"Authorization": ""}
    ) as no_auth:
        assert no_auth.status == 401
    async with http.put(pool_path(fake, "ws1"), params={"api-version": API}, data=b"{not json") as bad:
        assert bad.status == 400
        assert (await bad.json())["error"]["code"] == "InvalidRequestContent"
    async with http.delete(pool_path(fake, "nope"), params={"api-version": API}) as delete:
        assert delete.status == 204
    assert fake.requests.counts["GET pool"] == 2 and fake.requests.statuses["GET pool 404"] == 1


async def test_sdk_clients_against_the_fake(fake: FakeArmServer) -> None:
    c = fake.config
    cred = StaticTokenCredential("x")
    kw: dict[str, Any] = {"base_url": fake.url, "connection_verify": fake.ca_file, "polling_interval": 0.05}
    fake.config.retry_after = 0
    fake.config.page_size = 2
    async with ContainerServiceClient(cred, c.subscription_id, **kw) as aks:
        for name in ("ws1", "ws2", "ws3"):
            poller = await aks.agent_pools.begin_create_or_update(
                c.resource_group, c.cluster_name, name, BODY
            )
            pool = await poller.result()
            assert pool.properties is not None and pool.properties.provisioning_state == "Succeeded"
        names = [p.name async for p in aks.agent_pools.list(c.resource_group, c.cluster_name)]
        assert names == ["ws1", "ws2", "ws3"] and fake.requests.counts["GET pools"] == 2
        delete = await aks.agent_pools.begin_delete(c.resource_group, c.cluster_name, "ws2")
        await delete.result()
        with pytest.raises(ResourceNotFoundError):
            await aks.agent_pools.get(c.resource_group, c.cluster_name, "ws2")
        fake.config.quota["standardNCSv3Family"] = 30
        poller = await aks.agent_pools.begin_create_or_update(c.resource_group, c.cluster_name, "ws4", BODY)
        with pytest.raises(HttpResponseError) as failed:
            await poller.result()
        assert failed.value.error is not None and failed.value.error.code == "QuotaExceeded"
    async with ComputeManagementClient(cred, c.subscription_id, **kw) as compute:
        skus = [s async for s in compute.resource_skus.list(filter=f"location eq '{c.location}'")]
        nc12 = next(s for s in skus if s.name == "Standard_NC12s_v3")
        assert nc12.resource_type == "virtualMachines" and nc12.family == "standardNCSv3Family"
        assert {cap.name: cap.value for cap in nc12.capabilities or []}["vCPUs"] == "12"
        usages = {u.name.value: u async for u in compute.usage.list(c.location) if u.name is not None}
        assert usages["standardNCSv3Family"].current_value == 24 and usages["standardNCSv3Family"].limit == 30


async def test_admin_api(fake: FakeArmServer, http: aiohttp.ClientSession) -> None:
    async with http.post(
        "/_fake/faults", json={"kind": "throttle", "on": "GET pools", "retry_after": 7, "times": 1}
    ) as r:
        assert r.status == 201
        fault_id = (await r.json())[0]["id"]
    async with http.post("/_fake/faults", json={"kind": "volcano"}) as r:
        assert r.status == 400
    async with http.get("/_fake/faults") as r:
        assert [f["id"] for f in await r.json()] == [fault_id]
    async with http.get(pool_path(fake), params={"api-version": API}) as r:
        assert r.status == 429 and r.headers["Retry-After"] == "7"
        assert (await r.json())["error"]["code"] == "TooManyRequests"
    async with http.get(pool_path(fake), params={"api-version": API}) as r:
        assert r.status == 200, "the fault was for one request"
    async with http.post(
        "/_fake/config", json={"create_seconds": 0.1, "quota": {"standardNCSv3Family": 5}}
    ) as r:
        assert (await r.json())["quota"] == {"standardNCSv3Family": 5}
    async with http.post("/_fake/config", json={"colour": "red"}) as r:
        assert r.status == 400
    async with http.put(pool_path(fake, "ws1"), params={"api-version": API}, json=BODY) as r:
        assert r.status == 201
    async with http.get("/_fake/pools") as r:
        pools = await r.json()
    assert [p["name"] for p in pools] == ["ws1"] and pools[0]["operation"]
    async with http.get("/_fake/requests") as r:
        seen = await r.json()
    assert seen["counts"]["GET pools"] == 2 and seen["statuses"]["GET pools 429"] == 1
    assert seen["counts"]["PUT pool"] == 1
    async with http.delete("/_fake/requests") as r:
        assert r.status == 204
    assert fake.requests.to_json() == {"counts": {}, "statuses": {}, "connections": 0}
