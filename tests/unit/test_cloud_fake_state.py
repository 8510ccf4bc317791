"""The fake ARM server's model of AKS agent pools, driven by a FakeClock: operations, AKS refusals, quota,
SKU restrictions, faults, persistence across restarts, and the Nodes the joiner makes for pools."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from kaito_ctrl.kube.client import KubeClient
from kaito_ctrl.kube.clock import FakeClock
from kaito_ctrl.sandbox.fakearm.deviceplugin import gpu_patch
from kaito_ctrl.sandbox.fakearm.faults import Fault, FaultBook, FaultKind
from kaito_ctrl.sandbox.fakearm.joiner import NodeJoiner, parse_taint
from kaito_ctrl.sandbox.fakearm.state import ArmError, FakeArmConfig, FakeArmState


def body(vm: str = "Standard_NC12s_v3", **props: Any) -> dict[str, Any]:
    return {"properties": {"vmSize": vm, "count": 1, **props}}


def make(clock: FakeClock, path: Path | None = None, **config: Any) -> FakeArmState:
    cfg = FakeArmConfig(create_seconds=10, update_seconds=5, delete_seconds=3, **config)
    return FakeArmState(cfg, clock=clock, path=path)


async def test_create_runs_its_operation_to_success_by_the_clock() -> None:
    clock = FakeClock()
    state = make(clock)
    status, pool, op = state.put_pool("ws1", body(nodeTaints=["sku=gpu:NoSchedule"]))
    assert status == 201 and pool.state == "Creating" and op.status == "InProgress"
    await clock.advance(9.9)
    state.tick()
    assert state.pools["ws1"].state == "Creating"
    await clock.advance(0.2)
    state.tick()
    assert state.pools["ws1"].state == "Succeeded" and op.status == "Succeeded"
    res = state.resource(state.pools["ws1"])
    assert res["id"].endswith(
        "/resourcegroups/kaito-rg/providers/Microsoft.ContainerService/managedClusters/kaito-aks/agentPools/ws1"
    )
    props = res["properties"]
    assert props["provisioningState"] == "Succeeded" and props["nodeTaints"] == ["sku=gpu:NoSchedule"]
    assert props["powerState"] == {"code": "Running"} and props["nodeImageVersion"].startswith("AKSUbuntu")
    status_body = state.operation_status(op)
    assert status_body["status"] == "Succeeded" and "endTime" in status_body and "error" not in status_body


async def test_a_delete_preempts_a_create_in_flight_like_aks() -> None:
    clock = FakeClock()
    state = make(clock)
    _, _, create = state.put_pool("ws1", body())
    delete = state.delete_pool("ws1")
    assert delete is not None and delete.kind == "delete" and state.pools["ws1"].state == "Deleting"
    status = state.operation_status(create)
    assert status["status"] == "Failed" and status["error"]["code"] == "AKSOperationPreemptedByDelete"
    await clock.advance(10)
    state.tick()
    assert "ws1" not in state.pools and state.operation_status(create)["status"] == "Failed"


async def test_a_busy_pool_refuses_another_put_like_aks() -> None:
    clock = FakeClock()
    state = make(clock)
    state.put_pool("ws1", body())
    with pytest.raises(ArmError) as put:
        state.put_pool("ws1", body())
    assert put.value.status == 409 and put.value.code == "OperationNotAllowed"
    assert (
        "Operation is not allowed because there's an in progress create node pool operation"
        in put.value.message
    )
    await clock.advance(10)
    state.tick()
    op = state.delete_pool("ws1")
    assert op is not None and state.pools["ws1"].state == "Deleting"
    assert state.delete_pool("ws1") is op, "deleting again is the same deletion"
    await clock.advance(3)
    state.tick()
    assert "ws1" not in state.pools and state.delete_pool("ws1") is None


async def test_cluster_lock_refuses_operations_on_other_pools() -> None:
    state = make(FakeClock(), cluster_lock=True)
    state.put_pool("ws1", body())
    with pytest.raises(ArmError, match=r"Another agentpool operation \(ws1 - Creating\) is in progress"):
        state.put_pool("ws2", body())


async def test_update_of_a_succeeded_pool_and_vm_size_is_immutable() -> None:
    clock = FakeClock()
    state = make(clock)
    state.put_pool("ws1", body(nodeLabels={"a": "1"}))
    await clock.advance(10)
    state.tick()
    status, pool, _ = state.put_pool("ws1", {"properties": {"nodeLabels": {"a": "2"}}})
    assert status == 200 and pool.state == "Updating" and pool.spec["vmSize"] == "Standard_NC12s_v3"
    await clock.advance(5)
    state.tick()
    assert state.resource(pool)["properties"]["nodeLabels"] == {"a": "2"} and pool.state == "Succeeded"
    with pytest.raises(ArmError) as e:
        state.put_pool("ws1", body("Standard_NC24s_v3"))
    assert e.value.code == "PropertyChangeNotAllowed"


@pytest.mark.parametrize(
    ("name", "props", "code"),
    [
        ("Bad-Name", {}, "InvalidParameter"),
        ("waytoolongname", {}, "InvalidParameter"),
        ("ws1", {"vmSize": "Standard_Nope"}, "InvalidParameter"),
        ("ws1", {"vmSize": None}, "InvalidParameter"),
        ("ws1", {"count": -1}, "InvalidParameter"),
        ("ws1", {"osDiskSizeGB": 10}, "InvalidParameter"),
        ("ws1", {"osSKU": "Gentoo"}, "InvalidParameter"),
        ("ws1", {"nodeTaints": ["sku=gpu"]}, "InvalidParameter"),
        ("ws1", {"nodeTaints": ["sku=gpu:Sometimes"]}, "InvalidParameter"),
        ("ws1", {"tags": {"kaito.sh/created": "x"}}, "InvalidTagNameCharacters"),
        ("ws1", {"mode": "Spare"}, "InvalidParameter"),
    ],
)
def test_put_validation(name: str, props: dict[str, Any], code: str) -> None:
    state = make(FakeClock())
    with pytest.raises(ArmError) as e:
        state.put_pool(
            name, body(**props) if "vmSize" not in props else {"properties": {"count": 1, **props}}
        )
    assert e.value.status == 400 and e.value.code == code
    assert name not in state.pools


async def test_quota_is_accounted_and_an_exceeding_create_fails_its_operation() -> None:
    clock = FakeClock()
    state = make(clock, quota={"standardNCSv3Family": 30})
    state.put_pool("ws1", body())  # 12 vCPUs
    state.put_pool("ws2", body())  # 24 in use once both count
    usage = {u["name"]["value"]: u for u in state.usages()}
    assert usage["standardNCSv3Family"]["currentValue"] == 24 and usage["standardNCSv3Family"]["limit"] == 30
    assert usage["cores"]["currentValue"] == 24
    _, _, op = state.put_pool("ws3", body())
    await clock.advance(10)
    state.tick()
    assert op.status == "Failed" and op.error is not None and op.error["code"] == "QuotaExceeded"
    assert "Current Limit: 30, Current Usage: 24, Additional Required: 12" in op.error["message"]
    failed = state.resource(state.pools["ws3"])["properties"]
    assert failed["provisioningState"] == "Failed"
    assert failed["status"]["provisioningError"]["code"] == "QuotaExceeded"
    # A failed pool holds no VMs.
    assert {u["name"]["value"]: u for u in state.usages()}["standardNCSv3Family"]["currentValue"] == 24


async def test_a_restricted_size_is_listed_with_its_restriction_and_fails_to_provision() -> None:
    clock = FakeClock()
    state = make(clock, restricted_skus={"Standard_NC24ads_A100_v4"})
    skus = {s["name"]: s for s in state.skus("eastus") if s["resourceType"] == "virtualMachines"}
    assert skus["Standard_NC24ads_A100_v4"]["restrictions"][0]["reasonCode"] == "NotAvailableForSubscription"
    assert skus["Standard_NC12s_v3"]["restrictions"] == []
    assert {c["name"]: c["value"] for c in skus["Standard_NC12s_v3"]["capabilities"]}["GPUs"] == "2"
    assert state.skus("westus") == []
    _, _, op = state.put_pool("ws1", body("Standard_NC24ads_A100_v4"))
    await clock.advance(10)
    state.tick()
    assert op.error is not None and op.error["code"] == "SkuNotAvailable"
    assert "Standard_NC24ads_A100_v4" in op.error["message"] and "eastus" in op.error["message"]


async def test_operation_faults_fail_or_slow_the_matching_operation_only() -> None:
    clock = FakeClock()
    state = make(clock)
    state.faults.add(Fault(FaultKind.ZONAL_ALLOCATION_FAILED, pool="ws2", times=1))
    state.faults.add(Fault(FaultKind.SLOW, on="delete", duration=100))
    _, _, ok = state.put_pool("ws1", body())
    _, _, bad = state.put_pool("ws2", body())
    await clock.advance(10)
    state.tick()
    assert ok.status == "Succeeded"
    assert bad.error == {
        "code": "ZonalAllocationFailed",
        "message": "Allocation failed. We do not have sufficient capacity for the requested VM size in this zone. "
        "Read more about improving likelihood of allocation success at http://aka.ms/allocation-guidance",
    }
    # The fault was used up: putting the failed pool again provisions it.
    status, _, retry = state.put_pool("ws2", body())
    await clock.advance(5)
    state.tick()
    assert status == 200 and retry.status == "Succeeded" and state.pools["ws2"].state == "Succeeded"
    delete = state.delete_pool("ws1")
    assert delete is not None and delete.done_at - delete.started == 100


def test_fault_book_matching_and_counting() -> None:
    book = FaultBook()
    throttle = book.add(Fault(FaultKind.THROTTLE, on="PUT pool", times=2))
    assert throttle.retry_after == 1 and throttle.http_status == 429
    assert book.take_http("GET pool", "ws1") is None
    assert book.take_http("PUT pool", "ws1") is throttle
    assert book.take_http("PUT pool", "ws2") is throttle
    assert book.take_http("PUT pool", "ws1") is None and throttle.hits == 2
    forever = book.add(Fault(FaultKind.SERVER_ERROR, pool="ws9"))
    assert all(book.take_http("GET operation", "ws9") is forever for _ in range(5))
    assert book.take_http("GET operation", "ws1") is None
    assert book.remove(forever.id) and not book.remove(forever.id)
    quota = book.add(Fault(FaultKind.QUOTA, on="create"))
    assert book.take_operation("update", "ws1") == (None, None)
    assert book.take_operation("create", "ws1") == (quota, None)
    rendered = quota.error({"family": "standardNCSv3Family", "location": "eastus", "limit": 0})
    assert (
        rendered["code"] == "QuotaExceeded"
        and "approved standardNCSv3Family Cores quota" in rendered["message"]
    )
    assert "Current Limit: 0" in rendered["message"] and "{usage}" in rendered["message"]


def test_fault_json_round_trip_and_validation() -> None:
    fault = Fault.from_json({"kind": "throttle", "retry_after": 3, "times": 1})
    assert Fault.from_json({k: v for k, v in fault.to_json().items() if k != "hits"}) == fault
    with pytest.raises(ValueError, match="unknown fault fields"):
        Fault.from_json({"kind": "quota", "colour": "red"})
    with pytest.raises(ValueError):
        Fault.from_json({"kind": "earthquake"})
    with pytest.raises(ValueError, match="duration"):
        Fault.from_json({"kind": "slow"})


async def test_state_survives_a_restart_mid_operation(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "state.json"
    first = make(clock, path)
    first.put_pool("ws1", body(nodeLabels={"kaito.sh/workspace": "w"}))
    await clock.advance(4)
    first.tick()
    second = make(clock, path)
    assert second.pools["ws1"].state == "Creating" and second.pools["ws1"].spec["nodeLabels"] == {
        "kaito.sh/workspace": "w"
    }
    with pytest.raises(ArmError):
        second.put_pool("ws1", body())
    await clock.advance(6)
    second.tick()
    assert second.pools["ws1"].state == "Succeeded"
    assert make(clock, path).pools["ws1"].state == "Succeeded"


async def test_joiner_names_and_describes_nodes_like_aks() -> None:
    clock = FakeClock()
    state = make(clock)
    state.put_pool(
        "ws1",
        body(
            nodeLabels={"kaito.sh/workspace": "w"},
            nodeTaints=["sku=gpu:NoSchedule"],
            osDiskSizeGB=100,
            osSKU="AzureLinux",
        ),
    )
    joiner = NodeJoiner(state, cast(KubeClient, None), join_delay=2.0)
    assert joiner.desired() == ({}, None)
    await clock.advance(10)
    state.tick()
    want, due = joiner.desired()
    assert want == {} and due == pytest.approx(2.0)
    await clock.advance(2)
    want, due = joiner.desired()
    name = joiner.node_name("ws1", 0)
    assert list(want) == [name] and due is None
    assert name == f"aks-ws1-{joiner.vmss_hash}-vmss000000" and len(joiner.vmss_hash) == 8
    node = joiner.node_manifest(state.pools["ws1"], 0, "127.0.0.7")
    assert node["spec"]["providerID"] == (
        "azure:///subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/mc_kaito-rg_kaito-aks_eastus/"
        f"providers/Microsoft.Compute/virtualMachineScaleSets/aks-ws1-{joiner.vmss_hash}-vmss/virtualMachines/0"
    )
    labels = node["metadata"]["labels"]
    assert labels["kubernetes.azure.com/agentpool"] == labels["agentpool"] == "ws1"
    assert labels["node.kubernetes.io/instance-type"] == "Standard_NC12s_v3"
    assert labels["nvidia.com/gpu.count"] == "2" and labels["nvidia.com/gpu.memory"] == "16384"
    assert labels["kaito.sh/workspace"] == "w" and labels["kubernetes.azure.com/os-sku"] == "AzureLinux"
    assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
    assert node["spec"]["taints"] == [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]
    status = node["status"]
    # nvidia.com/gpu is the device plugin's to register, not the joiner's; FakeDevicePlugin's patch sets it.
    assert "nvidia.com/gpu" not in status["capacity"] and "nvidia.com/gpu" not in status["allocatable"]
    patch = gpu_patch(node)
    assert patch == {"status": {"capacity": {"nvidia.com/gpu": "2"}, "allocatable": {"nvidia.com/gpu": "2"}}}
    registered = {**node, "status": {**status, **patch["status"]}}
    assert gpu_patch(registered) is None, "already registered: nothing to patch"
    assert status["capacity"]["cpu"] == "12" and status["capacity"]["ephemeral-storage"] == "100Gi"
    assert {"type": "InternalIP", "address": "127.0.0.7"} in status["addresses"]
    assert "Mariner" in status["nodeInfo"]["osImage"]
    state.delete_pool("ws1")
    assert joiner.desired() == ({}, None), "a deleting pool's nodes go away"


def test_valueless_taint() -> None:
    assert parse_taint("dedicated=:NoExecute") == {"key": "dedicated", "effect": "NoExecute"}
