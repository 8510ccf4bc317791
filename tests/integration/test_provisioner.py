"""The node provisioner on the real control plane, kwok, and the fake ARM server through the real Azure SDK:
lifecycle to Ready for both kinds, termination, Node deletion, every ARM error as a reason, the quota
pre-check, backoff, and garbage collection."""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from typing import Any

import pytest

from kaito_ctrl.controllers.provisioner.cloud.azure import AzureProvider
from kaito_ctrl.controllers.provisioner.cloud.base import AgentPoolSpec
from kaito_ctrl.kube import conditions as cond
from kaito_ctrl.kube.errors import NotFound
from kaito_ctrl.kube.machines import KINDS
from kaito_ctrl.kube.resources import NODES
from kaito_ctrl.sandbox.fakearm.faults import Fault, FaultKind
from kaito_ctrl.testing.controlplane import ControlPlane
from kaito_ctrl.testing.gpunodes import GpuNodeSpec
from tests.integration.provisioning import GPU, REPO, arm_settings, eventually, new_name, rig


@pytest.mark.parametrize("kind", ["nodeclaim", "machine"])
async def test_claim_goes_launched_registered_initialized_ready_then_terminates(
    control_plane: ControlPlane, kind: str
) -> None:
    info = KINDS[kind]  # type: ignore[index]
    async with rig(control_plane, kind) as r:  # type: ignore[arg-type]
        await r.start()
        name = new_name()
        claim = r.claim(name, storage="120Gi", annotations={"kaito.sh/node-image-family": "AzureLinux"})
        await r.api.create(claim)

        async def ready() -> dict[str, Any] | None:
            obj = await r.api.get(name)
            return obj if cond.is_true(obj, "Ready") else None

        obj = await eventually(ready, 60, f"{kind} {name} Ready")
        for type_ in (info.launched, info.registered, info.initialized):
            assert cond.is_true(obj, type_), (type_, obj["status"])
        assert "karpenter.sh/termination" in obj["metadata"]["finalizers"]
        assert obj["metadata"]["labels"]["node.kubernetes.io/instance-type"] == GPU, "kubectl's TYPE column"
        if kind == "nodeclaim":
            # As the real Karpenter writes a launched NodeClaim (e2e/test_sandbox_karpenter.py shows it):
            # every condition stamped with the observed generation, the resolved offering as labels.
            generation = obj["metadata"]["generation"]
            assert {c["type"]: c.get("observedGeneration") for c in obj["status"]["conditions"]} == {
                t: generation for t in ("Launched", "Registered", "Initialized", "Ready")
            }
            assert obj["metadata"]["labels"]["kubernetes.io/arch"] == "amd64"
            assert obj["metadata"]["labels"]["karpenter.sh/capacity-type"] == "on-demand"
        else:
            assert all("observedGeneration" not in c for c in obj["status"]["conditions"])
        status = obj["status"]
        node = await r.kube.get(NODES, status["nodeName"])
        assert node["spec"]["providerID"] == status["providerID"]
        assert status["providerID"].startswith("azure:///subscriptions/")
        assert status["allocatable"]["nvidia.com/gpu"] == "2"
        labels = node["metadata"]["labels"]
        assert labels["kaito.sh/workspace"] == "phi-3" and labels["apps"] == "phi-3"
        assert labels["karpenter.sh/registered"] == "true" and labels["karpenter.sh/initialized"] == "true"
        assert {"key": "sku", "value": "gpu", "effect": "NoSchedule"} in node["spec"]["taints"]
        assert "karpenter.sh/termination" in node["metadata"]["finalizers"]
        assert [o["uid"] for o in node["metadata"]["ownerReferences"]] == [obj["metadata"]["uid"]]
        pool = r.fake.state.resource(r.pools()[name])["properties"]
        assert pool["vmSize"] == GPU and pool["count"] == 1
        assert pool["osDiskSizeGB"] == 120 and pool["osSKU"] == "AzureLinux"
        assert pool["nodeTaints"] == ["sku=gpu:NoSchedule"]
        karpenter_label = "karpenter.sh/nodepool" if kind == "nodeclaim" else "karpenter.sh/provisioner-name"
        assert karpenter_label in pool["nodeLabels"]
        assert pool["nodeLabels"]["kaito.sh/machine-type"] == "gpu"
        dt.datetime.strptime(pool["nodeLabels"]["kaito.sh/creation-timestamp"], "%Y-%m-%dT%H-%M-%SZ")

        await r.api.delete(name)

        async def gone() -> bool:
            try:
                await r.api.get(name)
                return False
            except NotFound:
                pass
            try:
                await r.kube.get(NODES, status["nodeName"])
                return False
            except NotFound:
                return name not in r.pools()

        await eventually(gone, 60, "claim, Node and pool gone")
        assert r.fake.requests.counts["DELETE pool"] >= 1


