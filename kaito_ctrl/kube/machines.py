"""One client over Karpenter's two node-request kinds: Machine (karpenter.sh/v1alpha5) and NodeClaim
(karpenter.sh/v1).

The workspace controller creates and watches them; the node provisioner drives their lifecycle. Both go
through :class:`NodeObjectAPI`, which hides the differences (condition names, template reference) so the
controllers speak of "launched", "registered" and "initialized" whatever the kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from kaito_ctrl.kube import conditions as cond
from kaito_ctrl.kube.protocols import ObjectClient
from kaito_ctrl.kube.resources import MACHINES, NODECLAIMS, Resource

NodeObjectKind = Literal["machine", "nodeclaim"]

TERMINATION_FINALIZER = "karpenter.sh/termination"
NODEPOOL_LABEL = "karpenter.sh/nodepool"
PROVISIONER_NAME_LABEL = "karpenter.sh/provisioner-name"
REGISTERED_LABEL = "karpenter.sh/registered"
INITIALIZED_LABEL = "karpenter.sh/initialized"
DO_NOT_DISRUPT_ANNOTATION = "karpenter.sh/do-not-disrupt"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
UNREGISTERED_TAINT_KEY = "karpenter.sh/unregistered"
# Kaito's AKS node class: the default reference of every NodeClaim (``--node-class-*`` overrides it).
AKS_NODE_CLASS = ("kaito.sh", "KaitoNodeClass")
DEFAULT_NODE_CLASS = (*AKS_NODE_CLASS, "default")


@dataclass(frozen=True)
class KindInfo:
    kind: NodeObjectKind
    resource: Resource
    launched: str
    registered: str
    initialized: str
    ready: str = "Ready"


KINDS: dict[NodeObjectKind, KindInfo] = {
    "machine": KindInfo("machine", MACHINES, "MachineLaunched", "MachineRegistered", "MachineInitialized"),
    "nodeclaim": KindInfo("nodeclaim", NODECLAIMS, "Launched", "Registered", "Initialized"),
}


_Client = ObjectClient


def kind_of(obj: dict[str, Any]) -> NodeObjectKind:
    return "machine" if obj.get("kind") == "Machine" else "nodeclaim"


def instance_type(obj: dict[str, Any]) -> str | None:
    """The single instance type a node object asks for (its `In` requirement), if any."""
    for req in (obj.get("spec") or {}).get("requirements") or []:
        if req.get("key") == INSTANCE_TYPE_LABEL and req.get("operator") == "In" and req.get("values"):
            return str(req["values"][0])
    return None


def storage_request(obj: dict[str, Any]) -> str | None:
    requests = ((obj.get("spec") or {}).get("resources") or {}).get("requests") or {}
    value = requests.get("storage") or requests.get("ephemeral-storage")
    return str(value) if value is not None else None


def is_deleting(obj: dict[str, Any]) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


@dataclass(frozen=True)
class NodeObjectState:
    """The lifecycle of one Machine/NodeClaim, in kind-neutral words."""

    name: str
    launched: str
    registered: str
    initialized: str
    ready: str
    provider_id: str
    node_name: str
    deleting: bool
    # The first non-True lifecycle condition that carries a real cause (not "awaiting reconciliation").
    blocking_reason: str
    blocking_message: str

    @property
    def is_ready(self) -> bool:
        return self.ready == "True" and not self.deleting


_PLACEHOLDER_REASONS = frozenset({"", "AwaitingReconciliation", "ReconcilingDependents"})


def state_of(obj: dict[str, Any]) -> NodeObjectState:
    info = KINDS[kind_of(obj)]
    status = obj.get("status") or {}
    reason = message = ""
    for t in (info.launched, info.registered, info.initialized):
        c = cond.get_condition(obj, t)
        if c and c.get("status") != "True" and c.get("reason") not in _PLACEHOLDER_REASONS:
            reason, message = str(c.get("reason", "")), str(c.get("message", ""))
            break
    ready = cond.condition_status(obj, info.ready)
    if ready == "Unknown" and not cond.get_condition(obj, info.ready) and status.get("nodeName"):
        ready = "True"  # objects from before conditions existed: a linked node means ready (as Kaito does)
    return NodeObjectState(
        name=str(obj["metadata"]["name"]),
        launched=cond.condition_status(obj, info.launched),
        registered=cond.condition_status(obj, info.registered),
        initialized=cond.condition_status(obj, info.initialized),
        ready=ready,
        provider_id=str(status.get("providerID") or ""),
        node_name=str(status.get("nodeName") or ""),
        deleting=is_deleting(obj),
        blocking_reason=reason,
        blocking_message=message,
    )


class NodeObjectAPI:
    """Machine or NodeClaim access through a KubeClient, chosen by ``kind``."""

    def __init__(self, client: _Client, kind: NodeObjectKind) -> None:
        self.client = client
        self.info = KINDS[kind]

    @property
    def kind(self) -> NodeObjectKind:
        return self.info.kind

    @property
    def resource(self) -> Resource:
        return self.info.resource

    def manifest(
        self,
        name: str,
        *,
        instance_type: str,
        labels: dict[str, str],
        annotations: dict[str, str] | None = None,
        taints: list[dict[str, str]] | None = None,
        storage: str | None = None,
        node_class: tuple[str, str, str] = DEFAULT_NODE_CLASS,
        extra_requirements: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        return node_object_manifest(
            self.kind,
            name,
            instance_type=instance_type,
            labels=labels,
            annotations=annotations,
            taints=taints,
            storage=storage,
            node_class=node_class,
            extra_requirements=extra_requirements,
        )

    async def get(self, name: str) -> dict[str, Any]:
        return await self.client.get(self.resource, name)

    async def list(self, label_selector: str | None = None) -> list[dict[str, Any]]:
        return await self.client.list_all(self.resource, label_selector=label_selector)

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        return await self.client.create(self.resource, obj)

    async def delete(self, name: str) -> dict[str, Any] | None:
        """Delete; returns the object when a finalizer holds it (now with its deletionTimestamp)."""
        return await self.client.delete(self.resource, name, propagation_policy=None)

    async def patch_metadata(self, obj: dict[str, Any], metadata: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch labels, annotations or finalizers, locked on the object's resourceVersion."""
        return await self.client.merge_patch(
            self.resource,
            obj["metadata"]["name"],
            {"metadata": metadata},
            resource_version=obj["metadata"].get("resourceVersion"),
        )

    async def add_finalizer(
        self, obj: dict[str, Any], finalizer: str = TERMINATION_FINALIZER
    ) -> dict[str, Any]:
        finalizers = list(obj["metadata"].get("finalizers") or [])
        if finalizer in finalizers:
            return obj
        return await self.patch_metadata(obj, {"finalizers": [*finalizers, finalizer]})

    async def remove_finalizer(
        self, obj: dict[str, Any], finalizer: str = TERMINATION_FINALIZER
    ) -> dict[str, Any]:
        finalizers = list(obj["metadata"].get("finalizers") or [])
        if finalizer not in finalizers:
            return obj
        return await self.patch_metadata(obj, {"finalizers": [f for f in finalizers if f != finalizer]})

    async def patch_status(
        self, obj: dict[str, Any], status: dict[str, Any], *, resource_version: str | None = None
    ) -> dict[str, Any]:
        """Write status fields (conditions replace the whole list, as merge patch does for lists); with
        ``resource_version``, only over that version of the object (409 otherwise)."""
        return await self.client.merge_patch(
            self.resource,
            obj["metadata"]["name"],
            {"status": status},
            subresource="status",
            resource_version=resource_version,
        )


