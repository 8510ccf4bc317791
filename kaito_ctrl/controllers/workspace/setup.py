"""Wiring the Workspace controller into a manager: informers, event mapping, the reconciler."""

from __future__ import annotations

from typing import Any

from kaito_ctrl.api import labels as L
from kaito_ctrl.api.netcheck import egress_deny
from kaito_ctrl.controllers.workspace.cacheview import interned, pod_view
from kaito_ctrl.controllers.workspace.metrics import WORKSPACE_COUNT
from kaito_ctrl.controllers.workspace.nodes import (
    BYONodes,
    KarpenterNodes,
    NodeProvisioner,
    node_gpus,
    node_is_ready,
)
from kaito_ctrl.controllers.workspace.reconciler import WorkspaceReconciler
from kaito_ctrl.kube.machines import KINDS, NodeObjectAPI, NodeObjectKind
from kaito_ctrl.kube.resources import DEPLOYMENTS, JOBS, NODES, PODS, SERVICES, STATEFULSETS, WORKSPACES
from kaito_ctrl.runtime.controller import Controller
from kaito_ctrl.runtime.handlers import (
    Predicate,
    Request,
    enqueue_for_object,
    enqueue_for_owner,
    enqueue_mapped,
    unwrap,
)
from kaito_ctrl.runtime.manager import Manager
from kaito_ctrl.settings import Settings, node_class_ref

NAME = "workspace"


def _by_workspace_labels(obj: dict[str, Any]) -> list[Request]:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    name, ns = labels.get(L.LABEL_WORKSPACE), labels.get(L.LABEL_WORKSPACE_NAMESPACE)
    return [Request(ns, name)] if name and ns else []


def _pod_to_workspace(obj: dict[str, Any]) -> list[Request]:
    meta = obj.get("metadata") or {}
    name = (meta.get("labels") or {}).get(L.LABEL_WORKSPACE)
    return [Request(meta.get("namespace", ""), name)] if name else []


def _node_as_read(node: dict[str, Any]) -> tuple[Any, ...]:
    """What the Workspace controller reads of a Node (nodes.py): labels, deletion, readiness, GPUs."""
    meta = node.get("metadata") or {}
    return (meta.get("labels"), meta.get("deletionTimestamp"), node_is_ready(node), node_gpus(node))


# A Node's status moves every few minutes (the kubelet's heartbeat, images, conditions' timestamps) without a
# change any Workspace can see. In BYO mode each node event enqueues every Workspace, so on a cluster with 5,000
# Workspaces and 100 nodes the heartbeats alone would reconcile all of them every few seconds: only updates that
# change what the controller reads pass.
NODE_CHANGED_FOR_WORKSPACES = Predicate(update=lambda old, new: _node_as_read(old) != _node_as_read(new))


def setup(manager: Manager, client: Any, settings: Settings) -> Controller:
    try:
        egress_deny(settings.cluster_cidrs)  # fail at start, naming the flag, not at the first tuning Job
    except ValueError as e:
        raise SystemExit(f"--cluster-cidrs: {e}") from None
    inf = manager.informers
    ns = settings.watch_namespace
    # What each cache keeps (cacheview.py): a view of each Pod, every other object whole with shared strings.
    workspaces = inf.informer(WORKSPACES, ns, transform=interned)
    deployments = inf.informer(DEPLOYMENTS, ns, label_selector=L.LABEL_WORKSPACE, transform=interned)
    statefulsets = inf.informer(STATEFULSETS, ns, label_selector=L.LABEL_WORKSPACE, transform=interned)
    services = inf.informer(SERVICES, ns, label_selector=L.LABEL_WORKSPACE, transform=interned)
    pods = inf.informer(PODS, ns, label_selector=L.LABEL_WORKSPACE, transform=pod_view)
    jobs = inf.informer(JOBS, ns, label_selector=L.LABEL_WORKSPACE, transform=interned)
    nodes = inf.informer(NODES)
    provisioner: NodeProvisioner
    if settings.node_provisioner == "byo":
        provisioner = BYONodes(nodes)
    else:
        kind: NodeObjectKind = "machine" if settings.node_provisioner == "machine" else "nodeclaim"
        claims = inf.informer(KINDS[kind].resource, label_selector=L.LABEL_WORKSPACE)
        provisioner = KarpenterNodes(NodeObjectAPI(client, kind), claims, nodes, node_class_ref(settings))
    reconciler = WorkspaceReconciler(
        client,
        provisioner,
        workspaces=workspaces,
        deployments=deployments,
        statefulsets=statefulsets,
        pods=pods,
        jobs=jobs,
        services=services,
        image_registry=settings.image_registry,
        deletion_timeout=settings.deletion_timeout,
        pod_security=settings.pod_security_baseline,
        cluster_cidrs=settings.cluster_cidrs,
    )
    controller = Controller(NAME, reconciler, workers=settings.workspace_workers)
    controller.watch(workspaces, enqueue_for_object())
    for owned in (deployments, statefulsets, services, jobs):
        controller.watch(owned, enqueue_for_owner("kaito.sh", "Workspace"))
    controller.watch(pods, enqueue_mapped(_pod_to_workspace))
    if isinstance(provisioner, KarpenterNodes):
        controller.watch(provisioner.claims, enqueue_mapped(_by_workspace_labels))
        controller.watch(nodes, enqueue_mapped(_by_workspace_labels), [NODE_CHANGED_FOR_WORKSPACES])
    else:
        # BYO: any node change may change which workspaces have enough nodes.
        def all_workspaces(_: dict[str, Any]) -> list[Request]:
            return [Request.for_object(w) for w in workspaces.store.list()]

        controller.watch(nodes, enqueue_mapped(all_workspaces), [NODE_CHANGED_FOR_WORKSPACES])
    manager.add_controller(controller)
    mode = settings.node_provisioner

    # Workspaces by state, counted incrementally from cache events (a recount per event would be quadratic).
    states: dict[str, str] = {}
    counts = dict.fromkeys(("Pending", "Ready", "NotReady", "Running", "Succeeded", "Failed"), 0)

    def move(key: str, old: str | None, new: str | None) -> None:
        for phase, step in ((old, -1), (new, 1)):
            if phase is not None:
                counts[phase] = counts.get(phase, 0) + step
                WORKSPACE_COUNT.labels(phase, mode).set(counts[phase])
        if new is None:
            states.pop(key, None)
        else:
            states[key] = new

    def upsert(obj: dict[str, Any]) -> None:
        state = str((obj.get("status") or {}).get("state") or "Pending")
        key = Request.for_object(obj).key
        if states.get(key) != state:
            move(key, states.get(key), state)

    def remove(obj: Any) -> None:
        key = Request.for_object(unwrap(obj)).key
        if key in states:
            move(key, states[key], None)

    workspaces.add_event_handler(on_add=upsert, on_update=lambda _o, n: upsert(n), on_delete=remove)
    for phase, value in counts.items():
        WORKSPACE_COUNT.labels(phase, mode).set(value)
    return controller
