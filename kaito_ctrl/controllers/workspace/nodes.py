"""Getting GPU nodes for a Workspace, behind one interface with three modes.

- ``byo``: nothing is provisioned; Ready nodes matching the labelSelector are used.
- ``nodeclaim`` / ``machine``: one Karpenter NodeClaim (karpenter.sh/v1) or Machine (karpenter.sh/v1alpha5) per
  missing node, labelled with the workspace; the node provisioner turns them into GPU nodes.

Readiness is read from the informer caches; nothing here waits. The caller requeues shortly when not ready.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from kaito_ctrl.api import labels as L
from kaito_ctrl.api import runtime_args as rt
from kaito_ctrl.api import runtimes
from kaito_ctrl.api.catalog import catalog
from kaito_ctrl.controllers.workspace.spec import BY_WORKSPACE, WorkspaceSpec, ensure_workspace_index
from kaito_ctrl.controllers.workspace.tenantview import tenant_message
from kaito_ctrl.kube import conditions as cond
from kaito_ctrl.kube.informer import SharedInformer
from kaito_ctrl.kube.machines import (
    DEFAULT_NODE_CLASS,
    INSTANCE_TYPE_LABEL,
    NodeObjectAPI,
    NodeObjectKind,
    node_object_manifest,
    state_of,
)


@dataclass
class NodeCondition:
    type: str
    status: bool
    reason: str
    message: str


@dataclass
class NodesResult:
    ready: bool
    nodes: list[str] = field(default_factory=list)
    conditions: list[NodeCondition] = field(default_factory=list)
    # The real cause when not ready (a claim's launch error, no matching nodes), for ResourceReady.
    reason: str = ""
    message: str = ""


def claims_ready(kind: str, ws: WorkspaceSpec) -> tuple[str, str]:
    """Reason and message of NodeClaimReady/MachineReady True, as the era the Workspace runs in writes them:
    the seed's Kaito (v0.3.2, the transformers runtime) `installNodePluginsSuccess`, Kaito 0.12 `NodeClaimsReady`
    (gpu_provisioner.go; node_claim_test.go TestSetNodeClaimsReadyCondition_SetsToTrue)."""
    annotations = (ws.obj.get("metadata") or {}).get("annotations") or {}
    if annotations.get(L.ANNOTATION_RUNTIME) == rt.TRANSFORMERS:
        subject = "nodeClaim" if kind == "NodeClaim" else "machines"
        return "installNodePluginsSuccess", f"{subject} plugins have been installed successfully"
    return f"{kind}sReady", f"Enough {kind}s are ready"


def node_is_ready(node: dict[str, Any]) -> bool:
    if (node.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return cond.is_true(node, "Ready")


def node_gpus(node: dict[str, Any]) -> int:
    status = node.get("status") or {}
    value = (status.get("allocatable") or status.get("capacity") or {}).get("nvidia.com/gpu", "0")
    try:
        return int(str(value))
    except ValueError:
        return 0


def _matches(node: dict[str, Any], labels: dict[str, str]) -> bool:
    node_labels = (node.get("metadata") or {}).get("labels") or {}
    return all(node_labels.get(k) == v for k, v in labels.items())


class NodeProvisioner(Protocol):
    mode: str

    async def ensure(self, ws: WorkspaceSpec, target: int) -> NodesResult: ...

    async def delete_all(self, ws: WorkspaceSpec) -> int:
        """Delete the workspace's node objects; return how many still exist."""
        ...

    def node_requirements(self, ws: WorkspaceSpec) -> list[dict[str, Any]]: ...