async def test_deleting_the_node_deletes_its_claim_and_pool(control_plane: ControlPlane) -> None:
    async with rig(control_plane, "nodeclaim") as r:
        await r.start()
        name = new_name()
        await r.api.create(r.claim(name))

        async def ready() -> dict[str, Any] | None:
            obj = await r.api.get(name)
            return obj if cond.is_true(obj, "Ready") else None

        obj = await eventually(ready, 60, "Ready")
        await r.kube.delete(NODES, obj["status"]["nodeName"])

        await eventually(lambda: r.claim_and_pool_gone(name), 60, "the claim and its pool to follow the Node")


FAULTS = [
    (FaultKind.QUOTA, "QuotaExceeded", "False", "exceeding approved"),
    (FaultKind.SKU_NOT_AVAILABLE, "SKUNotAvailable", "False", "SkuNotAvailable"),
    (FaultKind.ALLOCATION_FAILED, "AllocationFailed", "Unknown", "AllocationFailed"),
    (FaultKind.ZONAL_ALLOCATION_FAILED, "AllocationFailed", "Unknown", "ZonalAllocationFailed"),
    (FaultKind.OPERATION_FAILED, "Transient", "Unknown", "InternalOperationError"),
    (FaultKind.SERVER_ERROR, "Transient", "Unknown", "InternalServerError"),
]


@pytest.mark.parametrize(("kind", "reason", "status", "text"), FAULTS, ids=[f[0].value for f in FAULTS])
async def test_each_arm_error_names_its_reason_and_backs_off(
    control_plane: ControlPlane, kind: FaultKind, reason: str, status: str, text: str
) -> None:
    async with rig(control_plane, "nodeclaim") as r:
        name = new_name()
        # Operation faults on every PUT (a failed pool is PUT again, which AKS treats as an update).
        on = "PUT pool" if kind is FaultKind.SERVER_ERROR else "put"
        r.fake.inject(Fault(kind, on=on, pool=name))
        await r.start()
        await r.api.create(r.claim(name))

        async def failed() -> dict[str, Any] | None:
            c = cond.get_condition(await r.api.get(name), "Launched")
            return c if c and c["reason"] == reason else None

        c = await eventually(failed, 60, f"Launched reason {reason}")
        assert c["status"] == status and text in c["message"], c
        obj = await r.api.get(name)
        ready = cond.get_condition(obj, "Ready")
        assert ready is not None and ready["reason"] == reason, "the root condition names the cause too"
        # Backoff: 0.2 s doubling to a 2 s cap, so about 7 attempts in 6 s, not a tight loop.
        start = r.fake.requests.counts["PUT pool"]

        async def retried() -> bool:
            return r.fake.requests.counts["PUT pool"] >= start + 3

        await eventually(retried, 30, "retries after backoff")
        before = r.fake.requests.counts["PUT pool"]
        await _wait(4.0)
        # An HTTP 5xx is also retried inside the SDK (3 retries), so one attempt is up to 4 PUTs.
        attempts = (r.fake.requests.counts["PUT pool"] - before) / (
            4 if kind is FaultKind.SERVER_ERROR else 1
        )
        assert attempts / 4.0 <= 1.0, f"{attempts / 4.0:.1f} attempts/s: retries must back off (cap 2 s)"
        # Fixing the cause lets the claim launch, with nothing else changed.
        r.fake.clear_faults()
        await eventually(lambda: _is_ready(r.api, name), 60, "Ready once the fault is gone")


async def test_throttling_honours_retry_after(control_plane: ControlPlane) -> None:
    async with rig(control_plane, "nodeclaim") as r:
        name = new_name()
        # Retry-After above the SDK's inline limit (10 s here would slow the test; use the provisioner's path).
        r.fake.inject(Fault(FaultKind.THROTTLE, on="PUT pool", pool=name, retry_after=3, times=2))
        await r.start()
        await r.api.create(r.claim(name))
        await eventually(lambda: _is_ready(r.api, name), 90, "Ready after throttling ends")
        answers = [(t, k) for t, k in r.fake.requests.recent if k.startswith("PUT pool")]
        throttled = [t for t, k in answers if k.endswith(" 429")]
        assert len(throttled) == 2
        later = [t for t, k in answers if t > throttled[0]]
        assert later and min(later) - throttled[0] >= 2.9, "the next PUT waited out Retry-After"


async def test_quota_precheck_refuses_before_any_create(control_plane: ControlPlane) -> None:
    async with rig(control_plane, "nodeclaim", quota={"standardNCSv3Family": 0}) as r:
        await r.start()
        name = new_name()
        await r.api.create(r.claim(name))

        async def refused() -> dict[str, Any] | None:
            c = cond.get_condition(await r.api.get(name), "Launched")
            return c if c and c["reason"] == "QuotaExceeded" else None

        c = await eventually(refused, 60, "QuotaExceeded from the pre-check")
        assert c["status"] == "False"
        assert "pre-check" in c["message"] and "standardNCSv3Family" in c["message"], c["message"]
        assert r.fake.requests.counts["PUT pool"] == 0, "no pool was requested"
        assert name not in r.pools()


