"""AKS agent pools through the real async Azure SDK (azure-mgmt-containerservice, azure-mgmt-compute).

The same code runs against Azure and against the fake ARM server: only the endpoint, the CA bundle and the
credential differ. Pools travel as raw ARM JSON (the SDK's models change shape between SDK generations) and
every failure leaves as a :class:`CloudError`.
"""

from __future__ import annotations

import asyncio
import io
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import orjson
import structlog
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import AzureError
from azure.core.pipeline import PipelineResponse
from azure.core.pipeline.policies import AsyncRetryPolicy
from azure.core.pipeline.transport import AioHttpTransport
from azure.mgmt.compute.aio import ComputeManagementClient
from azure.mgmt.containerservice.aio import ContainerServiceClient
from azure.mgmt.core.polling.async_arm_polling import AsyncARMPolling

from kaito_ctrl import __version__
from kaito_ctrl.controllers.provisioner.cloud.azure_errors import classify_arm_error, classify_exception
from kaito_ctrl.controllers.provisioner.cloud.base import (
    UNREAD,
    AgentPool,
    AgentPoolSpec,
    CloudError,
    Existing,
    Reason,
)
from kaito_ctrl.controllers.provisioner.cloud.config import PUBLIC_ARM, AzureSettings
from kaito_ctrl.controllers.provisioner.cloud.credentials import build_credential
from kaito_ctrl.kube.clock import REAL_CLOCK, Clock

log = structlog.get_logger(__name__)

# What the SDK can raise besides its own AzureError: timeouts and socket errors from below the pipeline.
_FAILURES = (AzureError, asyncio.TimeoutError, OSError)
SKU_CACHE_TTL = 3600.0
# Prepended to the SDK's own User-Agent, so ARM activity logs and AKS support can tell kaito-ctrl's calls apart.
USER_AGENT = f"kaito-ctrl/{__version__}"


class BoundedRetryPolicy(AsyncRetryPolicy[Any, Any]):
    """The SDK's retry policy, except that a long Retry-After is returned to the caller, not slept out.

    ARM throttling can ask for minutes; a reconcile worker should requeue with that delay instead of blocking.
    """

    def __init__(self, *, max_retry_after: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_retry_after = max_retry_after

    def is_retry(self, settings: dict[str, Any], response: PipelineResponse[Any, Any]) -> bool:
        delay = self.get_retry_after(response)
        if delay is not None and delay > self.max_retry_after:
            return False
        return bool(super().is_retry(settings, response))


class RetryAfterPolling(AsyncARMPolling):
    """ARM's long-running-operation polling, waiting before the first poll as between the others.

    azure-core polls the operation the moment the PUT or DELETE is accepted and honours Retry-After only from
    the second poll on, so every create and delete paid one poll that could only answer InProgress. ARM's
    protocol (and azcore for Go, gpu-provisioner's SDK) waits the accepted response's Retry-After first; without
    one, the polling interval, as between later polls. An answer that is already final is not polled at all.
    """

    async def _poll(self) -> None:
        if not self.finished():
            await self._delay()
        await super()._poll()


def _raw_json(pipeline_response: PipelineResponse[Any, Any], _deserialized: Any, _headers: Any) -> Any:
    return pipeline_response.http_response.json()


def _model_json(model: Any) -> dict[str, Any]:
    """An SDK model back to ARM JSON (REST names), for both model generations."""
    if isinstance(model, Mapping) and hasattr(model, "as_dict"):
        return dict(model.as_dict())  # typespec models are mappings over the REST JSON
    if hasattr(model, "serialize"):
        return dict(model.serialize(keep_readonly=True))  # msrest models
    return dict(model)


def spec_to_arm(spec: AgentPoolSpec) -> dict[str, Any]:
    """The PUT body, in the shape gpu-provisioner sends (count, vmSize, osSKU, labels, taints, disk)."""
    props: dict[str, Any] = {
        "count": spec.node_count,
        "vmSize": spec.vm_size,
        "type": "VirtualMachineScaleSets",
        "osType": "Linux",
        "osSKU": spec.os_sku,
        "mode": spec.mode,
        "nodeLabels": dict(spec.labels),
        "nodeTaints": list(spec.taints),
    }
    if spec.os_disk_size_gb:
        props["osDiskSizeGB"] = spec.os_disk_size_gb
    if spec.tags:
        props["tags"] = dict(spec.tags)
    return {"properties": props}


def pool_from_arm(body: Mapping[str, Any]) -> AgentPool:
    props: Mapping[str, Any] = body.get("properties") or {}
    error: CloudError | None = None
    problem = (props.get("status") or {}).get("provisioningError")
    if isinstance(problem, Mapping) and props.get("provisioningState") in ("Failed", "Canceled"):
        error = classify_arm_error(None, {"error": problem})
    disk = props.get("osDiskSizeGB")
    return AgentPool(
        name=str(body.get("name") or ""),
        vm_size=str(props.get("vmSize") or ""),
        provisioning_state=str(props.get("provisioningState") or ""),
        node_count=int(props.get("count") or 0),
        labels=dict(props.get("nodeLabels") or {}),
        taints=tuple(props.get("nodeTaints") or ()),
        tags=dict(props.get("tags") or {}),
        power_state=(props.get("powerState") or {}).get("code"),
        node_image_version=props.get("nodeImageVersion"),
        os_sku=props.get("osSKU"),
        os_disk_size_gb=int(disk) if disk is not None else None,
        orchestrator_version=props.get("currentOrchestratorVersion") or props.get("orchestratorVersion"),
        mode=props.get("mode"),
        id=str(body.get("id") or ""),
        error=error,
    )


def _capability(sku: Mapping[str, Any], name: str) -> float | None:
    for cap in sku.get("capabilities") or ():
        if str(cap.get("name", "")).lower() == name.lower():
            try:
                return float(cap.get("value"))
            except (TypeError, ValueError):
                return None
    return None


def _location_restriction(sku: Mapping[str, Any], location: str) -> str | None:
    """The reason code of a restriction that takes the whole location away (zone-only ones leave some)."""
    for restriction in sku.get("restrictions") or ():
        if restriction.get("type") != "Location":
            continue
        where = {str(v).lower() for v in restriction.get("values") or ()}
        where |= {str(v).lower() for v in (restriction.get("restrictionInfo") or {}).get("locations") or ()}
        if not where or location.lower() in where:
            return str(restriction.get("reasonCode") or "NotAvailableForSubscription")
    return None


# Settings of the transport's connections: when kaito-ctrl gives the SDK its own transport, these go to it.
_CONNECTION_SETTINGS = (
    "connection_timeout",
    "read_timeout",
    "connection_data_block_size",
    "use_env_settings",
)


class CABundleTransport(AioHttpTransport):  # type: ignore[misc]  # azure.* is untyped here
    """The SDK's aiohttp transport trusting a CA bundle through one SSL context made once.

    Given ``connection_verify=<path>``, azure-core builds a new SSLContext from the file for every request, and
    aiohttp keys its connection pool on the context: no connection was ever reused (a TLS handshake per ARM
    request) and every idle connection kept a context of its own (measured: the provisioner's resident memory
    grew to about 300 MiB over 50 claims). Real Azure behind a TLS-inspecting proxy needs a CA bundle too.
    """

    def __init__(self, ca_bundle: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ssl_context = ssl.create_default_context(cafile=ca_bundle)

    async def open(self) -> None:
        if getattr(self, "session", None) is None and not self._has_been_opened:
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self.ssl_context),
                trust_env=self._use_env_settings,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
            )
        await super().open()


