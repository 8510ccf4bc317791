"""A claim's Node: finding it, making it the claim's (registration), and judging it usable (initialization).

These are Karpenter's rules: the Node is the claim's when its providerID (or, before the claim knows the
providerID, its AKS agent pool label) matches; registration gives it the claim's labels, taints, a finalizer
and an owner reference; it is initialized once Ready, free of startup and ephemeral taints, and every
requested resource (a GPU above all) shows up in its allocatable.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from kaito_ctrl.api.catalog import catalog
from kaito_ctrl.api.reserved import protect_node_labels
from kaito_ctrl.kube.errors import NotFound
from kaito_ctrl.kube.machines import (
    INITIALIZED_LABEL,
    REGISTERED_LABEL,
    TERMINATION_FINALIZER,
    UNREGISTERED_TAINT_KEY,
    instance_type,
)
from kaito_ctrl.kube.protocols import ObjectClient
from kaito_ctrl.kube.quantity import parse_quantity
from kaito_ctrl.kube.resources import NODES

DO_NOT_SYNC_TAINTS_LABEL = "karpenter.sh/do-not-sync-taints"
GPU_RESOURCE = "nvidia.com/gpu"
# Taints a fresh node carries until its kubelet and cloud node manager are done with it.
EPHEMERAL_TAINTS = (
    ("node.kubernetes.io/not-ready", "NoSchedule"),
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoSchedule"),
    ("node.cloudprovider.kubernetes.io/uninitialized", "NoSchedule"),
    (UNREGISTERED_TAINT_KEY, "NoExecute"),
)
_NOT_RESOURCES = frozenset({"storage", "ephemeral-storage"})


def _same_taint(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.get("key") == b.get("key") and a.get("effect") == b.get("effect")


def node_ready(node: dict[str, Any]) -> tuple[bool, str]:
    for c in (node.get("status") or {}).get("conditions") or ():
        if c.get("type") == "Ready":
            return c.get("status") == "True", str(c.get("message") or c.get("reason") or "")
    return False, "the kubelet has not reported the Ready condition"


def registration_patch(claim: dict[str, Any], node: dict[str, Any]) -> dict[str, Any] | None:
    """The metadata and spec a Node needs to belong to ``claim``; None when it already does."""
    meta = node.get("metadata") or {}
    claim_meta = claim["metadata"]
    patch: dict[str, Any] = {}
    labels = dict(meta.get("labels") or {})
    wanted = {
        **{str(k): str(v) for k, v in (claim_meta.get("labels") or {}).items()},
        REGISTERED_LABEL: "true",
    }
    # A reserved-domain label (kubernetes.io/hostname, ...) already on the Node is never overwritten.
    changed_labels = {k: v for k, v in protect_node_labels(labels, wanted).items() if labels.get(k) != v}
    if changed_labels:
        patch.setdefault("metadata", {})["labels"] = changed_labels
    finalizers = list(meta.get("finalizers") or [])
    if TERMINATION_FINALIZER not in finalizers:
        patch.setdefault("metadata", {})["finalizers"] = [*finalizers, TERMINATION_FINALIZER]
    owners = list(meta.get("ownerReferences") or [])
    if not any(o.get("uid") == claim_meta.get("uid") for o in owners):
        owner = {
            "apiVersion": claim["apiVersion"],
            "kind": claim["kind"],
            "name": claim_meta["name"],
            "uid": claim_meta["uid"],
            "blockOwnerDeletion": True,
        }
        patch.setdefault("metadata", {})["ownerReferences"] = [*owners, owner]
    if labels.get(DO_NOT_SYNC_TAINTS_LABEL) != "true":
        spec = claim.get("spec") or {}
        taints = [
            t for t in (node.get("spec") or {}).get("taints") or () if t.get("key") != UNREGISTERED_TAINT_KEY
        ]
        for t in [*(spec.get("taints") or ()), *(spec.get("startupTaints") or ())]:
            if not any(_same_taint(t, have) for have in taints):
                taints.append({k: v for k, v in t.items() if k in ("key", "value", "effect")})
        if taints != list((node.get("spec") or {}).get("taints") or ()):
            patch["spec"] = {"taints": taints}
    return patch or None


@dataclass(frozen=True)
class Readiness:
    ok: bool
    reason: str = ""
    message: str = ""


def requested_resources(claim: dict[str, Any]) -> dict[str, str]:
    """Resources the node must register: the claim's own requests, and the GPUs its VM size has."""
    requests = ((claim.get("spec") or {}).get("resources") or {}).get("requests") or {}
    out = {str(k): str(v) for k, v in requests.items() if k not in _NOT_RESOURCES}
    sku = catalog().sku(instance_type(claim) or "")
    if sku is not None and sku.gpu_count > 0 and GPU_RESOURCE not in out:
        out[GPU_RESOURCE] = str(sku.gpu_count)
    return out


def initialization(claim: dict[str, Any], node: dict[str, Any]) -> Readiness:
    ready, why = node_ready(node)
    if not ready:
        return Readiness(
            False, "NodeNotReady", f"Node {node['metadata']['name']} is not Ready: {why}".rstrip(": ")
        )
    taints = (node.get("spec") or {}).get("taints") or ()
    startup = (claim.get("spec") or {}).get("startupTaints") or ()
    left = [t for t in taints if any(_same_taint(t, s) for s in startup)]
    if left:
        return Readiness(False, "StartupTaintsExist", f"startup taint {left[0].get('key')} still on the node")
    for t in taints:
        if (t.get("key"), t.get("effect")) in EPHEMERAL_TAINTS:
            return Readiness(
                False,
                "KnownEphemeralTaintsExist",
                f"taint {t.get('key')}:{t.get('effect')} still on the node",
            )
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    for name, amount in requested_resources(claim).items():
        try:
            wanted = parse_quantity(amount)
        except ValueError:
            continue
        if wanted <= 0:
            continue
        try:
            have = parse_quantity(allocatable.get(name, "0"))
        except ValueError:
            have = parse_quantity(0)
        if have <= 0:
            hint = " (is the NVIDIA device plugin running?)" if name == GPU_RESOURCE else ""
            return Readiness(
                False, "ResourceNotRegistered", f"resource {name} not registered on the node{hint}"
            )
    return Readiness(True)


def initialized_patch(node: dict[str, Any]) -> dict[str, Any] | None:
    labels = (node.get("metadata") or {}).get("labels") or {}
    if labels.get(INITIALIZED_LABEL) == "true":
        return None
    return {"metadata": {"labels": {INITIALIZED_LABEL: "true"}}}


async def release_node(client: ObjectClient, node: dict[str, Any]) -> bool:
    """Drop our finalizer from a Node (its VM is gone); False when there was none to drop."""
    finalizers = list(node["metadata"].get("finalizers") or [])
    if TERMINATION_FINALIZER not in finalizers:
        return False
    with contextlib.suppress(NotFound):
        await client.merge_patch(
            NODES,
            node["metadata"]["name"],
            {"metadata": {"finalizers": [f for f in finalizers if f != TERMINATION_FINALIZER]}},
            resource_version=node["metadata"].get("resourceVersion"),
        )
    return True