async def test_a_forbidden_precheck_is_skipped_and_aks_judges_the_create(control_plane: ControlPlane) -> None:
    """Contributor on the cluster only: the subscription-wide SKU list answers 403, the create goes ahead."""
    from kaito_ctrl.controllers.provisioner import metrics as m

    skipped = m.CAPACITY_CHECK_SKIPPED.labels("AuthFailed")
    before = skipped._value.get()
    async with rig(control_plane, "nodeclaim") as r:
        r.fake.inject(Fault(FaultKind.ERROR, on="GET skus", status=403, code="AuthorizationFailed",
                            message="The client does not have authorization to perform action "
                                    "'Microsoft.Compute/skus/read' over scope '/subscriptions/x'."))  # fmt: skip
        await r.start()
        name = new_name()
        await r.api.create(r.claim(name))

        async def launched() -> dict[str, Any] | None:
            obj = await r.api.get(name)
            return obj if cond.is_true(obj, "Launched") else None

        await eventually(launched, 60, "Launched although the pre-check was forbidden")
        assert r.fake.requests.counts["GET skus"] >= 1, "the pre-check was tried"
        assert r.fake.requests.counts["PUT pool"] >= 1 and name in r.pools()
        assert skipped._value.get() == before + 1, "one skip counted for the one claim"


async def test_without_the_device_plugin_a_gpu_node_stays_not_initialized(
    control_plane: ControlPlane,
) -> None:
    """AKS installs the driver, not the plugin: no plugin pod on the node, no allocatable GPU, no Initialized."""
    async with rig(control_plane, "nodeclaim") as r:
        control_plane.kubectl(
            "delete", "daemonset", "-n", "kube-system", "nvidia-device-plugin", "--wait=true"
        )
        try:
            await r.start()
            name = new_name()
            await r.api.create(r.claim(name))

            async def not_registered() -> dict[str, Any] | None:
                c = cond.get_condition(await r.api.get(name), "Initialized")
                return c if c and c["reason"] == "ResourceNotRegistered" else None

            c = await eventually(not_registered, 60, "Initialized False for want of nvidia.com/gpu")
            assert (
                c["status"] != "True" and "nvidia.com/gpu" in c["message"] and "device plugin" in c["message"]
            )
            obj = await r.api.get(name)
            assert cond.is_true(obj, "Registered") and not cond.is_true(obj, "Ready")
        finally:
            control_plane.kubectl(
                "apply", "--server-side", "-f", str(REPO / "manifests/nvidia-device-plugin.yaml")
            )


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("storage", "0", "storage"),
        # AKS takes node-pool taints only as key=value:Effect: a valueless taint is refused before any PUT.
        ("taints", [{"key": "dedicated", "effect": "NoSchedule"}], "dedicated:NoSchedule has no value"),
    ],
)
async def test_invalid_claim_says_what_to_fix_and_creates_nothing(
    control_plane: ControlPlane, field: str, value: Any, named: str
) -> None:
    async with rig(control_plane, "nodeclaim") as r:
        await r.start()
        name = new_name()
        claim = r.claim(name)
        if field == "storage":
            claim["spec"]["resources"]["requests"]["storage"] = value
        else:
            claim["spec"][field] = value
        await r.api.create(claim)

        async def invalid() -> dict[str, Any] | None:
            c = cond.get_condition(await r.api.get(name), "Launched")
            return c if c and c["reason"] == "InvalidSpec" else None

        c = await eventually(invalid, 30, "InvalidSpec")
        assert c["status"] == "False" and named in c["message"]
        assert r.fake.requests.counts["PUT pool"] == 0


async def test_gc_collects_orphan_pools_and_claims_whose_pool_vanished(control_plane: ControlPlane) -> None:
    async with rig(control_plane, "nodeclaim") as r:
        old = "2020-01-01T00-00-00Z"
        young = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
        kaito = {"kaito.sh/workspace": "gone", "karpenter.sh/nodepool": "kaito"}
        async with AzureProvider(arm_settings(r.fake)) as cloud:
            await cloud.create_pool(
                AgentPoolSpec("orphan1", GPU, labels={**kaito, "kaito.sh/creation-timestamp": old})
            )
            await cloud.create_pool(
                AgentPoolSpec("young1", GPU, labels={**kaito, "kaito.sh/creation-timestamp": young})
            )
            await cloud.create_pool(AgentPoolSpec("userpool", GPU, labels={"team": "a"}))
        await r.start(gc_interval=0.5, gc_grace_period=600.0)

        async def collected() -> bool:
            return "orphan1" not in r.pools()

        await eventually(collected, 30, "the orphan pool deleted")
        assert {"young1", "userpool"} <= set(r.pools()), "young and foreign pools are left alone"


