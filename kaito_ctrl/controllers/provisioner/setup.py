"""Wiring the node provisioner into a manager: the cloud provider, informers, the lifecycle controller and
garbage collection (leader only)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog

from kaito_ctrl.controllers.provisioner.agentpool import AGENTPOOL_LABEL, LEGACY_AGENTPOOL_LABEL, is_managed
from kaito_ctrl.controllers.provisioner.cloud.base import CloudProvider
from kaito_ctrl.controllers.provisioner.credential_check import READYZ_NAME, CredentialCheck
from kaito_ctrl.controllers.provisioner.gc import GarbageCollector
from kaito_ctrl.controllers.provisioner.lifecycle import ClaimLifecycle, Tunables
from kaito_ctrl.kube.clock import REAL_CLOCK, Clock
from kaito_ctrl.kube.machines import KINDS, NodeObjectAPI, NodeObjectKind
from kaito_ctrl.kube.ratelimit import BucketRateLimiter, ItemExponentialFailureRateLimiter, MaxOfRateLimiter
from kaito_ctrl.kube.resources import NODES
from kaito_ctrl.runtime.controller import Controller
from kaito_ctrl.runtime.handlers import Predicate, Request, enqueue_for_object, enqueue_mapped
from kaito_ctrl.runtime.manager import Manager
from kaito_ctrl.settings import Settings

NAME = "provisioner"
log = structlog.get_logger(__name__)


def build_cloud() -> CloudProvider:
    """The Azure provider from the environment (AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, ...)."""
    from kaito_ctrl.controllers.provisioner.cloud.azure import AzureProvider
    from kaito_ctrl.controllers.provisioner.cloud.config import AzureSettings

    azure = AzureSettings.from_env()
    missing = azure.missing()
    if missing:
        raise SystemExit(
            "the node provisioner needs "
            + ", ".join(missing)
            + " in its environment (see docs/operations.md); "
            "run with --controllers workspace or --node-provisioner byo to go without it"
        )
    try:
        return AzureProvider(azure)
    except ValueError as e:  # a credential that cannot work here (the static token against Azure)
        raise SystemExit(str(e)) from e


def _node_to_claims(kind: str) -> Any:
    def mapper(node: dict[str, Any]) -> list[Request]:
        meta = node.get("metadata") or {}
        labels = meta.get("labels") or {}
        names = {labels.get(AGENTPOOL_LABEL) or labels.get(LEGACY_AGENTPOOL_LABEL) or ""}
        names |= {o.get("name", "") for o in meta.get("ownerReferences") or () if o.get("kind") == kind}
        return [Request("", n) for n in names if n]

    return mapper


def setup(
    manager: Manager,
    client: Any,
    settings: Settings,
    *,
    cloud: CloudProvider | None = None,
    clock: Clock = REAL_CLOCK,
) -> Controller | None:
    if settings.node_provisioner == "byo":
        log.info("node provisioner not started: node_provisioner is byo, so no claims to serve")
        return None
    provider = cloud if cloud is not None else build_cloud()
    get_token = getattr(provider, "get_token", None)
    if get_token is not None:
        credential = CredentialCheck(get_token)
        manager.add_readyz_check(READYZ_NAME, credential.ready)
        with contextlib.suppress(
            RuntimeError
        ):  # no running loop: the first readiness probe makes the request
            credential.start()
    kind: NodeObjectKind = "machine" if settings.node_provisioner == "machine" else "nodeclaim"
    info = KINDS[kind]
    claims = manager.informers.informer(info.resource, label_selector=settings.claim_selector)
    nodes = manager.informers.informer(NODES)
    api = NodeObjectAPI(client, kind)
    rate_limiter = MaxOfRateLimiter(
        ItemExponentialFailureRateLimiter(settings.cloud_backoff_base, settings.cloud_backoff_cap),
        BucketRateLimiter(10.0, 100, clock),
    )
    controller: Controller | None = None

    def enqueue(name: str) -> None:
        if controller is not None:
            controller.enqueue(Request("", name))

    lifecycle = ClaimLifecycle(
        api,
        client,
        provider,
        claims,
        nodes,
        enqueue=enqueue,
        tunables=Tunables(
            launch_timeout=settings.launch_timeout,
            registration_timeout=settings.registration_timeout,
            capacity_check=settings.capacity_check,
            backoff_base=settings.cloud_backoff_base,
            backoff_cap=settings.cloud_backoff_cap,
        ),
        clock=clock,
    )
    controller = Controller(
        NAME, lifecycle, workers=settings.provisioner_workers, rate_limiter=rate_limiter, clock=clock
    )
    managed = Predicate(create=is_managed, update=lambda o, n: is_managed(n), delete=is_managed)
    controller.watch(claims, enqueue_for_object(), [managed])
    controller.watch(nodes, enqueue_mapped(_node_to_claims(info.resource.kind)))
    manager.add_controller(controller)
    collector = GarbageCollector(
        api,
        client,
        provider,
        claims,
        nodes,
        interval=settings.gc_interval,
        grace_period=settings.gc_grace_period,
        clock=clock,
    )
    manager.add_runnable(collector.run, needs_leader=True, name="garbage-collector")

    async def close_on_shutdown() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await lifecycle.close()
            await provider.close()

    manager.add_runnable(close_on_shutdown, needs_leader=False, name="provider-closer")
    return controller