def node_object_manifest(
    kind: NodeObjectKind,
    name: str,
    *,
    instance_type: str,
    labels: dict[str, str],
    annotations: dict[str, str] | None = None,
    taints: list[dict[str, str]] | None = None,
    storage: str | None = None,
    node_class: tuple[str, str, str] = DEFAULT_NODE_CLASS,
    extra_requirements: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A Machine or NodeClaim requesting one node of ``instance_type``."""
    requirements: list[dict[str, Any]] = [
        {"key": INSTANCE_TYPE_LABEL, "operator": "In", "values": [instance_type]},
        {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
    ]
    spec: dict[str, Any] = {
        "taints": taints if taints is not None else [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}],
        "requirements": requirements,
    }
    labels = dict(labels)
    if kind == "machine":
        labels.setdefault(PROVISIONER_NAME_LABEL, "default")
        requirements += [
            {"key": PROVISIONER_NAME_LABEL, "operator": "In", "values": ["default"]},
            {"key": "kaito.sh/machine-type", "operator": "In", "values": ["gpu"]},
            {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
        ]
        spec["machineTemplateRef"] = {"name": name}
    else:
        labels.setdefault(NODEPOOL_LABEL, "kaito")
        requirements.insert(0, {"key": NODEPOOL_LABEL, "operator": "In", "values": ["kaito"]})
        class_group, class_kind, class_name = node_class
        if (class_group, class_kind) == AKS_NODE_CLASS:
            # Only Azure's providers define this label; another provider (kwok, AWS) would find no
            # instance type offering it and leave the claim unlaunched.
            requirements.append(
                {"key": "karpenter.azure.com/sku-name", "operator": "In", "values": [instance_type]}
            )
        spec["nodeClassRef"] = {"group": class_group, "kind": class_kind, "name": class_name}
    requirements += extra_requirements or []
    spec["resources"] = {"requests": {"storage": storage or "0"}}
    return {
        "apiVersion": KINDS[kind].resource.api_version,
        "kind": KINDS[kind].resource.kind,
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {DO_NOT_DISRUPT_ANNOTATION: "true", **(annotations or {})},
        },
        "spec": spec,
    }
