"""Pure pieces of the node provisioner: claim -> agent pool, Node registration and initialization rules,
backoff, quantities."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from kaito_ctrl.controllers.provisioner.agentpool import (
    InvalidClaim,
    format_taint,
    is_kaito_pool,
    is_managed,
    pool_created_at,
    pool_spec,
)
from kaito_ctrl.controllers.provisioner.cloud.base import AgentPool
from kaito_ctrl.controllers.provisioner.nodesync import initialization, registration_patch
from kaito_ctrl.controllers.provisioner.operations import Backoff, Operations
from kaito_ctrl.kube.machines import NodeObjectAPI
from kaito_ctrl.kube.quantity import parse_quantity

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def claim(kind: str = "nodeclaim", name: str = "ws1a2b3c4d5", **kw: Any) -> dict[str, Any]:
    api = NodeObjectAPI(None, kind)  # type: ignore[arg-type]
    obj = api.manifest(
        name,
        instance_type=kw.pop("vm", "Standard_NC12s_v3"),
        labels={"kaito.sh/workspace": "phi-3", "kaito.sh/workspacenamespace": "default"},
        storage=kw.pop("storage", "100Gi"),
        **kw,
    )
    obj["metadata"]["uid"] = "uid-1"
    obj["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    return obj


def test_pool_spec_follows_the_claim() -> None:
    spec = pool_spec(claim(annotations={"kaito.sh/node-image-family": "AzureLinux"}), NOW)
    assert spec.name == "ws1a2b3c4d5" and spec.vm_size == "Standard_NC12s_v3" and spec.node_count == 1
    assert spec.os_disk_size_gb == 100 and spec.os_sku == "AzureLinux"
    assert spec.taints == ("sku=gpu:NoSchedule",)
    assert spec.labels["karpenter.sh/nodepool"] == "kaito"
    assert spec.labels["kaito.sh/workspace"] == "phi-3"
    assert spec.labels["kaito.sh/machine-type"] == "gpu"
    assert spec.labels["kaito.sh/creation-timestamp"] == "2026-01-01T00-00-00Z"


def test_machine_pools_carry_the_provisioner_name_label() -> None:
    spec = pool_spec(claim("machine"), NOW)
    assert spec.labels["karpenter.sh/provisioner-name"] == "default"
    assert "karpenter.sh/nodepool" not in spec.labels


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"name": "Ws-1"}, "lowercase letters and digits"),
        ({"name": "w" * 13}, "1-12"),
        ({"storage": "0"}, "less than 1Gi"),
        ({"storage": "lots"}, "not a quantity"),
    ],
)
def test_invalid_claims_say_what_to_fix(change: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidClaim, match=fragment):
        pool_spec(claim(**change), NOW)


def test_claim_without_instance_type_is_invalid() -> None:
    obj = claim()
    obj["spec"]["requirements"] = [r for r in obj["spec"]["requirements"] if "instance-type" not in r["key"]]
    with pytest.raises(InvalidClaim, match="instance-type"):
        pool_spec(obj, NOW)


def test_a_valueless_taint_is_refused_naming_it_and_aks_form() -> None:
    assert format_taint({"key": "a", "value": "b", "effect": "NoExecute"}) == "a=b:NoExecute"
    with pytest.raises(
        InvalidClaim, match=r"taint a:NoSchedule has no value.*key=value:Effect.*a=true:NoSchedule"
    ):
        format_taint({"key": "a", "effect": "NoSchedule"})
    obj = claim()
    obj["spec"]["taints"] = [{"key": "dedicated", "effect": "NoSchedule"}]
    with pytest.raises(InvalidClaim, match="dedicated:NoSchedule"):
        pool_spec(obj, NOW)


def test_managed_by_labels_or_node_class() -> None:
    assert is_managed(claim())
    other = {"metadata": {"name": "x", "labels": {}}, "spec": {}}
    assert not is_managed(other)
    other["spec"]["nodeClassRef"] = {"group": "kaito.sh", "kind": "KaitoNodeClass", "name": "default"}
    assert is_managed(other)


def test_kaito_pools_and_their_age() -> None:
    labels = {"kaito.sh/workspace": "w", "karpenter.sh/nodepool": "kaito", "kaito.sh/creation-timestamp": "2026-01-01T00-00-00Z"}  # fmt: skip
    pool = AgentPool("ws1", "Standard_NC12s_v3", "Succeeded", labels=labels)
    assert is_kaito_pool(pool) and pool_created_at(pool) == NOW
    assert not is_kaito_pool(AgentPool("user", "Standard_D4s_v3", "Succeeded", labels={"team": "a"}))
    assert not is_kaito_pool(AgentPool("old", "x", "Succeeded", labels={"kaito.sh/workspace": "w"}))


def node(**kw: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "aks-ws1-1-vmss000000", "labels": kw.get("labels", {}), "resourceVersion": "5"},
        "spec": {"providerID": "azure:///x", "taints": kw.get("taints", [])},
        "status": {
            "conditions": [{"type": "Ready", "status": kw.get("ready", "True")}],
            "allocatable": kw.get("allocatable", {"nvidia.com/gpu": "2", "cpu": "12"}),
        },
    }


def test_registration_patch_adds_labels_taints_finalizer_owner_and_drops_unregistered() -> None:
    c = claim()
    n = node(taints=[{"key": "karpenter.sh/unregistered", "effect": "NoExecute"}])
    patch = registration_patch(c, n)
    assert patch is not None
    meta = patch["metadata"]
    assert (
        meta["labels"]["karpenter.sh/registered"] == "true"
        and meta["labels"]["kaito.sh/workspace"] == "phi-3"
    )
    assert meta["finalizers"] == ["karpenter.sh/termination"]
    assert meta["ownerReferences"][0]["uid"] == "uid-1" and meta["ownerReferences"][0]["kind"] == "NodeClaim"
    assert patch["spec"]["taints"] == [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]
    # Applied, nothing is left to do.
    n["metadata"]["labels"].update(meta["labels"])
    n["metadata"]["finalizers"] = meta["finalizers"]
    n["metadata"]["ownerReferences"] = meta["ownerReferences"]
    n["spec"]["taints"] = patch["spec"]["taints"]
    assert registration_patch(c, n) is None


def test_do_not_sync_taints_is_respected() -> None:
    patch = registration_patch(claim(), node(labels={"karpenter.sh/do-not-sync-taints": "true"}))
    assert patch is not None and "spec" not in patch


@pytest.mark.parametrize(
    ("n", "reason"),
    [
        (node(ready="False"), "NodeNotReady"),
        (
            node(taints=[{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]),
            "KnownEphemeralTaintsExist",
        ),
        (node(allocatable={"cpu": "12"}), "ResourceNotRegistered"),
        (node(allocatable={"nvidia.com/gpu": "0"}), "ResourceNotRegistered"),
    ],
)
def test_initialization_names_what_is_missing(n: dict[str, Any], reason: str) -> None:
    check = initialization(claim(), n)
    assert not check.ok and check.reason == reason
    if reason == "ResourceNotRegistered":
        assert "nvidia.com/gpu" in check.message and "device plugin" in check.message


def test_startup_taints_block_initialization() -> None:
    c = claim()
    c["spec"]["startupTaints"] = [{"key": "nvidia.com/gpu-driver", "effect": "NoSchedule"}]
    check = initialization(c, node(taints=[{"key": "nvidia.com/gpu-driver", "effect": "NoSchedule"}]))
    assert check.reason == "StartupTaintsExist"
    assert initialization(c, node()).ok


def test_backoff_doubles_to_its_cap_and_honours_retry_after() -> None:
    b = Backoff(base=1.0, cap=8.0)
    delays = [b.failed("a", 100.0) for _ in range(6)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert b.wait("a", 104.0) == 4.0 and b.wait("a", 120.0) == 0.0
    assert b.failed("b", 0.0, retry_after=30.0) == 30.0
    b.reset("a")
    assert b.failed("a", 0.0) == 1.0


async def test_operations_run_once_per_key_and_report_completion() -> None:
    done: list[str] = []
    gate = asyncio.Event()
    ops = Operations(done.append)

    async def work() -> str:
        await gate.wait()
        return "pool"

    first = ops.start("create", "a", 0.0, work)
    assert ops.start("create", "a", 1.0, work) is first, "a second start joins the running operation"
    with pytest.raises(RuntimeError):
        ops.start("delete", "a", 1.0, work)
    gate.set()
    await first.task
    assert done == ["a"] and ops.pop("a") is first and first.task.result() == "pool"
    blocked = ops.start("create", "b", 0.0, asyncio.Event().wait)
    await ops.cancel("b")
    assert blocked.task.cancelled() and ops.get("b") is None


@pytest.mark.parametrize(
    ("text", "value"),
    [("100Gi", 100 * 2**30), ("500m", Decimal("0.5")), ("2", 2), ("1.5k", 1500), ("2e3", 2000), ("0", 0)],
)
def test_quantities(text: str, value: Any) -> None:
    assert parse_quantity(text) == Decimal(value)


def test_bad_quantity() -> None:
    with pytest.raises(ValueError):
        parse_quantity("12 GB")
