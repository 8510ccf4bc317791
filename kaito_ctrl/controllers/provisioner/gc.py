"""Garbage collection, every ``interval`` seconds on the leader: what the lifecycle cannot see by itself.

- Orphan pools: a Kaito pool with no claim of that name (its claim was deleted while a create was still in
  flight, or by hand without the finalizer) is deleted once older than the grace period, after a live GET
  has confirmed the claim is really gone (the cache may lag a fresh claim).
- Claims whose pool vanished: registered, not deleting, their pool absent from the cloud's list and their
  Node missing or not Ready are deleted, so Kaito asks for a new node instead of waiting forever.
- Node finalizers left by a claim that no longer exists are removed once the pool is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import structlog

from kaito_ctrl.controllers.provisioner import metrics as m
from kaito_ctrl.controllers.provisioner.agentpool import is_kaito_pool, is_managed, pool_created_at
from kaito_ctrl.controllers.provisioner.cloud.base import CloudError, CloudProvider
from kaito_ctrl.controllers.provisioner.nodesync import node_ready, release_node
from kaito_ctrl.kube import conditions as cond
from kaito_ctrl.kube.clock import REAL_CLOCK, Clock
from kaito_ctrl.kube.errors import ApiError, NotFound
from kaito_ctrl.kube.informer import SharedInformer
from kaito_ctrl.kube.machines import (
    NODEPOOL_LABEL,
    PROVISIONER_NAME_LABEL,
    TERMINATION_FINALIZER,
    NodeObjectAPI,
    is_deleting,
)
from kaito_ctrl.kube.protocols import ObjectClient
from kaito_ctrl.kube.resources import NODES

log = structlog.get_logger(__name__)


@dataclass
class Collected:
    orphan_pools: list[str] = field(default_factory=list)
    vanished_claims: list[str] = field(default_factory=list)
    released_nodes: list[str] = field(default_factory=list)


class GarbageCollector:
    def __init__(
        self,
        api: NodeObjectAPI,
        client: ObjectClient,
        cloud: CloudProvider,
        claims: SharedInformer,
        nodes: SharedInformer,
        *,
        interval: float = 120.0,
        grace_period: float = 300.0,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        self.api = api
        self.client = client
        self.cloud = cloud
        self.claims = claims
        self.nodes = nodes
        self.interval = interval
        self.grace_period = grace_period
        self.clock = clock
        # Pools of the other kind (Machine-era pools when we serve NodeClaims) are never ours to collect.
        self.pool_label = PROVISIONER_NAME_LABEL if api.kind == "machine" else NODEPOOL_LABEL

    async def run(self) -> None:
        while True:
            try:
                await self.collect()
            except (CloudError, ApiError, OSError, TimeoutError) as e:
                log.warning("garbage collection incomplete; next pass will retry", error=str(e)[:500])
            await self.clock.sleep(self.interval)

    def _ours(self, pool_labels: dict[str, str]) -> bool:
        return self.pool_label in pool_labels

    async def _claim_exists(self, name: str) -> bool:
        try:
            await self.api.get(name)
        except NotFound:
            return False
        return True

    async def collect(self) -> Collected:
        done = Collected()
        pools = await self.cloud.list_pools()
        cached = {c["metadata"]["name"] for c in self.claims.store.list()}
        now = self.clock.now()
        orphans = []
        for pool in pools:
            if not is_kaito_pool(pool) or not self._ours(pool.labels) or pool.deleting or pool.name in cached:
                continue
            created = pool_created_at(pool)
            if created is not None and now - created < self.grace_period:
                continue
            if await self._claim_exists(pool.name):
                continue
            orphans.append(pool.name)
        results = await asyncio.gather(
            *(self._delete_orphan(name) for name in orphans), return_exceptions=True
        )
        for name, outcome in zip(orphans, results, strict=True):
            if isinstance(outcome, BaseException):
                log.warning("orphan agent pool not deleted", pool=name, error=str(outcome)[:500])
            else:
                done.orphan_pools.append(name)
        pool_names = {p.name for p in pools}
        for claim in self.claims.store.list():
            name = claim["metadata"]["name"]
            if not is_managed(claim) or is_deleting(claim) or name in pool_names:
                continue
            if not cond.is_true(claim, self.api.info.registered):
                continue
            node_name = (claim.get("status") or {}).get("nodeName")
            node = self.nodes.store.get(node_name) if node_name else None
            if node is not None and node_ready(node)[0]:
                continue
            log.warning("agent pool vanished and the Node is not Ready; deleting the claim", claim=name)
            with contextlib.suppress(NotFound):
                await self.api.delete(name)
            m.GARBAGE_COLLECTED.labels("vanished_claim").inc()
            done.vanished_claims.append(name)
        live = {p.name for p in pools} - set(done.orphan_pools)
        for node in self.nodes.store.list():
            meta = node["metadata"]
            pool = (meta.get("labels") or {}).get("kubernetes.azure.com/agentpool", "")
            if not meta.get("deletionTimestamp") or TERMINATION_FINALIZER not in (
                meta.get("finalizers") or ()
            ):
                continue
            if pool in cached or pool in live or await self._claim_exists(pool):
                continue
            await self._release(node)
            done.released_nodes.append(meta["name"])
        if done.orphan_pools or done.vanished_claims or done.released_nodes:
            log.info(
                "garbage collected",
                orphan_pools=done.orphan_pools,
                vanished_claims=done.vanished_claims,
                released_nodes=done.released_nodes,
            )
        return done

    async def _delete_orphan(self, name: str) -> None:
        log.warning("deleting orphan agent pool (no claim of that name)", pool=name)
        for node in (
            self.nodes.store.by_index("agentpool", name) if self.nodes.store.has_index("agentpool") else ()
        ):
            if not node["metadata"].get("deletionTimestamp"):
                with contextlib.suppress(NotFound):
                    await self.client.delete(NODES, node["metadata"]["name"], propagation_policy=None)
        try:
            await self.cloud.delete_pool(name)
        except CloudError as e:
            m.CLOUD_ERRORS.labels("delete", e.reason.value).inc()
            raise
        m.GARBAGE_COLLECTED.labels("orphan_pool").inc()

    async def _release(self, node: dict[str, Any]) -> None:
        if await release_node(self.client, node):
            m.GARBAGE_COLLECTED.labels("node_finalizer").inc()
