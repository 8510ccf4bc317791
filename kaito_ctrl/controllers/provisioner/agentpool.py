"""What a Machine or NodeClaim means as an AKS agent pool, and back.

The invariants gpu-provisioner established and Kaito relies on: the pool is named after the claim (so a pool
can never be created twice for one claim), it has exactly one VM, its size is the claim's instance-type
requirement, and its Node is found by the ``agentpool`` labels AKS puts on every node of a pool.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from kaito_ctrl.api import labels as L
from kaito_ctrl.controllers.provisioner.cloud.base import AgentPool, AgentPoolSpec
from kaito_ctrl.kube.machines import (
    INSTANCE_TYPE_LABEL,
    NODEPOOL_LABEL,
    PROVISIONER_NAME_LABEL,
    instance_type,
    kind_of,
    storage_request,
)
from kaito_ctrl.kube.quantity import parse_quantity

POOL_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")
AGENTPOOL_LABEL = "kubernetes.azure.com/agentpool"
LEGACY_AGENTPOOL_LABEL = "agentpool"
MACHINE_TYPE_LABEL = "kaito.sh/machine-type"
# Label-safe UTC time ("2006-01-02T15-04-05Z", as gpu-provisioner writes it): when the pool was asked for,
# so garbage collection can leave young pools alone while their claim is still being written.
CREATION_TIMESTAMP_LABEL = "kaito.sh/creation-timestamp"
CREATION_TIMESTAMP_FORMAT = "%Y-%m-%dT%H-%M-%SZ"
NODE_CLASS = ("kaito.sh", "KaitoNodeClass")
OS_SKUS = {"ubuntu": "Ubuntu", "azurelinux": "AzureLinux"}


class InvalidClaim(ValueError):
    """The claim cannot become an agent pool as written; retrying will not help, changing it will."""


def is_managed(obj: dict[str, Any]) -> bool:
    """Kaito's claims: workspace or RAG engine labels, or a reference to the Kaito node class."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    if L.LABEL_WORKSPACE in labels or L.LABEL_RAGENGINE in labels:
        return True
    ref = (obj.get("spec") or {}).get("nodeClassRef") or {}
    return (ref.get("group"), ref.get("kind")) == NODE_CLASS


def is_kaito_pool(pool: AgentPool) -> bool:
    """Pools this controller created: Kaito's owner labels plus a Karpenter one (never a user's own pool)."""
    labels = pool.labels
    owned = L.LABEL_WORKSPACE in labels or L.LABEL_RAGENGINE in labels
    return owned and (NODEPOOL_LABEL in labels or PROVISIONER_NAME_LABEL in labels)


def pool_created_at(pool: AgentPool) -> float | None:
    raw = pool.labels.get(CREATION_TIMESTAMP_LABEL)
    if not raw:
        return None
    try:
        return dt.datetime.strptime(raw, CREATION_TIMESTAMP_FORMAT).replace(tzinfo=dt.UTC).timestamp()
    except ValueError:
        return None


def format_taint(taint: dict[str, Any]) -> str:
    """ARM's taint form, ``key=value:Effect``. AKS documents node-pool taints only as key-value pairs with an
    effect, so a Kubernetes taint without a value cannot be sent as it is: the claim is refused, naming the taint,
    rather than guessing a form AKS may reject or read differently."""
    key, value, effect = taint.get("key", ""), taint.get("value"), taint.get("effect", "")
    if not value:
        raise InvalidClaim(
            f"taint {key}:{effect} has no value; AKS node pool taints are key=value:Effect, so give it a value "
            f"(e.g. {key}=true:{effect})"
        )
    return f"{key}={value}:{effect}"


def os_disk_gib(obj: dict[str, Any]) -> int:
    raw = storage_request(obj)
    name = obj["metadata"]["name"]
    if raw is None:
        raise InvalidClaim(f"{name} has no storage request; set spec.resources.requests.storage (e.g. 100Gi)")
    try:
        gib = int(parse_quantity(raw) / 2**30)
    except ValueError as e:
        raise InvalidClaim(f"{name}: storage request {raw!r} is not a quantity") from e
    if gib <= 0:
        raise InvalidClaim(
            f"{name}: storage request {raw!r} is less than 1Gi; the OS disk needs at least 30Gi (e.g. 100Gi)"
        )
    return gib


def os_sku(obj: dict[str, Any]) -> str:
    family = ((obj.get("metadata") or {}).get("annotations") or {}).get(L.ANNOTATION_NODE_IMAGE_FAMILY, "")
    return OS_SKUS.get(str(family).strip().lower(), "Ubuntu")


def creation_label(obj: dict[str, Any], now: float) -> str:
    created = (obj.get("metadata") or {}).get("creationTimestamp")
    if created:
        try:
            when = dt.datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
            return when.strftime(CREATION_TIMESTAMP_FORMAT)
        except ValueError:
            pass
    return dt.datetime.fromtimestamp(now, dt.UTC).strftime(CREATION_TIMESTAMP_FORMAT)


def pool_spec(obj: dict[str, Any], now: float) -> AgentPoolSpec:
    """The agent pool for a claim, or :class:`InvalidClaim` saying what to change."""
    name = str(obj["metadata"]["name"])
    if not POOL_NAME.fullmatch(name):
        raise InvalidClaim(
            f"name {name!r} cannot name an AKS agent pool: use 1-12 lowercase letters and digits, "
            "starting with a letter"
        )
    vm_size = instance_type(obj)
    if not vm_size:
        raise InvalidClaim(
            f"{name} has no '{INSTANCE_TYPE_LABEL} In [<vm size>]' requirement; add one naming the VM size"
        )
    labels: dict[str, str] = (
        {PROVISIONER_NAME_LABEL: "default"} if kind_of(obj) == "machine" else {NODEPOOL_LABEL: "kaito"}
    )
    labels.update({str(k): str(v) for k, v in ((obj["metadata"].get("labels")) or {}).items()})
    labels[MACHINE_TYPE_LABEL] = "gpu" if "standard_n" in vm_size.lower() else "cpu"
    labels[CREATION_TIMESTAMP_LABEL] = creation_label(obj, now)
    taints = tuple(format_taint(t) for t in (obj.get("spec") or {}).get("taints") or ())
    return AgentPoolSpec(
        name=name,
        vm_size=vm_size,
        node_count=1,
        labels=labels,
        taints=taints,
        os_disk_size_gb=os_disk_gib(obj),
        os_sku=os_sku(obj),
    )


@dataclass(frozen=True)
class PoolNodeIndex:
    """Index functions for the Node cache: by agent pool, and by providerID."""

    @staticmethod
    def by_pool(node: dict[str, Any]) -> list[str]:
        labels = (node.get("metadata") or {}).get("labels") or {}
        pool = labels.get(AGENTPOOL_LABEL) or labels.get(LEGACY_AGENTPOOL_LABEL)
        return [str(pool)] if pool else []

    @staticmethod
    def by_provider_id(node: dict[str, Any]) -> list[str]:
        pid = (node.get("spec") or {}).get("providerID")
        return [str(pid)] if pid else []
