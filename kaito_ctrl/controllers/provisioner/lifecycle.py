"""The claim lifecycle: finalizer, launch, registration, initialization; and termination when deleted.

One reconcile runs the steps in order; a step either lets the next one run (returns None) or ends the
reconcile with a Result. Status is collected in a :class:`StatusDraft` and written once at the end, only
when something changed. Conditions follow the kind: ``Launched/Registered/Initialized`` for NodeClaims,
``MachineLaunched/MachineRegistered/MachineInitialized`` for Machines, both under a root ``Ready``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from kaito_ctrl.controllers.provisioner import metrics as m
from kaito_ctrl.controllers.provisioner.agentpool import (
    MACHINE_TYPE_LABEL,
    InvalidClaim,
    PoolNodeIndex,
    is_managed,
    pool_spec,
)
from kaito_ctrl.controllers.provisioner.cloud.base import (
    UNREAD,
    AgentPool,
    CloudError,
    CloudProvider,
    Existing,
    Reason,
)
from kaito_ctrl.controllers.provisioner.nodesync import (
    initialization,
    initialized_patch,
    registration_patch,
    release_node,
)
from kaito_ctrl.controllers.provisioner.operations import Backoff, Operations
from kaito_ctrl.kube import conditions as cond
from kaito_ctrl.kube.clock import REAL_CLOCK, Clock
from kaito_ctrl.kube.errors import ApiError, Conflict, NotFound
from kaito_ctrl.kube.informer import SharedInformer
from kaito_ctrl.kube.machines import INSTANCE_TYPE_LABEL, TERMINATION_FINALIZER, NodeObjectAPI, is_deleting
from kaito_ctrl.kube.protocols import ObjectClient
from kaito_ctrl.kube.refusals import Refusal, Refusals
from kaito_ctrl.kube.resources import EVENTS, NODES
from kaito_ctrl.runtime.controller import DONE, Result
from kaito_ctrl.runtime.handlers import Request

log = structlog.get_logger(__name__)

LAUNCHING = "Launching"
TERMINATING_CONDITION = "InstanceTerminating"
INVALID_SPEC = "InvalidSpec"
# Requeue while a cloud operation runs: a safety net only, the operation's end enqueues the claim itself.
OPERATION_POLL = 30.0
NODE_POLL = 15.0


@dataclass
class Tunables:
    # GPU VMs can take well over 15 min to create and join (Karpenter raised its registration timeout to 30 min
    # for them); a pool that fails reports it at once, so these only catch an operation that stopped progressing.
    launch_timeout: float = 1800.0
    registration_timeout: float = 1800.0
    # Check quota and SKU availability before the first create of a pool.
    capacity_check: bool = True
    # Backoff between failed cloud attempts of one claim: base * 2^failures, capped.
    backoff_base: float = 2.0
    backoff_cap: float = 300.0


@dataclass
class StatusDraft:
    """The status a reconcile wants to write, starting from what the claim has."""

    original: dict[str, Any]
    fields: dict[str, Any] = field(default_factory=dict)
    conditions: list[dict[str, Any]] = field(default_factory=list)
    # Karpenter v1 stamps every NodeClaim condition with the generation it observed; Machines
    # (v1alpha5) never carried one.
    generation: int | None = None
    # The claim's version this status is computed over; the pass's own metadata writes move it on.
    resource_version: str | None = None

    @classmethod
    def of(cls, obj: dict[str, Any]) -> StatusDraft:
        status = copy.deepcopy(obj.get("status") or {})
        conditions = list(status.pop("conditions", None) or [])
        generation = (obj.get("metadata") or {}).get("generation") if obj.get("kind") == "NodeClaim" else None
        return cls(
            original=copy.deepcopy(obj.get("status") or {}),
            fields=status,
            conditions=conditions,
            generation=int(generation) if generation is not None else None,
            resource_version=(obj.get("metadata") or {}).get("resourceVersion"),
        )

    def moved_to(self, written: dict[str, Any] | None) -> None:
        """The pass wrote the claim's metadata itself: its status is still the one read."""
        version = ((written or {}).get("metadata") or {}).get("resourceVersion")
        if version:
            self.resource_version = version

    def as_status(self) -> dict[str, Any]:
        return {**self.fields, "conditions": self.conditions}

    @property
    def changed(self) -> bool:
        return self.as_status() != {**self.original, "conditions": self.original.get("conditions") or []}