class BYONodes:
    mode = "byo"

    def __init__(self, nodes: SharedInformer) -> None:
        self.nodes = nodes

    def node_requirements(self, ws: WorkspaceSpec) -> list[dict[str, Any]]:
        return byo_node_requirements(ws)

    def _candidates(self, ws: WorkspaceSpec) -> list[dict[str, Any]]:
        labels = dict(ws.match_labels)
        if ws.instance_type:
            labels[INSTANCE_TYPE_LABEL] = ws.instance_type
        return [n for n in self.nodes.store.list() if _matches(n, labels)]

    async def ensure(self, ws: WorkspaceSpec, target: int) -> NodesResult:
        candidates = self._candidates(ws)
        ready = [n for n in candidates if node_is_ready(n) and node_gpus(n) > 0]
        names = sorted(n["metadata"]["name"] for n in ready)
        ok = len(ready) >= target
        if ok:
            msg = f"{len(ready)} ready GPU node(s) match the label selector"
            return NodesResult(True, names, [NodeCondition(L.COND_NODES_READY, True, "NodesReady", msg)])
        if not candidates:
            reason, msg = (
                "NodeNotFound",
                f"no node matches the label selector {ws.match_labels}; label GPU nodes to use them",
            )
        else:
            reason = "NodeNotReady"
            msg = f"{len(ready)} of {target} needed matching nodes are Ready with nvidia.com/gpu capacity"
        return NodesResult(False, names, [NodeCondition(L.COND_NODES_READY, False, reason, msg)], reason, msg)

    async def delete_all(self, ws: WorkspaceSpec) -> int:
        return 0


def byo_node_requirements(ws: WorkspaceSpec) -> list[dict[str, Any]]:
    """BYO pods go to nodes carrying the selector's labels (and the instance type, when one is named)."""
    reqs = [{"key": k, "operator": "In", "values": [v]} for k, v in sorted(ws.match_labels.items())]
    if ws.instance_type:
        reqs.append({"key": INSTANCE_TYPE_LABEL, "operator": "In", "values": [ws.instance_type]})
    return reqs


def claim_node_requirements(ws: WorkspaceSpec) -> list[dict[str, Any]]:
    """Provisioned nodes carry the workspace's labels, so its pods land only on the nodes made for it."""
    return [
        {"key": L.LABEL_WORKSPACE, "operator": "In", "values": [ws.name]},
        {"key": L.LABEL_WORKSPACE_NAMESPACE, "operator": "In", "values": [ws.namespace]},
    ]


def claim_manifest(
    kind: NodeObjectKind,
    ws: WorkspaceSpec,
    name: str,
    node_class: tuple[str, str, str] = DEFAULT_NODE_CLASS,
) -> dict[str, Any]:
    """The Machine or NodeClaim requesting one of the workspace's nodes (the controller and
    ``kaito-ctrl render`` both build it here)."""
    annotations = {}
    family = (ws.annotations.get(L.ANNOTATION_NODE_IMAGE_FAMILY) or "").strip().lower()
    if kind == "nodeclaim":
        # Kaito v0.12 (nodeclaim.go) names the node image family on every NodeClaim, ubuntu unless the Workspace
        # asks for a supported one; seed-era Machines carried none.
        annotations[L.ANNOTATION_NODE_IMAGE_FAMILY] = (
            family if family in ("ubuntu", "azurelinux") else "ubuntu"
        )
    elif family:
        annotations[L.ANNOTATION_NODE_IMAGE_FAMILY] = family
    return node_object_manifest(
        kind,
        name,
        instance_type=ws.instance_type,
        labels={**ws.match_labels, **ws.workspace_labels},
        annotations=annotations,
        storage=f"{node_disk_gib(ws)}Gi",
        node_class=node_class,
    )


def node_disk_gib(ws: WorkspaceSpec) -> int:
    preset = ws.preset
    runtime = runtimes.runtime_of(ws.annotations, preset) if preset is not None else ""
    return rt.node_disk_gib(preset, runtime, tuning=ws.tuning is not None)


def node_object_name(ws: WorkspaceSpec, index: int) -> str:
    """``ws`` + 9 hex characters (fits AKS's 12-character pool names), stable per workspace and index."""
    digest = hashlib.sha256(f"{ws.namespace}/{ws.name}/{ws.uid}/{index}".encode()).hexdigest()
    return "ws" + digest[:9]