class AzureProvider:
    """Agent pools of one AKS cluster (``settings``), one GPU VM per pool as gpu-provisioner creates them."""

    name = "azure"

    def __init__(
        self,
        settings: AzureSettings,
        *,
        credential: AsyncTokenCredential | None = None,
        clock: Clock = REAL_CLOCK,
        sku_cache_ttl: float = SKU_CACHE_TTL,
        **client_kwargs: Any,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._owns_credential = credential is None
        self._credential = credential if credential is not None else build_credential(settings)
        self._sku_cache_ttl = sku_cache_ttl
        self._skus: dict[str, dict[str, Any]] = {}
        self._skus_at: float | None = None
        self._skus_lock = asyncio.Lock()
        self._aks = ContainerServiceClient(
            self._credential,
            settings.subscription_id,
            **self._client_kwargs(client_kwargs, api_version=settings.aks_api_version),
        )
        self._compute = ComputeManagementClient(
            self._credential, settings.subscription_id, **self._client_kwargs(client_kwargs)
        )
        self._log = log.bind(
            subscription=settings.subscription_id,
            resource_group=settings.resource_group,
            cluster=settings.cluster_name,
        )

    def _client_kwargs(self, extra: Mapping[str, Any], api_version: str | None = None) -> dict[str, Any]:
        s = self.settings
        kwargs: dict[str, Any] = {
            "credential_scopes": s.scopes,
            "user_agent": USER_AGENT,
            "polling_interval": s.polling_interval,
            "retry_policy": BoundedRetryPolicy(
                max_retry_after=s.max_inline_retry_after,
                retry_total=s.retry_total,
                retry_backoff_factor=s.retry_backoff_factor,
            ),
        }
        if s.arm_endpoint:
            kwargs["base_url"] = s.arm_endpoint.rstrip("/")
        if api_version:
            kwargs["api_version"] = api_version
        kwargs.update(extra)
        if s.ca_bundle and "transport" not in kwargs:
            connection = {k: kwargs.pop(k) for k in _CONNECTION_SETTINGS if k in kwargs}
            kwargs["transport"] = CABundleTransport(s.ca_bundle, **connection)
        return kwargs

    def _polling(self) -> RetryAfterPolling:
        """A polling method for one long-running operation (the SDK makes one per call too)."""
        s = self.settings
        endpoint = (s.arm_endpoint or PUBLIC_ARM).rstrip("/")
        return RetryAfterPolling(s.polling_interval, path_format_arguments={"endpoint": endpoint})

    async def get_token(self) -> object:
        """One ARM token from the configured credential (the start-up credential check)."""
        return await self._credential.get_token(*self.settings.scopes)

    async def close(self) -> None:
        await self._aks.close()
        await self._compute.close()
        if self._owns_credential:
            await self._credential.close()

    async def __aenter__(self) -> AzureProvider:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ agent pools
    async def get_pool(self, name: str) -> AgentPool | None:
        s = self.settings
        try:
            raw: Any = await self._aks.agent_pools.get(s.resource_group, s.cluster_name, name, cls=_raw_json)
        except _FAILURES as e:
            err = classify_exception(e)
            if err.reason is Reason.NOT_FOUND:
                return None
            raise err from e
        return pool_from_arm(raw)

    async def list_pools(self) -> list[AgentPool]:
        s = self.settings
        try:
            return [
                pool_from_arm(_model_json(item))
                async for item in self._aks.agent_pools.list(s.resource_group, s.cluster_name)
            ]
        except _FAILURES as e:
            raise classify_exception(e) from e

    async def create_pool(
        self,
        spec: AgentPoolSpec,
        *,
        on_accepted: Callable[[], None] | None = None,
        existing: Existing = UNREAD,
    ) -> AgentPool:
        plog = self._log.bind(pool=spec.name, vm_size=spec.vm_size)
        accepted = on_accepted or (lambda: None)
        if existing is UNREAD:
            # Never PUT blindly: a pool found here (this process restarted, or an earlier attempt's PUT landed)
            # is adopted or waited on.
            existing = await self.get_pool(spec.name)
        if existing is not None:
            if existing.vm_size.lower() != spec.vm_size.lower():
                raise CloudError(
                    Reason.CONFLICT,
                    "AgentPoolExists",
                    f"agent pool {spec.name} exists with vmSize {existing.vm_size}, not {spec.vm_size}",
                    retryable=False,
                )
            if existing.succeeded:
                plog.info("agent pool exists; adopting it", state=existing.provisioning_state)
                return existing
            if existing.deleting:
                raise CloudError(
                    Reason.OPERATION_IN_PROGRESS,
                    "AgentPoolDeleting",
                    f"agent pool {spec.name} is being deleted",
                )
            if existing.in_progress:
                plog.info(
                    "agent pool operation in progress; waiting for it", state=existing.provisioning_state
                )
                accepted()
                return await self._await_settled(spec.name)
            # Failed or Canceled: a PUT with the same spec makes AKS try again.
            plog.info("agent pool failed earlier; putting it again", state=existing.provisioning_state)
        s = self.settings
        body = io.BytesIO(orjson.dumps(spec_to_arm(spec)))
        try:
            poller = await self._aks.agent_pools.begin_create_or_update(
                s.resource_group,
                s.cluster_name,
                spec.name,
                body,
                content_type="application/json",
                cls=_raw_json,
                polling=self._polling(),
            )
            accepted()
            raw: Any = await self._within_timeout(poller.result(), f"create of agent pool {spec.name}")
        except _FAILURES as e:
            err = classify_exception(e)
            if err.reason is Reason.OPERATION_IN_PROGRESS:
                current = await self.get_pool(spec.name)
                if current is not None and current.in_progress and not current.deleting:
                    plog.info("create raced another operation on the pool; waiting for it")
                    accepted()
                    return await self._await_settled(spec.name)
            plog.warning("agent pool create failed", reason=err.reason.value, code=err.code)
            raise err from e
        pool = pool_from_arm(raw)
        if pool.failed:
            raise pool.error or CloudError(
                Reason.UNKNOWN,
                pool.provisioning_state,
                f"agent pool {spec.name} ended {pool.provisioning_state}",
            )
        plog.info("agent pool created", state=pool.provisioning_state)
        return pool

    async def _within_timeout(self, waiting: Awaitable[Any], what: str) -> Any:
        """A long-running operation's wait, bounded by the operation timeout: ARM may keep an operation
        InProgress far longer than any launch budget, and an unbounded poll would hold the claim with it."""
        bound = asyncio.timeout(self.settings.operation_timeout)
        try:
            async with bound:
                return await waiting
        except TimeoutError:
            if not bound.expired():
                raise  # a timeout from below (a socket), not ours
            raise CloudError(
                Reason.TRANSIENT,
                "OperationTimeout",
                f"{what} did not finish within {self.settings.operation_timeout:.0f}s",
            ) from None

    async def _await_settled(self, name: str) -> AgentPool:
        """Poll the pool until an operation someone else started (an earlier process, say) is over."""
        deadline = self._clock.monotonic() + self.settings.operation_timeout
        while True:
            pool = await self.get_pool(name)
            if pool is None:
                raise CloudError(
                    Reason.NOT_FOUND, "NotFound", f"agent pool {name} disappeared while provisioning"
                )
            if not pool.in_progress:
                if pool.failed:
                    raise pool.error or CloudError(
                        Reason.UNKNOWN,
                        pool.provisioning_state,
                        f"agent pool {name} ended {pool.provisioning_state}",
                    )
                return pool
            if self._clock.monotonic() >= deadline:
                raise CloudError(
                    Reason.TRANSIENT,
                    "OperationTimeout",
                    f"agent pool {name} still {pool.provisioning_state} after {self.settings.operation_timeout:.0f}s",
                )
            await self._clock.sleep(self.settings.polling_interval)

    async def delete_pool(self, name: str, *, ignore_pdb: bool = False) -> None:
        s = self.settings
        extra: dict[str, Any] = {"ignore_pod_disruption_budget": True} if ignore_pdb else {}
        try:
            poller = await self._aks.agent_pools.begin_delete(
                s.resource_group, s.cluster_name, name, polling=self._polling(), **extra
            )
            await self._within_timeout(poller.result(), f"delete of agent pool {name}")
        except _FAILURES as e:
            err = classify_exception(e)
            if err.reason is Reason.NOT_FOUND:
                return
            self._log.warning("agent pool delete failed", pool=name, reason=err.reason.value, code=err.code)
            raise err from e
        self._log.info("agent pool deleted", pool=name)

    # ------------------------------------------------------------------ capacity
    async def _vm_skus(self) -> dict[str, dict[str, Any]]:
        async with self._skus_lock:
            now = self._clock.monotonic()
            if self._skus_at is not None and now - self._skus_at < self._sku_cache_ttl:
                return self._skus
            loc = self.settings.location
            skus: dict[str, dict[str, Any]] = {}
            try:
                async for item in self._compute.resource_skus.list(filter=f"location eq '{loc}'"):
                    sku = _model_json(item)
                    if sku.get("resourceType") == "virtualMachines" and sku.get("name"):
                        skus[str(sku["name"]).lower()] = sku
            except _FAILURES as e:
                raise classify_exception(e) from e
            self._skus, self._skus_at = skus, now
            return skus

    async def _usages(self) -> dict[str, dict[str, Any]]:
        usages: dict[str, dict[str, Any]] = {}
        try:
            async for item in self._compute.usage.list(self.settings.location):
                usage = _model_json(item)
                usages[str((usage.get("name") or {}).get("value", "")).lower()] = usage
        except _FAILURES as e:
            raise classify_exception(e) from e
        return usages

    async def check_capacity(self, vm_size: str, count: int) -> None:
        loc = self.settings.location
        if not loc:
            raise CloudError(Reason.INVALID_PARAMETER, "LocationNotSet", "no location configured (LOCATION)")
        sku = (await self._vm_skus()).get(vm_size.lower())
        if sku is None:
            raise CloudError(
                Reason.SKU_NOT_AVAILABLE,
                "SkuNotAvailable",
                f"The VM size {vm_size} is not offered in location '{loc}'.",
            )
        restricted = _location_restriction(sku, loc)
        if restricted:
            raise CloudError(
                Reason.SKU_NOT_AVAILABLE,
                restricted,
                f"The VM size {vm_size} is not available in location '{loc}' for this subscription ({restricted}).",
            )
        family, vcpus = sku.get("family"), _capability(sku, "vCPUs")
        if not family or vcpus is None:
            return  # nothing to check the quota against
        needed = int(vcpus) * count
        usages = await self._usages()
        for quota in (str(family), "cores"):
            usage = usages.get(quota.lower())
            if usage is None:
                continue
            limit, current = int(usage.get("limit") or 0), int(usage.get("currentValue") or 0)
            if current + needed > limit:
                raise CloudError(
                    Reason.QUOTA_EXCEEDED,
                    "QuotaExceeded",
                    f"{count} x {vm_size} needs {needed} more {quota} vCPUs than the approved quota allows. "
                    f"Additional details - Location: {loc}, Current Limit: {limit}, Current Usage: {current}, "
                    f"Additional Required: {needed}, (Minimum) New Limit Required: {current + needed}. "
                    f"Request a quota increase for {quota} in {loc}.",
                )
