"""The Workspace reconciler, as named steps: finalizer -> target node count -> nodes -> workload -> status.

Each step reads the informer caches and writes through the client; none waits. A step that needs the world to
move on (nodes joining, pods starting) returns a short requeue, and watch events usually come sooner.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
import structlog

from kaito_ctrl.api import labels as L
from kaito_ctrl.controllers.workspace import ownership, podsecurity_gate, revisions, rootcause
from kaito_ctrl.controllers.workspace.metrics import TIME_TO_READY
from kaito_ctrl.controllers.workspace.nodes import NodeCondition, NodeProvisioner, NodesResult
from kaito_ctrl.controllers.workspace.pending import pending_conditions
from kaito_ctrl.controllers.workspace.spec import (
    BY_WORKSPACE,
    WorkspaceSpec,
    ensure_workspace_index,
    planned_node_count,
)
from kaito_ctrl.controllers.workspace.tuning import (
    DEFAULT_OUTPUT_DIR,
    JOB_PENDING,
    JOB_STARTED,
    InvalidTuningConfig,
    JobOutcome,
    job_outcome,
    render_tuning,
)
from kaito_ctrl.controllers.workspace.tuning import output_dir as tuning_output_dir
from kaito_ctrl.controllers.workspace.workload import render_inference, render_template_workload
from kaito_ctrl.kube import conditions as cond
from kaito_ctrl.kube.errors import ApiError, Conflict, Invalid, NotFound
from kaito_ctrl.kube.informer import SharedInformer
from kaito_ctrl.kube.refusals import Refusal, Refusals
from kaito_ctrl.kube.resources import (
    CONFIGMAPS,
    DEPLOYMENTS,
    EVENTS,
    JOBS,
    NETWORKPOLICIES,
    SERVICES,
    STATEFULSETS,
    WORKSPACES,
)
from kaito_ctrl.runtime.controller import Result
from kaito_ctrl.runtime.handlers import Request

log = structlog.get_logger(__name__)
T = TypeVar("T")

PHASE_OF_CONDITION = {
    L.COND_RESOURCE_READY: "nodes",
    L.COND_INFERENCE_READY: "workload",
    L.COND_JOB_STARTED: "workload",
    L.COND_WORKSPACE_SUCCEEDED: "ready",
}
NODES_REQUEUE = 2.0
# A workload on its way (images pulling, pods starting) moves by watch events on its pods and Deployment; the
# requeue is only a safety net. At 5 s it reconciled every not-ready Workspace of a large cluster every 5 s
# (2,000 Workspaces: 400 reconciles a second, which delayed new Workspaces by seconds in P9).
WORKLOAD_REQUEUE = 30.0
# A tuning config ConfigMap is not watched: a fixed one is found by reading it again.
CONFIG_REQUEUE = 5.0
KINDS = {
    "Service": SERVICES,
    "Deployment": DEPLOYMENTS,
    "StatefulSet": STATEFULSETS,
    "ConfigMap": CONFIGMAPS,
    "Job": JOBS,
    "NetworkPolicy": NETWORKPOLICIES,
}


async def _all(steps: Iterable[Awaitable[T]]) -> list[T]:
    """Run ``steps`` together and wait for every one; then raise the first failure, if any (no write is left in
    flight when the reconcile ends)."""
    results = await asyncio.gather(*steps, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]


@dataclass
class Observed:
    """What the steps found out, for the status step."""

    target: int = 0
    nodes: NodesResult | None = None
    workload_ready: bool = False
    inference_reason: str = "WorkspaceInferenceStatusPending"
    inference_message: str = "the inference workload is starting"
    worker_nodes: list[str] = field(default_factory=list)
    estimate_error: str = ""
    job: JobOutcome | None = None
    # Writes the apiserver refused in this reconcile (each already on a condition): the reconcile pauses.
    refusals: list[Refusal] = field(default_factory=list)
    conflict: str = ""  # why the workload was not written (a foreign object, a Pod Security violation)
    conflict_reason: str = ownership.REASON


class WorkspaceReconciler:
    def __init__(
        self,
        client: Any,
        provisioner: NodeProvisioner,
        *,
        workspaces: SharedInformer,
        deployments: SharedInformer,
        statefulsets: SharedInformer,
        pods: SharedInformer,
        jobs: SharedInformer | None = None,
        services: SharedInformer | None = None,
        image_registry: str,
        deletion_timeout: float = 300.0,
        refusals: Refusals | None = None,
        pod_security: bool = True,
        cluster_cidrs: str = "",
    ) -> None:
        self.client = client
        self.provisioner = provisioner
        self.workspaces = workspaces
        self.deployments = deployments
        self.statefulsets = statefulsets
        self.pods = pods
        ensure_workspace_index(pods.store)
        self.jobs = jobs
        self.services = services
        self._workload_caches: dict[str, SharedInformer | None] = {
            "Deployment": deployments, "StatefulSet": statefulsets, "Service": services,
        }  # fmt: skip
        # Workloads just written, by key: observed from the apply response until the cache has caught up.
        self._written: dict[str, dict[str, Any]] = {}
        # Per Workspace: the digest of the inputs its workload was last rendered from, and the objects (kind,
        # cache key, resourceVersion) that pass found already as rendered (apply_workload).
        self._verified: dict[str, tuple[bytes, tuple[tuple[str, str, str], ...]]] = {}
        self.image_registry = image_registry
        self.deletion_timeout = deletion_timeout
        self.refusals = refusals if refusals is not None else Refusals()
        self.pod_security = pod_security
        self.cluster_cidrs = cluster_cidrs

    async def __call__(self, request: Request) -> Result:
        obj = self.workspaces.store.get(request.key)
        if obj is None:
            self.refusals.forget(request.key)
            self._verified.pop(request.key, None)
            return Result()
        ws = WorkspaceSpec(copy.deepcopy(obj))
        if ws.obj["metadata"].get("deletionTimestamp"):
            return await self.finalize(ws)
        try:
            return await self.reconcile(ws)
        except Exception:
            # No Workspace stays without status: a first reconcile that fails still says what is awaited.
            if not (ws.obj.get("status") or {}).get("conditions"):
                with contextlib.suppress(Exception):
                    await self.write_status(ws, Observed(target=int(ws.resource.get("count") or 1)))
            raise

    async def reconcile(self, ws: WorkspaceSpec) -> Result:
        observed = Observed()
        annotations, refused = await self.guarded(
            ws,
            "revision",
            "RevisionRejected",
            "record the workspace revision",
            lambda: revisions.ensure_revision(self.client, ws),
            event=True,
        )
        if refused is not None:
            observed.refusals.append(refused)
        _, refused = await self.guarded(
            ws,
            "finalizer",
            "WorkspaceRejected",
            "add the finalizer",
            lambda: self.ensure_finalizer(ws, annotations or {}),
            event=True,  # no condition is about the finalizer: an Event says it
        )
        if refused is not None:
            observed.refusals.append(refused)  # the finalizer is retried after the pause; the rest goes on
        observed.target = self.target_node_count(ws, observed)
        if ws.tuning is not None:
            return await self.reconcile_tuning(ws, observed)
        observed.nodes = await self.ensure_nodes(ws, observed, max(observed.target, 1))
        if observed.nodes.ready and not observed.estimate_error:
            try:
                _, refused = await self.guarded(ws, "workload", "WorkloadRejected", "apply the inference workload",
                                                lambda: self.apply_workload(ws, observed.target))  # fmt: skip
            except ownership.WorkloadRefused as e:
                observed.conflict, observed.conflict_reason, refused = str(e), e.reason, None
            if refused is None:
                self.observe_workload(ws, observed)
            else:
                observed.refusals.append(refused)
                observed.inference_reason, observed.inference_message = refused.reason, refused.message
        await self.write_status(ws, observed)
        if observed.refusals:
            return self.paused(observed)
        if not observed.nodes.ready:
            return Result(requeue_after=NODES_REQUEUE)
        if not observed.workload_ready:
            return Result(requeue_after=WORKLOAD_REQUEUE)
        return Result()

    # ------------------------------------------------------------------ refused writes
    async def guarded(
        self,
        ws: WorkspaceSpec,
        step: str,
        rejected: str,
        action: str,
        fn: Callable[[], Awaitable[T]],
        *,
        event: bool = False,
    ) -> tuple[T | None, Refusal | None]:
        """Run a writing step; a write the apiserver refuses becomes a Refusal (reason + the apiserver's
        message) and the step pauses with backoff, unless the Workspace changes (a new generation)."""
        key = f"{ws.namespace}/{ws.name}"
        held = self.refusals.holding(key, step, ws.generation)
        if held is not None:
            return None, held
        try:
            value = await fn()
        except ApiError as e:
            refusal = self.refusals.record(key, step, ws.generation, e, rejected=rejected, action=action)
            if refusal is None:
                raise
            log.warning("write refused by the apiserver", step=step, reason=refusal.reason,
                        attempts=refusal.attempts, message=refusal.message[:300])  # fmt: skip
            if event:
                await self.event(ws, "Warning", refusal.reason, refusal.message)
            return None, refusal
        self.refusals.succeeded(key, step)
        return value, None

    async def ensure_nodes(self, ws: WorkspaceSpec, observed: Observed, target: int) -> NodesResult:
        api = getattr(self.provisioner, "api", None)
        kind = str(api.resource.kind) if api is not None else "Node"
        result, refused = await self.guarded(
            ws, "nodes", f"{kind}Rejected", f"create a {kind} for the workspace",
            lambda: self.provisioner.ensure(ws, target),
        )  # fmt: skip
        if refused is None:
            if result is None:  # guarded returns a value or a refusal; never neither
                raise RuntimeError("node provisioner returned nothing")
            return result
        observed.refusals.append(refused)
        type_ = getattr(self.provisioner, "condition_type", L.COND_NODES_READY)
        return NodesResult(
            False,
            [],
            [NodeCondition(type_, False, refused.reason, refused.message)],
            refused.reason,
            refused.message,
        )

    def paused(self, observed: Observed) -> Result:
        now = self.refusals.clock.monotonic()
        return Result(requeue_after=max(0.1, min(r.wait(now) for r in observed.refusals)))

    # ------------------------------------------------------------------ steps
    async def ensure_finalizer(self, ws: WorkspaceSpec, annotations: dict[str, str]) -> None:
        """Add the finalizer and the revision annotations in one patch, and go on with the patched object (no
        wait for the watch to bring it back)."""
        finalizers = list(ws.obj["metadata"].get("finalizers") or [])
        meta: dict[str, Any] = {}
        if L.WORKSPACE_FINALIZER not in finalizers:
            meta["finalizers"] = [*finalizers, L.WORKSPACE_FINALIZER]
        if annotations:
            meta["annotations"] = annotations
        if not meta:
            return
        patched = await self.client.merge_patch(
            WORKSPACES,
            ws.name,
            {"metadata": meta},
            ws.namespace,
            resource_version=ws.obj["metadata"].get("resourceVersion"),
        )
        ws.obj["metadata"] = patched["metadata"]

    def target_node_count(self, ws: WorkspaceSpec, observed: Observed) -> int:
        """Set once (status.targetNodeCount), from the estimator; BYO and tuning use the requested count."""
        current = int((ws.obj.get("status") or {}).get("targetNodeCount") or 0)
        if current:
            return current
        count, error = planned_node_count(ws)
        observed.estimate_error = error
        return count

    def _render_inputs(self, ws: WorkspaceSpec, nodes: int, requirements: list[dict[str, Any]]) -> bytes:
        """A digest of everything the workload is rendered from: the Workspace's identity, spec (its generation),
        labels and annotations, the node count and requirements, the image registry."""
        meta = ws.obj["metadata"]
        body = orjson.dumps(
            [meta.get("uid"), meta.get("namespace"), meta.get("name"), meta.get("generation"),
             meta.get("labels"), meta.get("annotations"), nodes, requirements, self.image_registry],
            option=orjson.OPT_SORT_KEYS,
        )  # fmt: skip
        return hashlib.blake2b(body, digest_size=20).digest()

    def _still_verified(self, key: str, inputs: bytes) -> bool:
        """True when the last pass rendered from the same inputs and found every object as rendered, and none of
        those objects has changed in the cache since (same resourceVersion)."""
        verified = self._verified.get(key)
        if verified is None or verified[0] != inputs:
            return False
        for kind, obj_key, rv in verified[1]:
            cache = self._workload_caches.get(kind)
            live = cache.store.get(obj_key) if cache is not None else None
            if live is None or live["metadata"].get("resourceVersion") != rv:
                return False
        return True

    async def apply_workload(self, ws: WorkspaceSpec, nodes: int) -> None:
        requirements = self.provisioner.node_requirements(ws)
        if ws.preset is None:
            nodes = 1
        key = f"{ws.namespace}/{ws.name}"
        inputs = self._render_inputs(ws, nodes, requirements)
        # Pod and node events reconcile a Workspace many times with nothing to change: when its inputs and its
        # objects are as the last pass found them, rendering again (a third of a reconcile's CPU) would only
        # confirm it. Any change to the Workspace or to one of its objects (a hand edit) renders and compares.
        if self._still_verified(key, inputs):
            return
        self._verified.pop(key, None)
        if self.pod_security:
            await podsecurity_gate.check(self.client, ws.obj, ws.namespace)
        if ws.preset is None:
            objects = render_template_workload(ws, node_requirements=requirements)
        else:
            objects = render_inference(
                ws, nodes=nodes, node_requirements=requirements, registry=self.image_registry
            )
        seen: list[tuple[str, str, str]] = []
        to_write: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
        for obj in objects:
            live = self._cached(obj)
            if live is not None and covers(
                live, {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
            ):
                meta = live["metadata"]
                seen.append(
                    (obj["kind"], f"{meta.get('namespace')}/{meta['name']}", meta.get("resourceVersion"))
                )
                continue  # already as rendered: no write (hand edits to our fields still differ, and are applied)
            to_write.append((obj, live))
        # The ownership check of every object to write first, then the writes, each step for all objects at
        # once: a foreign object still stops every write, and a new Workspace waits two round trips, not four.
        checked = await _all(
            ownership.ensure_ours(self.client, KINDS[obj["kind"]], obj, ws.uid, live)
            for obj, live in to_write
        )

        async def write(obj: dict[str, Any], live: dict[str, Any] | None) -> None:
            if obj["kind"] == "Service":
                await self.apply_service(ws, obj, live, checked=True)
            else:
                written = await self._apply_owned(ws, obj, live, checked=True)
                if obj["kind"] in ("Deployment", "StatefulSet"):
                    self._written[f"{ws.namespace}/{ws.name}"] = written

        await _all(write(obj, live) for (obj, _), live in zip(to_write, checked, strict=True))
        # A preset that changed size moves between Deployment and StatefulSet: remove the other kind.
        other = STATEFULSETS if nodes <= 1 else DEPLOYMENTS
        cache = self.statefulsets if nodes <= 1 else self.deployments
        leftover = cache.store.get(key)
        await ownership.delete_owned(self.client, other, leftover, ws.uid)
        if len(seen) == len(objects) and leftover is None:
            self._verified[key] = (inputs, tuple(seen))  # nothing written: the cache holds what was compared

    def _cached(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        cache, meta = self._workload_caches.get(obj["kind"]), obj["metadata"]
        return cache.store.get(f"{meta.get('namespace')}/{meta['name']}") if cache is not None else None

    async def reconcile_tuning(self, ws: WorkspaceSpec, observed: Observed) -> Result:
        observed.nodes = await self.ensure_nodes(ws, observed, 1)
        job = self.jobs.store.get(f"{ws.namespace}/{ws.name}") if self.jobs is not None else None
        refused = None
        if observed.nodes.ready:
            current = job
            try:
                job, refused = await self.guarded(ws, "workload", "TuningJobRejected", "create the tuning Job",
                                                  lambda: self.apply_tuning(ws, current))  # fmt: skip
            except ownership.WorkloadRefused as e:
                observed.conflict, observed.conflict_reason, job, refused = str(e), e.reason, None, None
            except InvalidTuningConfig as e:
                # Nothing is created until the config is fixed; the ConfigMap is read again on each requeue.
                await self.event(ws, "Warning", e.reason, str(e))
                observed.job = JobOutcome("Pending", e.reason, str(e))
                await self.write_status(ws, observed)
                return Result(requeue_after=CONFIG_REQUEUE)
        observed.job = job_outcome(job)
        if job is not None and observed.job.state in ("Pending", "Running"):
            # A Job whose pod cannot start (an input image that will not pull, unschedulable) stays active
            # while its pod retries: the pod's own state is the cause to name, as for inference.
            problem = rootcause.pods_root_cause(self._pods_of(ws))
            if problem is not None:
                observed.job = JobOutcome(observed.job.state, *problem)
        if refused is not None:
            observed.refusals.append(refused)
            observed.job = JobOutcome("Pending", refused.reason, refused.message)
        await self.write_status(ws, observed)
        if observed.refusals:
            return self.paused(observed)
        if observed.job.state in ("Succeeded", "Failed"):
            return Result()
        return Result(requeue_after=NODES_REQUEUE if not observed.nodes.ready else WORKLOAD_REQUEUE)

    async def tuning_results_dir(self, ws: WorkspaceSpec) -> str:
        """Where the user's own tuning config writes its results (read once per Job, as Kaito does); the
        default config's directory otherwise. InvalidTuningConfig names what to fix."""
        name = (ws.tuning or {}).get("config")
        if not name:
            return DEFAULT_OUTPUT_DIR
        try:
            configmap = await self.client.get(CONFIGMAPS, str(name), ws.namespace)
        except NotFound:
            raise InvalidTuningConfig(
                f"tuning.config: ConfigMap {name} not found in namespace {ws.namespace}"
            ) from None
        return tuning_output_dir(configmap)

    async def apply_tuning(self, ws: WorkspaceSpec, job: dict[str, Any] | None) -> dict[str, Any] | None:
        """Create the Job; a Job of an older revision is deleted first (its pod template is immutable)."""
        if job is not None:
            await ownership.ensure_ours(self.client, JOBS, job, ws.uid, job)
            revision = (job["metadata"].get("annotations") or {}).get(L.ANNOTATION_REVISION)
            if revision in (ws.revision, ws.legacy_revision):
                return job
            if not job["metadata"].get("deletionTimestamp"):
                await ownership.delete_owned(self.client, JOBS, job, ws.uid, propagation_policy="Foreground")
            return None
        if self.pod_security:
            await podsecurity_gate.check(self.client, ws.obj, ws.namespace)
        objects = render_tuning(
            ws,
            node_requirements=self.provisioner.node_requirements(ws),
            registry=self.image_registry,
            cluster_cidrs=self.cluster_cidrs,
            results_dir=await self.tuning_results_dir(ws),
        )
        created = None
        for obj in objects:
            if obj["kind"] == "Job":
                try:
                    created = await self.client.create(JOBS, obj, ws.namespace)
                except Conflict:
                    # Made by an earlier reconcile (the cache catches up), or someone else's Job.
                    await ownership.ensure_ours(self.client, JOBS, obj, ws.uid)
                    created = None
            else:
                await self._apply_owned(ws, obj)
        return created

    async def _apply_owned(
        self,
        ws: WorkspaceSpec,
        obj: dict[str, Any],
        live: dict[str, Any] | None = None,
        *,
        checked: bool = False,
    ) -> dict[str, Any]:
        async def conflict(detail: str) -> None:
            name = f"{obj['kind']} {obj['metadata']['name']}"
            await self.event(
                ws, "Warning", "FieldManagerConflict", f"{name}: {detail}; reclaiming its fields"
            )

        return await ownership.apply_owned(
            self.client, KINDS[obj["kind"]], obj, ws.uid, live=live, on_conflict=conflict, checked=checked
        )

    async def apply_service(
        self, ws: WorkspaceSpec, obj: dict[str, Any], live: dict[str, Any] | None, *, checked: bool = False
    ) -> None:
        """Server-side apply, then make the port list exactly ours: ports added by hand edits belong to another
        field manager, which apply alone never removes (and a duplicate port name makes it fail)."""
        want = obj["spec"]["ports"]
        meta = obj["metadata"]
        try:
            live = await self._apply_owned(ws, obj, live, checked=checked)
        except Invalid:
            live = {}
        ports = [
            {k: p.get(k) for k in ("name", "port", "targetPort", "protocol")}
            for p in (live.get("spec") or {}).get("ports") or []
        ]
        if ports != want:
            # A JSON merge patch replaces the whole list.
            await self.client.merge_patch(
                SERVICES, meta["name"], {"spec": {"ports": want}}, meta["namespace"]
            )
            await self._apply_owned(ws, obj)

    def _pods_of(self, ws: WorkspaceSpec) -> list[dict[str, Any]]:
        """The Workspace's pods in the cache (its workload's, or its tuning Job's)."""
        return [
            p for p in self.pods.store.by_index(BY_WORKSPACE, f"{ws.namespace}/{ws.name}")
            if p["metadata"].get("namespace") == ws.namespace
            and (p["metadata"].get("labels") or {}).get(L.LABEL_WORKSPACE) == ws.name
        ]  # fmt: skip

    def observe_workload(self, ws: WorkspaceSpec, observed: Observed) -> None:
        key = f"{ws.namespace}/{ws.name}"
        cached = self.deployments.store.get(key) or self.statefulsets.store.get(key)
        written = self._written.pop(key, None)
        # The cache may not have the workload just applied yet: the apply's answer is as fresh.
        workload = (
            cached if cached is not None and (written is None or _rv(cached) >= _rv(written)) else written
        )
        pods = self._pods_of(ws)
        observed.worker_nodes = sorted(
            {p["spec"].get("nodeName") for p in pods if (p.get("spec") or {}).get("nodeName")}
        )
        if workload is None:
            observed.inference_message = "the workload is being created"
            return
        spec, status = workload.get("spec") or {}, workload.get("status") or {}
        want = int(spec.get("replicas") or 1)
        current_gen = int(status.get("observedGeneration") or 0) >= int(
            workload["metadata"].get("generation") or 0
        )
        ready = int(status.get("readyReplicas") or 0)
        updated = int(status.get("updatedReplicas") or 0)
        available = int(status.get("availableReplicas", ready) or 0)
        # Ready means every desired pod of the current revision is ready: never on a crash-looping pod.
        if (
            current_gen
            and ready >= want
            and updated >= want
            and available >= want
            and all(rootcause.pod_ready(p) for p in pods if not p["metadata"].get("deletionTimestamp"))
        ):
            observed.workload_ready = True
            observed.inference_reason = "WorkspaceInferenceStatusSuccess"
            observed.inference_message = f"{ready}/{want} inference pod(s) ready"
            return
        problem = rootcause.pods_root_cause(pods)
        if problem:
            observed.inference_reason, observed.inference_message = problem
        else:
            observed.inference_message = f"{ready}/{want} inference pod(s) ready"

    async def write_status(self, ws: WorkspaceSpec, observed: Observed) -> None:
        status = copy.deepcopy(ws.obj.get("status") or {})
        conditions: list[dict[str, Any]] = list(status.get("conditions") or [])
        now, gen = time.time(), ws.generation
        changed: list[tuple[str, str, str, str]] = []

        def put(type_: str, ok: bool | str, reason: str, message: str) -> None:
            before = next(
                ((c.get("status"), c.get("reason")) for c in conditions if c.get("type") == type_), None
            )
            status_ = ok if isinstance(ok, str) else ("True" if ok else "False")
            cond.set_condition(conditions, type_, ok, reason, message, now=now, observed_generation=gen)
            # An Event when the status or the reason moves, as a person reading `kubectl describe` follows the
            # story; a message that only counts progress ("1 of 2 ready") or a new observedGeneration is in the
            # condition, not another Event (it made about twenty Events per provisioned Workspace).
            if before != (status_, reason):
                changed.append((type_, status_, reason, message))

        nodes = observed.nodes
        if observed.estimate_error:
            put(L.COND_RESOURCE_READY, False, "NodeCountEstimateFailed", observed.estimate_error)
        elif nodes is not None:
            for c in nodes.conditions:
                put(c.type, c.status, c.reason, c.message)
            if nodes.ready:
                put(
                    L.COND_RESOURCE_READY,
                    True,
                    "workspaceResourceStatusSuccess",
                    "workspace resource is ready",
                )
            else:
                put(
                    L.COND_RESOURCE_READY,
                    False,
                    nodes.reason or "workspaceResourceStatusNotReady",
                    nodes.message,
                )
        resource_ok = nodes is not None and nodes.ready and not observed.estimate_error
        if observed.conflict:
            observed.inference_reason, observed.inference_message = (
                observed.conflict_reason,
                observed.conflict,
            )
            observed.job = JobOutcome("Pending", observed.conflict_reason, observed.conflict)
        if ws.inference is not None:
            put(
                L.COND_INFERENCE_READY,
                observed.workload_ready,
                observed.inference_reason,
                observed.inference_message,
            )
            ok = resource_ok and observed.workload_ready
            summary_reason = "workspaceSucceeded" if ok else "workspacePending"
            summary_message = (
                "workspace succeeds" if ok else "waiting for resources and inference to be ready"
            )
            put(L.COND_WORKSPACE_SUCCEEDED, ok, summary_reason, summary_message)
            put(L.COND_WORKSPACE_READY, ok, "workspaceReady" if ok else "workspacePending", summary_message)
            state = "Ready" if ok else ("Pending" if not resource_ok else "NotReady")
        else:
            job = observed.job or job_outcome(None)
            started = job.state in ("Running", "Succeeded", "Failed")
            put(
                L.COND_JOB_STARTED,
                started,
                JOB_STARTED if started else job.reason,
                job.message,
            )
            ok = job.state == "Succeeded"
            # Waiting on nothing in particular is workspacePending; a named cause (a pod problem) is kept.
            reason = "workspacePending" if job.reason in (JOB_STARTED, JOB_PENDING) else job.reason
            put(L.COND_WORKSPACE_SUCCEEDED, ok, reason, job.message)
            put(L.COND_WORKSPACE_READY, ok, reason, job.message)
            state = job.state
        # Every condition that applies exists from the first reconcile on: Unknown, naming what is awaited.
        node_condition = getattr(self.provisioner, "condition_type", None)
        present = {c.get("type") for c in conditions}
        for type_, (reason, message) in pending_conditions(
            tuning=ws.tuning is not None, node_condition=node_condition
        ).items():
            if type_ not in present:
                put(type_, "Unknown", reason, message)
        status.update(
            conditions=conditions,
            state=state,
            targetNodeCount=observed.target,
            workerNodes=observed.worker_nodes or (nodes.nodes if nodes else []),
            observedGeneration=gen,
        )
        if status == (ws.obj.get("status") or {}):
            return  # nothing changed: no write
        key = f"{ws.namespace}/{ws.name}"
        if self.refusals.holding(key, "status", gen) is not None:
            return  # the status write was refused a moment ago: pause, as for any refused write
        try:
            # Fenced: written only over the object this status was computed from. A reconcile on a stale cache,
            # or a deposed leader's last one, gets 409 and requeues instead of overwriting newer status.
            written = await self.client.merge_patch(
                WORKSPACES,
                ws.name,
                {"status": status},
                ws.namespace,
                subresource="status",
                resource_version=ws.obj["metadata"].get("resourceVersion"),
            )
        except NotFound:
            return
        except Conflict:
            self.refusals.succeeded(key, "status")
            raise  # the controller requeues with backoff; the newer object comes through the informer
        except ApiError as e:
            refusal = self.refusals.record(
                key, "status", gen, e, rejected="StatusRejected", action="write the workspace status"
            )
            if refusal is None:
                raise
            observed.refusals.append(refusal)
            if refusal.attempts == 1:  # the status cannot say it: an Event does
                await self.event(ws, "Warning", refusal.reason, refusal.message)
            return
        self.refusals.succeeded(key, "status")
        if isinstance(written, dict) and written.get("metadata"):
            ws.obj["metadata"] = written["metadata"]
            ws.obj["status"] = status
        created = (
            cond.parse_rfc3339(str(ws.obj["metadata"].get("creationTimestamp") or ""))
            if ws.obj["metadata"].get("creationTimestamp")
            else now
        )
        # Conditions that moved together to the same reason and message (ResourceReady follows NodeClaimReady,
        # WorkspaceReady follows WorkspaceSucceeded) make one Event naming them all.
        grouped: dict[tuple[str, str, str], list[str]] = {}
        for type_, st, reason, message in changed:
            grouped.setdefault((st, reason, message), []).append(type_)
            phase = PHASE_OF_CONDITION.get(type_)
            if phase and st == "True":
                TIME_TO_READY.labels(phase).observe(max(0.0, now - created))
        for (st, reason, message), types in grouped.items():
            kind = "Normal" if st == "True" else "Warning"
            await self.event(ws, kind, reason, f"{','.join(types)}={st}: {message}")

    async def event(self, ws: WorkspaceSpec, kind: str, reason: str, message: str) -> None:
        ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{ws.name}.", "namespace": ws.namespace},
            "involvedObject": {
                "apiVersion": ws.obj.get("apiVersion", "kaito.sh/v1beta1"), "kind": "Workspace",
                "name": ws.name, "namespace": ws.namespace, "uid": ws.uid,
            },
            "type": kind, "reason": reason[:128], "message": message[:1024],
            "firstTimestamp": ts, "lastTimestamp": ts, "count": 1,
            "source": {"component": "kaito-ctrl"}, "reportingComponent": "kaito-ctrl",
        }  # fmt: skip
        try:
            await self.client.create(EVENTS, event, ws.namespace)
        except Exception as e:  # events are best effort; never fail a reconcile for one
            log.debug("event not recorded", error=str(e)[:200])

    async def finalize(self, ws: WorkspaceSpec) -> Result:
        """Delete the node objects and wait for them, but never past the deletion timeout."""
        remaining = await self.provisioner.delete_all(ws)
        deleted_at = ws.obj["metadata"]["deletionTimestamp"]
        age = time.time() - cond.parse_rfc3339(deleted_at)
        if remaining and age < self.deletion_timeout:
            return Result(requeue_after=NODES_REQUEUE)
        if remaining:
            await self.event(
                ws, "Warning", "NodeDeletionTimedOut",
                f"{remaining} node object(s) still exist after {int(age)}s; releasing the workspace, the node "
                "provisioner's garbage collection removes them",
            )  # fmt: skip
        finalizers = [f for f in ws.obj["metadata"].get("finalizers") or [] if f != L.WORKSPACE_FINALIZER]
        with contextlib.suppress(NotFound, Conflict):  # gone already, or changed: the next event retries
            await self.client.merge_patch(
                WORKSPACES, ws.name, {"metadata": {"finalizers": finalizers}}, ws.namespace,
                resource_version=ws.obj["metadata"].get("resourceVersion"),
            )  # fmt: skip
        return Result()


def _rv(obj: dict[str, Any]) -> int:
    try:
        return int(obj["metadata"].get("resourceVersion") or 0)
    except (TypeError, ValueError):
        return 0


def covers(live: Any, want: Any) -> bool:
    """True when every field of ``want`` has the same value in ``live`` (the server may add defaults).

    Lists must match element by element. When this says no, the object is applied, so an imprecise answer
    only costs a write, never a missed repair.
    """
    if isinstance(want, dict):
        return isinstance(live, dict) and all(k in live and covers(live[k], v) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(live, list) and len(live) == len(want) and all(map(covers, live, want))
    if isinstance(want, bool) or isinstance(live, bool):
        return live is want
    if isinstance(want, int | float) and isinstance(live, int | float):
        return live == want
    return (
        str(live) == str(want)
        if isinstance(want, int | float) or isinstance(live, int | float)
        else live == want
    )