class KarpenterNodes:
    """NodeClaims or Machines, one per node, labelled with the workspace."""

    def __init__(
        self,
        api: NodeObjectAPI,
        claims: SharedInformer,
        nodes: SharedInformer,
        node_class: tuple[str, str, str] = DEFAULT_NODE_CLASS,
    ) -> None:
        self.api = api
        self.node_class = node_class
        self.claims = claims
        self.nodes = nodes
        self.mode: str = api.kind
        # By-workspace indexes: a reconcile reads its own claims and nodes, not every one in the cluster.
        for informer in (claims, nodes):
            if informer is not None:  # unit tests may leave one out
                ensure_workspace_index(informer.store)

    @property
    def condition_type(self) -> str:
        return L.COND_MACHINE_READY if self.mode == "machine" else L.COND_NODECLAIM_READY

    def node_requirements(self, ws: WorkspaceSpec) -> list[dict[str, Any]]:
        return claim_node_requirements(ws)

    def owned(self, ws: WorkspaceSpec) -> list[dict[str, Any]]:
        key = f"{ws.namespace}/{ws.name}"
        return [c for c in self.claims.store.by_index(BY_WORKSPACE, key) if _matches(c, ws.workspace_labels)]

    async def ensure(self, ws: WorkspaceSpec, target: int) -> NodesResult:
        claims = [c for c in self.owned(ws) if not (c["metadata"].get("deletionTimestamp"))]
        existing = {c["metadata"]["name"] for c in claims}
        index = 0
        while len(existing) < target:
            name = node_object_name(ws, index)
            index += 1
            if name in existing:
                continue
            await self.api.create(claim_manifest(self.api.kind, ws, name, self.node_class))
            existing.add(name)
        states = [state_of(c) for c in claims]
        ready_claims = [s for s in states if s.is_ready]
        result = NodesResult(ready=False, nodes=sorted(s.node_name for s in ready_claims if s.node_name))
        if len(ready_claims) >= target:
            reason, message = claims_ready(self.api.resource.kind, ws)
            result.conditions.append(NodeCondition(self.condition_type, True, reason, message))
        else:
            blocking = next((s for s in states if s.blocking_reason), None)
            reason = blocking.blocking_reason if blocking else f"{self.api.resource.kind}NotReady"
            message = (
                tenant_message(self.api.resource.kind, blocking.name, reason, blocking.blocking_message)
                if blocking
                else f"{len(ready_claims)} of {target} {self.api.resource.kind}s are ready"
            )
            result.conditions.append(NodeCondition(self.condition_type, False, reason, message[:1024]))
            result.reason, result.message = reason, message
            return result
        key = f"{ws.namespace}/{ws.name}"
        nodes = [n for n in self.nodes.store.by_index(BY_WORKSPACE, key) if _matches(n, ws.workspace_labels)]
        # Only a size in the GPU table waits for the device plugin's nvidia.com/gpu (Kaito 0.12
        # CheckIfNodePluginsReady); a template Workspace on a CPU size is ready once its node is.
        needs_gpus = catalog().sku(ws.instance_type or "") is not None
        ready_nodes = [
            n for n in nodes
            if node_is_ready(n) and (node_gpus(n) > 0 or not needs_gpus)
            and (n["metadata"].get("labels") or {}).get(INSTANCE_TYPE_LABEL) == ws.instance_type
        ]  # fmt: skip
        if len(ready_nodes) >= target:
            result.ready = True
            result.nodes = sorted(n["metadata"]["name"] for n in ready_nodes)
            result.conditions.append(
                NodeCondition(L.COND_NODES_READY, True, "NodesReady", "Enough Nodes are ready")
            )
        else:
            msg = f"{len(ready_nodes)} of {target} nodes are Ready with nvidia.com/gpu capacity and instance type {ws.instance_type}"
            result.conditions.append(NodeCondition(L.COND_NODES_READY, False, "NodeNotReady", msg))
            result.reason, result.message = "NodeNotReady", msg
        return result

    async def delete_all(self, ws: WorkspaceSpec) -> int:
        res = self.api.resource
        installed = getattr(self.api.client, "crd_installed", None)
        if installed is not None and not await installed(res.group, res.version, res.plural):
            return 0  # the kind is not served: there is nothing to delete or wait for
        remaining = 0
        for claim in self.owned(ws):
            remaining += 1
            if not claim["metadata"].get("deletionTimestamp"):
                try:
                    await self.api.delete(claim["metadata"]["name"])
                except Exception as e:  # NotFound: already gone
                    if getattr(e, "status", None) != 404:
                        raise
                    remaining -= 1
        return remaining


def now() -> float:
    return time.time()
