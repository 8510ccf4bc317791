"""AzureProvider on the real async Azure SDK against the fake ARM server over HTTPS: the pool lifecycle,
adoption and resumption, every injected fault as its CloudError, throttling, and the quota pre-check."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from kaito_ctrl import __version__
from kaito_ctrl.controllers.provisioner.cloud.azure import AzureProvider
from kaito_ctrl.controllers.provisioner.cloud.base import AgentPoolSpec, CloudError, Reason
from kaito_ctrl.controllers.provisioner.cloud.config import AzureSettings
from kaito_ctrl.kube.clock import FakeClock
from kaito_ctrl.sandbox.fakearm.faults import Fault, FaultKind
from kaito_ctrl.sandbox.fakearm.server import FakeArmServer
from kaito_ctrl.sandbox.fakearm.state import FakeArmConfig
from tests.integration.provisioning import arm_settings

GPU = "Standard_NC12s_v3"


def settings_for(fake: FakeArmServer, **overrides: Any) -> AzureSettings:
    return arm_settings(fake, **overrides)


@pytest.fixture
async def fake() -> AsyncIterator[FakeArmServer]:
    # Retry-After 0 on operations: the SDK then polls at the provider's own (short) interval.
    async with FakeArmServer(
        FakeArmConfig(create_seconds=0.3, update_seconds=0.2, delete_seconds=0.2, retry_after=0)
    ) as server:
        yield server


@pytest.fixture
async def provider(fake: FakeArmServer) -> AsyncIterator[AzureProvider]:
    async with AzureProvider(settings_for(fake)) as p:
        yield p


def spec(name: str, vm: str = GPU, **kw: Any) -> AgentPoolSpec:
    return AgentPoolSpec(
        name=name,
        vm_size=vm,
        labels={"kaito.sh/workspace": "phi-3", "karpenter.sh/nodepool": "kaito"},
        taints=("sku=gpu:NoSchedule",),
        os_disk_size_gb=120,
        tags={"kaito-creation-timestamp": "2025-01-01T00-00-00Z"},
        **kw,
    )


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_arm_connections_are_reused_with_a_ca_bundle(
    fake: FakeArmServer, provider: AzureProvider
) -> None:
    """Trusting the fake's CA bundle, as a proxy's CA is trusted before real Azure: the SDK's requests share their
    TLS connections (azure-core alone made a context, hence a connection, per request)."""
    assert provider.settings.ca_bundle, "the fake is reached through its CA bundle"
    await provider.create_pool(spec("reuse1"))
    for _ in range(10):
        assert await provider.get_pool("reuse1") is not None
    await provider.check_capacity(GPU, 1)
    requests = sum(fake.requests.counts.values())
    assert requests >= 13
    # One connection per client (agent pools; SKUs and usages), and a second only for requests in flight at once.
    assert len(fake.requests.peers) <= 3, (len(fake.requests.peers), requests)


async def test_every_arm_call_says_it_is_kaito_ctrl(fake: FakeArmServer, provider: AzureProvider) -> None:
    await provider.create_pool(spec("ws1"))
    await provider.check_capacity(GPU, 1)
    assert fake.requests.user_agents, "requests were made"
    for agent, count in fake.requests.user_agents.items():
        assert agent.startswith(f"kaito-ctrl/{__version__} "), (agent, count)


async def test_create_get_list_delete(fake: FakeArmServer, provider: AzureProvider) -> None:
    pool = await provider.create_pool(spec("ws1"))
    assert pool.succeeded and pool.vm_size == GPU and pool.node_count == 1
    assert pool.labels["kaito.sh/workspace"] == "phi-3" and pool.taints == ("sku=gpu:NoSchedule",)
    assert pool.os_disk_size_gb == 120 and pool.tags == {"kaito-creation-timestamp": "2025-01-01T00-00-00Z"}
    assert pool.power_state == "Running" and pool.node_image_version and pool.id.endswith("/agentPools/ws1")
    assert fake.requests.counts["GET operation"] >= 1, "the SDK followed Azure-AsyncOperation"
    assert await provider.get_pool("ws1") == pool
    assert await provider.get_pool("nope") is None
    await provider.create_pool(spec("ws2", "Standard_NC6s_v3"))
    fake.config.page_size = 1
    listed = await provider.list_pools()
    assert [p.name for p in listed] == ["ws1", "ws2"]
    assert fake.requests.statuses["GET pools 200"] == 2, "the second page came through nextLink"
    await provider.delete_pool("ws1")
    assert await provider.get_pool("ws1") is None
    await provider.delete_pool("ws1")  # already gone is done
    assert fake.requests.statuses["DELETE pool 202"] == 1 and fake.requests.statuses["DELETE pool 204"] == 1


async def test_an_existing_pool_is_adopted_without_a_put(
    fake: FakeArmServer, provider: AzureProvider
) -> None:
    await provider.create_pool(spec("ws1"))
    puts = fake.requests.counts["PUT pool"]
    async with AzureProvider(settings_for(fake)) as restarted:
        adopted = await restarted.create_pool(spec("ws1"))
    assert adopted.succeeded and fake.requests.counts["PUT pool"] == puts


async def test_create_resumes_an_operation_already_in_progress(
    fake: FakeArmServer, provider: AzureProvider
) -> None:
    # An earlier process started the create and died: the pool is Creating, the operation still running.
    fake.config.create_seconds = 1.0
    fake.state.put_pool("ws1", {"properties": {"vmSize": GPU, "count": 1}})
    pool = await provider.create_pool(spec("ws1"))
    assert pool.succeeded and fake.requests.counts["PUT pool"] == 0, (
        "waited on the pool instead of a second PUT"
    )


async def test_a_resumed_create_reports_how_the_operation_failed(
    fake: FakeArmServer, provider: AzureProvider
) -> None:
    fake.config.create_seconds = 0.5
    fake.inject(Fault(FaultKind.QUOTA, times=1))
    fake.state.put_pool("ws1", {"properties": {"vmSize": GPU, "count": 1}})
    with pytest.raises(CloudError) as e:
        await provider.create_pool(spec("ws1"))
    assert e.value.reason is Reason.QUOTA_EXCEEDED and "standardNCSv3Family" in e.value.message
    assert fake.requests.counts["PUT pool"] == 0


async def test_waiting_on_an_earlier_operation_is_bounded_by_the_clock() -> None:
    clock = FakeClock()
    async with FakeArmServer(FakeArmConfig(create_seconds=100, retry_after=0), clock=clock) as fake:
        fake.state.put_pool("ws1", {"properties": {"vmSize": GPU, "count": 1}})
        fake.state.put_pool("ws2", {"properties": {"vmSize": GPU, "count": 1}})
        settings = settings_for(fake, polling_interval=1.0, operation_timeout=5.0)
        async with AzureProvider(settings, clock=clock) as p:

            async def drive(task: asyncio.Task[Any], seconds: int) -> None:
                for _ in range(seconds):
                    await wait_until(lambda: asyncio.sleep(0, clock.sleepers == 1 or task.done()))
                    if task.done():
                        return
                    await clock.advance(1.0)

            gives_up = asyncio.create_task(p.create_pool(spec("ws1")))
            await drive(gives_up, 10)
            with pytest.raises(CloudError) as e:
                await gives_up
            assert (e.value.reason, e.value.code, e.value.retryable) == (
                Reason.TRANSIENT,
                "OperationTimeout",
                True,
            )
            # One look before waiting, then one per second from 0 to 5 seconds.
            assert fake.requests.counts["GET pool"] == 7 and clock.sleepers == 0

            await clock.advance(100)  # both operations are now over
            assert (await p.create_pool(spec("ws2"))).succeeded


async def test_a_pool_with_another_size_is_not_adopted(fake: FakeArmServer, provider: AzureProvider) -> None:
    await provider.create_pool(spec("ws1"))
    with pytest.raises(CloudError) as e:
        await provider.create_pool(spec("ws1", "Standard_NC24s_v3"))
    assert e.value.reason is Reason.CONFLICT and not e.value.retryable


async def test_a_delete_preempts_a_create_in_flight_as_aks_does(
    fake: FakeArmServer, provider: AzureProvider
) -> None:
    fake.config.create_seconds = 30
    accepted = asyncio.Event()
    create = asyncio.create_task(provider.create_pool(spec("ws1"), on_accepted=accepted.set))
    try:
        await asyncio.wait_for(accepted.wait(), 10)
        assert fake.state.pools["ws1"].state == "Creating"
        # A second PUT on the busy pool is refused, with AKS's words.
        with pytest.raises(CloudError) as again:
            await provider.create_pool(spec("ws1", "Standard_NC24s_v3"))
        assert again.value.reason is Reason.CONFLICT
        # The DELETE is accepted at once and the create ends with AKS's preemption code.
        await asyncio.wait_for(provider.delete_pool("ws1"), 10)
        assert "ws1" not in fake.state.pools
        with pytest.raises(CloudError) as preempted:
            await asyncio.wait_for(create, 10)
        assert preempted.value.code == "AKSOperationPreemptedByDelete"
        assert preempted.value.reason is Reason.TRANSIENT
    finally:
        create.cancel()


async def test_a_create_refused_by_a_cluster_wide_lock_is_in_progress(
    fake: FakeArmServer, provider: AzureProvider
) -> None:
    fake.config.cluster_lock = True
    fake.config.create_seconds = 30
    fake.state.put_pool("other", {"properties": {"vmSize": GPU, "count": 1}})
    with pytest.raises(CloudError) as e:
        await provider.create_pool(spec("ws1"))
    assert (
        e.value.reason is Reason.OPERATION_IN_PROGRESS
        and "Another agentpool operation (other" in e.value.message
    )


OPERATION_FAULTS = [
    (FaultKind.QUOTA, Reason.QUOTA_EXCEEDED, "QuotaExceeded", "exceeding approved standardNCSv3Family Cores quota"),
    (FaultKind.SKU_NOT_AVAILABLE, Reason.SKU_NOT_AVAILABLE, "SkuNotAvailable", f"Capacity Restrictions: {GPU}"),
    (FaultKind.ALLOCATION_FAILED, Reason.ALLOCATION_FAILED, "AllocationFailed", "capacity for the requested VM size in this region"),
    (FaultKind.ZONAL_ALLOCATION_FAILED, Reason.ALLOCATION_FAILED, "ZonalAllocationFailed", "in this zone"),
    (FaultKind.OPERATION_FAILED, Reason.TRANSIENT, "InternalOperationError", "create of agent pool ws1"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "reason", "code", "text"), OPERATION_FAULTS, ids=[f[0].value for f in OPERATION_FAULTS]
)
async def test_a_failed_operation_becomes_its_cloud_error(
    fake: FakeArmServer, provider: AzureProvider, kind: FaultKind, reason: Reason, code: str, text: str
) -> None:
    fake.inject(Fault(kind, times=1))
    with pytest.raises(CloudError) as e:
        await provider.create_pool(spec("ws1"))
    assert (e.value.reason, e.value.code) == (reason, code) and text in e.value.message
    assert e.value.insufficient_capacity is (
        reason in (Reason.QUOTA_EXCEEDED, Reason.SKU_NOT_AVAILABLE, Reason.ALLOCATION_FAILED)
    )
    failed = await provider.get_pool("ws1")
    assert failed is not None and failed.failed and failed.error is not None and failed.error.code == code
    # The fault was used up: creating again puts the failed pool again and AKS provisions it.
    recovered = await provider.create_pool(spec("ws1"))
    assert recovered.succeeded and fake.requests.statuses["PUT pool 200"] == 1


async def test_real_quota_exhaustion_and_the_pre_check(fake: FakeArmServer, provider: AzureProvider) -> None:
    fake.config.quota["standardNCSv3Family"] = 24
    await provider.check_capacity(GPU, 2)
    await provider.create_pool(spec("ws1"))
    with pytest.raises(CloudError) as pre:
        await provider.check_capacity(GPU, 2)
    assert pre.value.reason is Reason.QUOTA_EXCEEDED and not pre.value.retryable
    assert "Current Limit: 24, Current Usage: 12, Additional Required: 24" in pre.value.message
    await provider.check_capacity(GPU, 1)
    await provider.create_pool(spec("ws2"))
    with pytest.raises(CloudError) as create:
        await provider.create_pool(spec("ws3"))
    assert create.value.reason is Reason.QUOTA_EXCEEDED and "Current Usage: 24" in create.value.message


async def test_pre_check_refuses_sizes_not_offered_or_restricted(fake: FakeArmServer) -> None:
    fake.config.restricted_skus = {"standard_nc24ads_a100_v4"}
    async with AzureProvider(settings_for(fake)) as p:
        with pytest.raises(CloudError) as restricted:
            await p.check_capacity("Standard_NC24ads_A100_v4", 1)
        assert (restricted.value.reason, restricted.value.code) == (
            Reason.SKU_NOT_AVAILABLE,
            "NotAvailableForSubscription",
        )
        with pytest.raises(CloudError) as unknown:
            await p.check_capacity("Standard_ND999_v9", 1)
        assert unknown.value.reason is Reason.SKU_NOT_AVAILABLE
        await p.check_capacity("standard_nc12s_v3", 1)  # sizes compare case-insensitively
        assert fake.requests.counts["GET skus"] == 1, "the SKU list is cached"
        with pytest.raises(CloudError) as create:
            await p.create_pool(spec("ws1", "Standard_NC24ads_A100_v4"))
        assert create.value.reason is Reason.SKU_NOT_AVAILABLE


async def test_a_short_throttle_is_waited_out_inline(fake: FakeArmServer, provider: AzureProvider) -> None:
    fake.inject(Fault(FaultKind.THROTTLE, on="PUT pool", retry_after=1, times=1))
    pool = await provider.create_pool(spec("ws1"))
    assert pool.succeeded
    assert fake.requests.statuses["PUT pool 429"] == 1 and fake.requests.statuses["PUT pool 201"] == 1
    times = [t for t, key in fake.requests.recent if key.startswith("PUT pool")]
    assert times[1] - times[0] >= 0.95, "the SDK waited Retry-After before putting again"


async def test_a_long_throttle_comes_back_as_throttled_with_its_delay(
    fake: FakeArmServer, provider: AzureProvider
) -> None:
    fake.inject(Fault(FaultKind.THROTTLE, on="GET pool", retry_after=120, times=1))
    with pytest.raises(CloudError) as e:
        await provider.get_pool("ws1")
    assert (e.value.reason, e.value.retry_after, e.value.retryable) == (Reason.THROTTLED, 120.0, True)
    assert fake.requests.counts["GET pool"] == 1, "not slept out inside the SDK"


async def test_server_errors_are_retried_then_reported_transient(fake: FakeArmServer) -> None:
    async with AzureProvider(settings_for(fake, retry_total=2)) as p:
        fake.inject(Fault(FaultKind.SERVER_ERROR, on="GET pool", times=1))
        assert await p.get_pool("ws1") is None
        assert fake.requests.statuses["GET pool 500"] == 1
        fake.inject(Fault(FaultKind.SERVER_ERROR, on="DELETE pool", status=503, code="ServiceUnavailable"))
        with pytest.raises(CloudError) as e:
            await p.delete_pool("ws1")
        assert (e.value.reason, e.value.code, e.value.status) == (Reason.TRANSIENT, "ServiceUnavailable", 503)
        assert fake.requests.statuses["DELETE pool 503"] == 3, "one try and two retries"


async def test_an_immediate_arm_error_and_a_failed_delete(
    fake: FakeArmServer, provider: AzureProvider
) -> None:
    fake.inject(
        Fault(
            FaultKind.ERROR, on="PUT pool", status=400, code="InvalidParameter", message="bad osSKU", times=1
        )
    )
    with pytest.raises(CloudError) as put:
        await provider.create_pool(spec("ws1"))
    assert (put.value.reason, put.value.message, put.value.retryable) == (
        Reason.INVALID_PARAMETER,
        "bad osSKU",
        False,
    )
    await provider.create_pool(spec("ws1"))
    fake.inject(Fault(FaultKind.OPERATION_FAILED, on="delete", times=1))
    with pytest.raises(CloudError) as delete:
        await provider.delete_pool("ws1")
    assert delete.value.reason is Reason.TRANSIENT and "delete of agent pool ws1" in delete.value.message
    await provider.delete_pool("ws1")
    assert await provider.get_pool("ws1") is None


async def test_ARM_validation_reaches_the_caller(fake: FakeArmServer, provider: AzureProvider) -> None:
    with pytest.raises(CloudError) as tags:
        await provider.create_pool(AgentPoolSpec("ws1", GPU, tags={"kaito.sh/created": "x"}))
    assert (tags.value.reason, tags.value.code) == (Reason.INVALID_PARAMETER, "InvalidTagNameCharacters")
    with pytest.raises(CloudError) as name:
        await provider.create_pool(AgentPoolSpec("Workspace-1", GPU))
    assert name.value.reason is Reason.INVALID_PARAMETER


async def test_wrong_cluster_is_a_configuration_error_not_a_missing_pool(fake: FakeArmServer) -> None:
    async with AzureProvider(settings_for(fake, cluster_name="other")) as p:
        with pytest.raises(CloudError) as e:
            await p.get_pool("ws1")
    assert (e.value.reason, e.value.code) == (Reason.INVALID_PARAMETER, "ParentResourceNotFound")


async def test_a_wrong_token_is_an_auth_failure(fake: FakeArmServer) -> None:
    fake.config.token = "the-right-one"
    async with AzureProvider(settings_for(fake, static_token="a-wrong-one")) as p:
        with pytest.raises(CloudError) as e:
            await p.list_pools()
    assert (e.value.reason, e.value.code, e.value.retryable) == (
        Reason.AUTH_FAILED,
        "InvalidAuthenticationToken",
        False,
    )


@pytest.mark.parametrize(
    ("kind", "reason", "code"),
    [
        (FaultKind.PRECONDITION_SKU, Reason.SKU_NOT_AVAILABLE, "PreconditionFailed"),
        (FaultKind.PRECONDITION_QUOTA, Reason.QUOTA_EXCEEDED, "PreconditionFailed"),
        (FaultKind.VM_SIZE_NOT_SUPPORTED, Reason.SKU_NOT_AVAILABLE, "VMSizeNotSupported"),
        (FaultKind.NOT_SUPPORTED_FOR_SUBSCRIPTION, Reason.SKU_NOT_AVAILABLE, "BadRequest"),
        (FaultKind.RESTRICTED_BY_AKS, Reason.SKU_NOT_AVAILABLE, "BadRequest"),
        (FaultKind.POLICY, Reason.POLICY_DENIED, "RequestDisallowedByPolicy"),
    ],
)
async def test_aks_refuses_the_put_at_once_in_its_own_words(
    fake: FakeArmServer, provider: AzureProvider, kind: FaultKind, reason: Reason, code: str
) -> None:
    fake.inject(Fault(kind, times=1))
    with pytest.raises(CloudError) as put:
        await provider.create_pool(spec("ws1"))
    assert (put.value.reason, put.value.code, put.value.retryable) == (reason, code, False)
    if kind is not FaultKind.POLICY and kind is not FaultKind.PRECONDITION_QUOTA:
        assert GPU in put.value.message  # the fake names the size the PUT asked for, as AKS does
    assert await provider.get_pool("ws1") is None  # refused synchronously: no pool, no operation


async def test_a_pool_is_deleted_ignoring_pdbs_only_when_asked(
    fake: FakeArmServer, provider: AzureProvider
) -> None:
    await provider.create_pool(spec("ws1"))
    await provider.create_pool(spec("ws2"))
    await provider.delete_pool("ws1")
    assert fake.requests.counts["DELETE pool ignoring PDBs"] == 0
    await provider.delete_pool("ws2", ignore_pdb=True)
    assert fake.requests.counts["DELETE pool ignoring PDBs"] == 1
    assert await provider.get_pool("ws2") is None


async def test_every_poll_waits_retry_after_the_first_one_too(
    fake: FakeArmServer, provider: AzureProvider
) -> None:
    """ARM's long-running-operation protocol: the accepted PUT or DELETE says when to look (Retry-After); a
    poll sooner can only answer InProgress. azure-core alone polled at once, then honoured Retry-After."""
    fake.config.retry_after = 1
    fake.config.create_seconds = 2.0
    fake.config.delete_seconds = 1.0
    await provider.create_pool(spec("ws1"))
    assert fake.requests.counts["GET operation"] == 2, fake.requests.counts  # at 1 s and 2 s
    times = [
        (t, key)
        for t, key in fake.requests.recent
        if key.split()[:2] in (["PUT", "pool"], ["GET", "operation"])
    ]
    assert times[0][1].startswith("PUT pool") and times[1][0] - times[0][0] >= 0.95, times
    assert fake.requests.counts["GET pool"] == 2, "the GET before the PUT, and the PUT's final GET"
    await provider.delete_pool("ws1")
    assert fake.requests.counts["GET operation"] == 3, fake.requests.counts  # one more, at 1 s


async def test_a_create_starts_from_the_pool_its_caller_just_read(
    fake: FakeArmServer, provider: AzureProvider
) -> None:
    """The capacity check reads the pool before the create: the create need not read it again."""
    created = await provider.create_pool(spec("ws1"), existing=None)
    assert created.succeeded
    assert fake.requests.counts["GET pool"] == 1, "only the PUT's final GET"
    fake.requests.clear()
    adopted = await provider.create_pool(spec("ws1"), existing=created)
    assert adopted == created and not fake.requests.counts, "an existing pool is adopted without a request"
    # Still never a PUT over a pool of another size, however it was read.
    with pytest.raises(CloudError) as e:
        await provider.create_pool(spec("ws1", "Standard_NC24s_v3"), existing=created)
    assert e.value.reason is Reason.CONFLICT and not fake.requests.counts