class ClaimLifecycle:
    """Reconciles one kind (Machine or NodeClaim) of Kaito's node claims into agent pools and Nodes."""

    def __init__(
        self,
        api: NodeObjectAPI,
        client: ObjectClient,
        cloud: CloudProvider,
        claims: SharedInformer,
        nodes: SharedInformer,
        *,
        enqueue: Callable[[str], None],
        tunables: Tunables | None = None,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        self.api = api
        self.client = client
        self.cloud = cloud
        self.claims = claims
        self.nodes = nodes
        self.tunables = tunables or Tunables()
        self.clock = clock
        self.ops = Operations(enqueue)
        self.backoff = Backoff(self.tunables.backoff_base, self.tunables.backoff_cap)
        # Writes the apiserver refuses (Node patches, status): a reason on the claim and a pause.
        self.refusals = Refusals(clock)
        self._capacity_checked: set[str] = set()
        # Pools this process saw created, by claim name: (claim UID, pool), until the claim's Launched is True in
        # the cache. A pass over a cache that has not caught up with the status saying so must not create again.
        self._launched: dict[str, tuple[str, AgentPool]] = {}
        # UIDs whose termination finished: the cache may still show them with the finalizer for a moment.
        self._terminated: collections.OrderedDict[str, None] = collections.OrderedDict()
        for name, fn in (("agentpool", PoolNodeIndex.by_pool), ("providerID", PoolNodeIndex.by_provider_id)):
            if not nodes.store.has_index(name):
                nodes.store.add_indexer(name, fn)

    # ------------------------------------------------------------------ entry
    async def __call__(self, request: Request) -> Result:
        obj = self.claims.store.get(request.name)
        if obj is None:
            self.refusals.forget(request.name)
            self._launched.pop(request.name, None)
        if obj is None or not is_managed(obj):
            return DONE
        if is_deleting(obj):
            return await self.terminate(obj)
        obj = await self.api.add_finalizer(obj)
        draft = StatusDraft.of(obj)
        result: Result | None = None
        for step in (self.launch, self.register, self.initialize):
            result = await step(obj, draft)
            if result is not None:
                break
        self._set_ready(draft)
        if draft.changed:
            name, generation = obj["metadata"]["name"], int(obj["metadata"].get("generation") or 0)
            held = self.refusals.holding(name, "status", generation)
            if held is not None:
                return Result(requeue_after=held.wait(self.clock.monotonic()))
            try:
                if not await self._write_status(obj, draft):
                    return Result(requeue=True)  # newer status than this pass saw: look again
            except NotFound:
                return DONE
            except ApiError as e:
                refusal = self.refusals.record(
                    name,
                    "status",
                    generation,
                    e,
                    rejected="StatusRejected",
                    action="write the claim's status",
                )
                if refusal is None:
                    raise
                # The status cannot carry it: an Event on the claim does, once per pause.
                await self._event(obj, refusal)
                return Result(requeue_after=refusal.wait(self.clock.monotonic()))
            self.refusals.succeeded(name, "status")
        return result or DONE

    async def _write_status(self, obj: dict[str, Any], draft: StatusDraft) -> bool:
        """Write the draft over the status it was computed from; False when the claim's status moved on.

        Fenced on the claim's resourceVersion: a pass over a stale cache (a watch broken by the network, a
        request of this process that landed after a later one) would otherwise write an older Launched or
        Ready over a newer one. A 409 caused by metadata alone (labels, finalizers, a deletion) is retried
        once over the live version, since the status this pass read is still the current one.
        """
        try:
            await self.api.patch_status(obj, draft.as_status(), resource_version=draft.resource_version)
            return True
        except Conflict:
            live = await self.api.get(obj["metadata"]["name"])
            if (live.get("status") or {}) != draft.original:
                return False
            try:
                await self.api.patch_status(
                    live, draft.as_status(), resource_version=live["metadata"].get("resourceVersion")
                )
            except Conflict:
                return False
            return True

    async def _node_patch(
        self,
        obj: dict[str, Any],
        draft: StatusDraft,
        type_: str,
        node: dict[str, Any],
        patch: dict[str, Any],
        **kw: Any,
    ) -> Result | None:
        """Patch the claim's Node; a refused patch becomes ``type_`` False with the apiserver's message and a
        pause (a new claim generation, or a success, ends it)."""
        name, generation = obj["metadata"]["name"], int(obj["metadata"].get("generation") or 0)
        step = f"node-patch:{type_}"
        held = self.refusals.holding(name, step, generation)
        if held is None:
            try:
                await self.client.merge_patch(NODES, node["metadata"]["name"], patch, **kw)
            except Conflict:
                raise
            except ApiError as e:
                held = self.refusals.record(name, step, generation, e, rejected="NodePatchRejected",
                                            action=f"patch Node {node['metadata']['name']}")  # fmt: skip
                if held is None:
                    raise
                log.warning("node patch refused", claim=name, reason=held.reason, message=held.message[:300])
            else:
                self.refusals.succeeded(name, step)
                return None
        self._set(draft, type_, "False", held.reason, held.message)
        return Result(requeue_after=max(0.1, held.wait(self.clock.monotonic())))

    async def _event(self, obj: dict[str, Any], refusal: Refusal) -> None:
        ts = cond.rfc3339(self.clock.now())
        meta = obj["metadata"]
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": "default"},
            "involvedObject": {"apiVersion": obj.get("apiVersion", ""), "kind": obj.get("kind", ""),
                               "name": meta["name"], "uid": meta.get("uid", "")},
            "type": "Warning", "reason": refusal.reason[:128], "message": refusal.message[:1024],
            "firstTimestamp": ts, "lastTimestamp": ts, "count": 1,
            "source": {"component": "kaito-ctrl-provisioner"}, "reportingComponent": "kaito-ctrl-provisioner",
        }  # fmt: skip
        try:
            await self.client.create(EVENTS, event, "default")
        except Exception as e:  # events are best effort
            log.debug("event not recorded", error=str(e)[:200])

    # ------------------------------------------------------------------ helpers
    @property
    def _names(self) -> tuple[str, str, str, str]:
        i = self.api.info
        return i.launched, i.registered, i.initialized, i.ready

    def _set(self, draft: StatusDraft, type_: str, status: str, reason: str, message: str = "") -> None:
        cond.set_condition(
            draft.conditions,
            type_,
            status,
            reason,
            message,
            now=self.clock.now(),
            observed_generation=draft.generation,
        )

    def _condition(self, draft: StatusDraft, type_: str) -> dict[str, Any] | None:
        return next((c for c in draft.conditions if c.get("type") == type_), None)

    def _is_true(self, draft: StatusDraft, type_: str) -> bool:
        c = self._condition(draft, type_)
        return bool(c and c.get("status") == "True")

    def _set_ready(self, draft: StatusDraft) -> None:
        launched, registered, initialized, ready = self._names
        for type_ in (launched, registered, initialized):
            c = self._condition(draft, type_)
            if c is None or c.get("status") != "True":
                status = c.get("status", "Unknown") if c else "Unknown"
                reason = (c.get("reason") if c else "") or "AwaitingReconciliation"
                message = (c.get("message") if c else "") or f"{type_} is not True"
                self._set(draft, ready, status, reason, message)
                return
        self._set(draft, ready, "True", "Ready")

    def _age(self, obj: dict[str, Any]) -> float:
        created = (obj.get("metadata") or {}).get("creationTimestamp")
        return self.clock.now() - cond.parse_rfc3339(created) if created else 0.0

    def _since(self, draft: StatusDraft, type_: str) -> float:
        c = self._condition(draft, type_)
        when = c.get("lastTransitionTime") if c else None
        return self.clock.now() - cond.parse_rfc3339(when) if when else 0.0

    def _nodes_of(self, obj: dict[str, Any]) -> list[dict[str, Any]]:
        provider_id = (obj.get("status") or {}).get("providerID")
        store = self.nodes.store
        found = store.by_index("providerID", provider_id) if provider_id else []
        return found or store.by_index("agentpool", obj["metadata"]["name"])

    async def _delete_claim(self, obj: dict[str, Any], draft: StatusDraft, why: str) -> None:
        log.warning("deleting the claim", reason=why)
        with contextlib.suppress(NotFound):
            draft.moved_to(await self.api.delete(obj["metadata"]["name"]))

    # ------------------------------------------------------------------ launch
    async def launch(self, obj: dict[str, Any], draft: StatusDraft) -> Result | None:
        launched = self._names[0]
        name = obj["metadata"]["name"]
        if self._is_true(draft, launched):
            self._launched.pop(name, None)
            op = self.ops.get(name)
            if op is not None and op.kind == "create" and op.done:
                # Started by a pass over a stale cache (its status write was refused): nothing to wait for.
                self.ops.pop(name)
                m.OPERATIONS_IN_FLIGHT.set(len(self.ops))
            return None
        try:
            spec = pool_spec(obj, self.clock.now())
        except InvalidClaim as e:
            self._set(draft, launched, "False", INVALID_SPEC, str(e))
            return DONE  # an edit of the claim brings it back
        seen = self._launched.get(name)
        if seen is not None and seen[0] == obj["metadata"].get("uid", ""):
            # Created by this process; the cache is older than the status that said so (or its write was
            # refused): say it again instead of asking ARM again. The status write stays fenced on the version
            # read, so over a stale cache it is refused (a label patch here must not move the fence on).
            self._set_launched(draft, seen[1])
            await self._populate_labels(obj, spec.vm_size, spec.labels)
            return None
        op = self.ops.get(name)
        if op is not None and op.kind == "create" and op.done:
            self.ops.pop(name)
            m.OPERATIONS_IN_FLIGHT.set(len(self.ops))
            outcome = self._launch_outcome(obj, draft, op.task, self.clock.monotonic() - op.started)
            if outcome is None:
                draft.moved_to(await self._populate_labels(obj, spec.vm_size, spec.labels))
            return outcome
        if op is not None and not op.done:
            # Counted from the claim's creation, so a restart of this process does not start the clock again.
            launching_for = max(self.clock.monotonic() - op.started, self._age(obj))
            if launching_for > self.tunables.launch_timeout:
                # Termination deletes the pool, preempting the create once ARM holds it.
                self._set(draft, launched, "False", "LaunchTimeout",
                          f"agent pool {name} was not provisioned within {self.tunables.launch_timeout:.0f}s")  # fmt: skip
                await self._delete_claim(obj, draft, "launch timeout")
                return DONE
            left = self.tunables.launch_timeout - launching_for
            return Result(requeue_after=max(0.1, min(OPERATION_POLL, left + 0.1)))
        wait = self.backoff.wait(name, self.clock.monotonic())
        if wait > 0:
            return Result(requeue_after=wait)
        # The pool as read just now for the capacity check: the create starts from it instead of reading it again.
        existing: Existing = UNREAD
        if self.tunables.capacity_check and name not in self._capacity_checked:
            try:
                existing = await self.cloud.get_pool(name)
                if existing is None:
                    await self.cloud.check_capacity(spec.vm_size, spec.node_count)
            except CloudError as e:
                if e.insufficient_capacity:
                    return self._launch_failed(obj, draft, e, "capacity")
                # Advisory: an identity with rights on the cluster only gets 403 on the subscription-wide SKU
                # and usage lists, and throttling or a blip says nothing about capacity. AKS judges the create.
                m.CAPACITY_CHECK_SKIPPED.labels(e.reason.value).inc()
                log.warning("capacity pre-check skipped", nodeclaim=name, reason=e.reason.value, code=e.code)
            self._capacity_checked.add(name)
        accepted = asyncio.Event()
        self.ops.start("create", name, self.clock.monotonic(),
                       lambda: self.cloud.create_pool(spec, on_accepted=accepted.set, existing=existing),
                       accepted)  # fmt: skip
        m.OPERATIONS_IN_FLIGHT.set(len(self.ops))
        current = self._condition(draft, launched)
        if (
            current is None
            or current.get("status") == "True"
            or current.get("reason") in ("", "AwaitingReconciliation")
        ):
            self._set(draft, launched, "Unknown", LAUNCHING,
                      f"creating AKS agent pool {name} (1 x {spec.vm_size})")  # fmt: skip
        return Result(requeue_after=OPERATION_POLL)

    def _launch_outcome(
        self, obj: dict[str, Any], draft: StatusDraft, task: asyncio.Task[Any], took: float
    ) -> Result | None:
        if task.cancelled():
            return Result(requeue=True)
        error = task.exception()
        if isinstance(error, CloudError):
            m.CLOUD_OPERATION_SECONDS.labels("create", error.reason.value).observe(took)
            return self._launch_failed(obj, draft, error, "create")
        if error is not None:
            raise error
        pool: AgentPool = task.result()
        m.CLOUD_OPERATION_SECONDS.labels("create", "Succeeded").observe(took)
        self._capacity_checked.discard(obj["metadata"]["name"])
        self.backoff.reset(obj["metadata"]["name"])
        self._launched[obj["metadata"]["name"]] = (obj["metadata"].get("uid", ""), pool)
        self._set_launched(draft, pool)
        m.LIFECYCLE_SECONDS.labels(self.api.kind, "launched").observe(self._age(obj))
        return None

    def _set_launched(self, draft: StatusDraft, pool: AgentPool) -> None:
        self._set(draft, self._names[0], "True", "Launched")
        if pool.node_image_version:
            draft.fields["imageID"] = pool.node_image_version

    async def _populate_labels(
        self, obj: dict[str, Any], vm_size: str, pool_labels: dict[str, str]
    ) -> dict[str, Any] | None:
        """What Karpenter writes on a launched claim: the instance type (kubectl's TYPE column) and its kin."""
        wanted = {
            INSTANCE_TYPE_LABEL: vm_size,
            "kubernetes.io/os": "linux",
            MACHINE_TYPE_LABEL: pool_labels.get(MACHINE_TYPE_LABEL, "gpu"),
        }
        if self.api.kind == "nodeclaim":
            wanted["karpenter.azure.com/sku-name"] = vm_size
            # As Karpenter labels a launched claim with the offering it resolved: AKS agent pools are
            # amd64 VMs at regular (on-demand) priority.
            wanted["kubernetes.io/arch"] = "amd64"
            wanted["karpenter.sh/capacity-type"] = "on-demand"
        have = obj["metadata"].get("labels") or {}
        missing = {k: v for k, v in wanted.items() if have.get(k) != v}
        if not missing:
            return None
        with contextlib.suppress(NotFound):
            return await self.api.client.merge_patch(
                self.api.resource, obj["metadata"]["name"], {"metadata": {"labels": missing}}
            )
        return None

    def _launch_failed(
        self, obj: dict[str, Any], draft: StatusDraft, e: CloudError, operation: str
    ) -> Result:
        launched = self._names[0]
        m.CLOUD_ERRORS.labels(operation, e.reason.value).inc()
        where = "quota and SKU pre-check" if operation == "capacity" else "creating the AKS agent pool"
        message = f"{where} failed: {e.code}: {e.message}" if e.code else f"{where} failed: {e.message}"
        # Unknown while retrying unchanged may still succeed; False when a person has to act.
        self._set(draft, launched, "Unknown" if e.retryable else "False", e.reason.value, message)
        delay = self.backoff.failed(obj["metadata"]["name"], self.clock.monotonic(), e.retry_after)
        log.warning("launch failed; retrying after backoff", reason=e.reason.value, code=e.code, delay=delay)
        return Result(requeue_after=delay)

    # ------------------------------------------------------------------ registration
    async def register(self, obj: dict[str, Any], draft: StatusDraft) -> Result | None:
        _, registered, _, _ = self._names
        name = obj["metadata"]["name"]
        nodes = self._nodes_of(obj)
        if any(n["metadata"].get("deletionTimestamp") for n in nodes) and self._is_true(draft, registered):
            # The Node is going away (someone deleted it): the claim goes with it, as in Karpenter.
            await self._delete_claim(obj, draft, "its Node is being deleted")
            return DONE
        nodes = [n for n in nodes if not n["metadata"].get("deletionTimestamp")]
        if not nodes:
            waited = self._since(draft, self._names[0])
            if waited > self.tunables.registration_timeout:
                self._set(draft, registered, "False", "RegistrationTimeout",
                          f"no Node joined from agent pool {name} within {self.tunables.registration_timeout:.0f}s")  # fmt: skip
                await self._delete_claim(obj, draft, "registration timeout")
                return DONE
            self._set(draft, registered, "Unknown", "NodeNotFound",
                      f"Node not registered with cluster (agent pool {name} is provisioned; waiting for its VM)")  # fmt: skip
            left = self.tunables.registration_timeout - waited
            return Result(requeue_after=max(0.1, min(NODE_POLL, left + 0.1)))
        if len(nodes) > 1:
            names = ", ".join(sorted(n["metadata"]["name"] for n in nodes))
            self._set(
                draft, registered, "False", "MultipleNodesFound", f"more than one Node for {name}: {names}"
            )
            return Result(requeue_after=NODE_POLL)
        node = nodes[0]
        patch = registration_patch(obj, node)
        if patch is not None:
            try:
                refused = await self._node_patch(
                    obj,
                    draft,
                    registered,
                    node,
                    patch,
                    resource_version=node["metadata"].get("resourceVersion"),
                )
            except Conflict:
                return Result(requeue=True)  # the cache is behind; look again
            if refused is not None:
                return refused
        if not self._is_true(draft, registered):
            m.LIFECYCLE_SECONDS.labels(self.api.kind, "registered").observe(self._age(obj))
        draft.fields["providerID"] = (node.get("spec") or {}).get("providerID", "")
        draft.fields["nodeName"] = node["metadata"]["name"]
        self._set(draft, registered, "True", "Registered")
        return None

    # ------------------------------------------------------------------ initialization
    async def initialize(self, obj: dict[str, Any], draft: StatusDraft) -> Result | None:
        _, _, initialized, _ = self._names
        nodes = [n for n in self._nodes_of(obj) if not n["metadata"].get("deletionTimestamp")]
        if not nodes:
            return Result(requeue_after=NODE_POLL)
        node = nodes[0]
        status = node.get("status") or {}
        for key in ("capacity", "allocatable"):
            if status.get(key):
                draft.fields[key] = dict(status[key])
        if self._is_true(draft, initialized):
            return None
        check = initialization(obj, node)
        if not check.ok:
            self._set(draft, initialized, "Unknown", check.reason, check.message)
            return Result(requeue_after=NODE_POLL)
        patch = initialized_patch(node)
        if patch is not None:
            refused = await self._node_patch(obj, draft, initialized, node, patch)
            if refused is not None:
                return refused
        m.LIFECYCLE_SECONDS.labels(self.api.kind, "initialized").observe(self._age(obj))
        self._set(draft, initialized, "True", "Initialized")
        return None

    # ------------------------------------------------------------------ termination
    async def terminate(self, obj: dict[str, Any]) -> Result:
        """Nodes first, then the pool (waiting for its deletion to finish), then the finalizer."""
        name = obj["metadata"]["name"]
        if TERMINATION_FINALIZER not in (obj["metadata"].get("finalizers") or ()):
            return DONE
        if obj["metadata"].get("uid") in self._terminated:
            return DONE
        current = self.ops.get(name)
        if current is not None and current.kind == "create":
            if not current.done:
                if current.accepted is None or not current.accepted.is_set():
                    # The create's PUT has not been answered: it may still reach ARM after a delete found
                    # nothing, leaving a pool without a claim. Wait for the answer (seconds, not the create).
                    await self._mark_terminating(
                        obj, "WaitingForCreate", f"waiting for ARM to accept agent pool {name}'s create"
                    )
                    return Result(requeue_after=OPERATION_POLL)
                # ARM holds the create: a DELETE now preempts it (it ends AKSOperationPreemptedByDelete), so
                # stop waiting on the create and delete at once instead of paying for the whole GPU VM create.
                log.info("deleting an agent pool whose create is in flight", pool=name)
                await self.ops.cancel(name)
            else:
                self.ops.pop(name)
        self._capacity_checked.discard(name)
        self._launched.pop(name, None)
        nodes = self._nodes_of(obj)
        for node in nodes:
            if not node["metadata"].get("deletionTimestamp"):
                with contextlib.suppress(NotFound):
                    await self.client.delete(NODES, node["metadata"]["name"], propagation_policy=None)
        op = self.ops.get(name)
        if op is None:
            wait = self.backoff.wait("delete:" + name, self.clock.monotonic())
            if wait > 0:
                return Result(requeue_after=wait)
            # Once the claim's Node is gone there is nothing left for AKS to drain, so a PodDisruptionBudget must
            # not hold the pool (and its GPU bill) forever: delete ignoring PDBs. While a Node remains, drain.
            ignore_pdb = not nodes
            self.ops.start("delete", name, self.clock.monotonic(),
                           lambda: self.cloud.delete_pool(name, ignore_pdb=ignore_pdb))  # fmt: skip
            m.OPERATIONS_IN_FLIGHT.set(len(self.ops))
            await self._mark_terminating(obj, "Deleting", f"deleting AKS agent pool {name}")
            return Result(requeue_after=OPERATION_POLL)
        if not op.done:
            return Result(requeue_after=OPERATION_POLL)
        self.ops.pop(name)
        m.OPERATIONS_IN_FLIGHT.set(len(self.ops))
        took = self.clock.monotonic() - op.started
        error = None if op.task.cancelled() else op.task.exception()
        if op.task.cancelled():
            return Result(requeue=True)
        if isinstance(error, CloudError):
            m.CLOUD_ERRORS.labels("delete", error.reason.value).inc()
            m.CLOUD_OPERATION_SECONDS.labels("delete", error.reason.value).observe(took)
            await self._mark_terminating(obj, error.reason.value, f"deleting AKS agent pool {name} failed: "
                                         f"{error.code}: {error.message}")  # fmt: skip
            return Result(
                requeue_after=self.backoff.failed("delete:" + name, self.clock.monotonic(), error.retry_after)
            )
        if error is not None:
            raise error
        m.CLOUD_OPERATION_SECONDS.labels("delete", "Succeeded").observe(took)
        self.backoff.reset("delete:" + name)
        self.backoff.reset(name)
        # The pool is gone, so its VM is: let its Node objects go too.
        for node in self._nodes_of(obj):
            await release_node(self.client, node)
        with contextlib.suppress(NotFound):
            await self.api.remove_finalizer(obj)
        self._terminated[obj["metadata"].get("uid", "")] = None
        while len(self._terminated) > 1000:
            self._terminated.popitem(last=False)
        log.info("claim terminated; agent pool deleted", pool=name)
        return DONE

    async def _mark_terminating(self, obj: dict[str, Any], reason: str, message: str) -> None:
        draft = StatusDraft.of(obj)
        self._set(draft, TERMINATING_CONDITION, "True", reason, message)
        if draft.changed:
            try:
                await self._write_status(obj, draft)
            except NotFound:
                pass
            except ApiError as e:  # informational only: a refused write must not stop the termination
                log.warning("terminating status not written", error=str(e)[:300])

    async def close(self) -> None:
        await self.ops.cancel_all()


__all__ = ["ClaimLifecycle", "Reason", "StatusDraft", "Tunables"]