async def test_gc_deletes_a_claim_whose_pool_vanished_once_its_node_is_not_ready(
    control_plane: ControlPlane,
) -> None:
    # No joiner: the Node is made by hand so the test decides when it stops being Ready.
    async with rig(control_plane, "nodeclaim", join=False) as r:
        await r.start(gc_interval=0.3)
        name = new_name()
        await r.api.create(r.claim(name))

        async def launched() -> bool:
            return cond.is_true(await r.api.get(name), "Launched")

        await eventually(launched, 60, "Launched")
        node_name = f"aks-{name}-12345678-vmss000000"
        provider_id = (
            f"azure:///subscriptions/{r.fake.config.subscription_id}/resourceGroups/mc_rg/providers/"
            f"Microsoft.Compute/virtualMachineScaleSets/aks-{name}-12345678-vmss/virtualMachines/0"
        )
        control_plane.add_gpu_node(GpuNodeSpec(node_name, agent_pool=name, provider_id=provider_id))
        obj = await eventually(lambda: _is_ready(r.api, name), 60, "Ready")
        assert obj["status"]["providerID"] == provider_id
        r.fake.state.remove_all([name])
        gc_runs = r.fake.requests.counts["GET pools"]

        async def gc_looked_twice() -> bool:
            return r.fake.requests.counts["GET pools"] >= gc_runs + 2

        await eventually(gc_looked_twice, 30, "two garbage collection passes")
        assert await _is_ready(r.api, name), "a Ready Node keeps its claim even though the pool is gone"
        # kwok lets go of the Node, and it reports NotReady: now the claim is collected.
        control_plane.kubectl("annotate", "node", node_name, "kwok.x-k8s.io/node-")
        status = {"conditions": [{"type": "Ready", "status": "False", "reason": "KubeletDown",
                                  "message": "kubelet stopped posting", "lastHeartbeatTime": None}]}  # fmt: skip
        await r.kube.merge_patch(NODES, node_name, {"status": status}, subresource="status")

        await eventually(lambda: r.claim_gone(name), 60, "the claim whose pool vanished deleted")
        with contextlib.suppress(NotFound):
            await r.kube.delete(NODES, node_name)


async def _is_ready(api: Any, name: str) -> dict[str, Any] | None:
    obj: dict[str, Any] = await api.get(name)
    return obj if cond.is_true(obj, "Ready") else None


async def _wait(seconds: float) -> None:
    """Let time pass to count requests in a window (a measurement, not synchronisation)."""
    import asyncio

    await asyncio.sleep(seconds)


async def test_launch_timeout_deletes_the_claim_and_its_pool(control_plane: ControlPlane) -> None:
    async with rig(control_plane, "nodeclaim") as r:
        name = new_name()
        # The create would take 60 s. Past the 1.5 s launch timeout the claim is deleted, and its termination
        # deletes the pool at once: AKS accepts a DELETE while a create runs and preempts the create, so nobody
        # waits (and pays) for the whole GPU VM create.
        r.fake.inject(Fault(FaultKind.SLOW, on="create", pool=name, duration=60))
        await r.start(launch_timeout=1.5)
        await r.api.create(r.claim(name))

        async def creating() -> bool:
            pool = r.pools().get(name)
            return pool is not None and pool.state == "Creating"

        await eventually(creating, 30, "the slow create to start")
        started = time.monotonic()
        await eventually(lambda: r.claim_and_pool_gone(name), 30, "the timed-out claim and its pool gone")
        assert time.monotonic() - started < 30, "the pool was deleted without waiting for the create to end"
        assert r.fake.requests.counts["DELETE pool"] >= 1
        preempted = [op for op in r.fake.state.operations.values() if op.pool == name and op.kind == "create"]
        assert [op.error["code"] for op in preempted if op.error] == ["AKSOperationPreemptedByDelete"]


async def test_registration_timeout_deletes_a_claim_whose_node_never_joins(
    control_plane: ControlPlane,
) -> None:
    async with rig(control_plane, "nodeclaim", join=False) as r:
        await r.start(registration_timeout=1.5)
        name = new_name()
        await r.api.create(r.claim(name))

        async def waiting_for_node() -> dict[str, Any] | None:
            c = cond.get_condition(await r.api.get(name), "Registered")
            return c if c and c["reason"] == "NodeNotFound" else None

        c = await eventually(waiting_for_node, 60, "Registered NodeNotFound")
        assert "Node not registered" in c["message"]

        await eventually(
            lambda: r.claim_and_pool_gone(name),
            60,
            "the claim deleted after the registration timeout, pool too",
        )
