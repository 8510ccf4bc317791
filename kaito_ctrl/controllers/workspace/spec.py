"""Reading a Workspace dict: the few facts the reconciler steps need, in one place."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from kaito_ctrl.api import k8s_syntax as K
from kaito_ctrl.api import labels as L
from kaito_ctrl.api.catalog import GpuSku, Preset, catalog
from kaito_ctrl.api.estimator import EstimateError, estimate_nodes


@dataclass(frozen=True)
class WorkspaceSpec:
    obj: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.obj["metadata"].get("namespace") or "default")

    @property
    def uid(self) -> str:
        return str(self.obj["metadata"].get("uid") or "")

    @property
    def generation(self) -> int:
        return int(self.obj["metadata"].get("generation") or 0)

    @property
    def resource(self) -> dict[str, Any]:
        return dict(self.obj.get("resource") or {})

    @property
    def inference(self) -> dict[str, Any] | None:
        return self.obj.get("inference")

    @property
    def tuning(self) -> dict[str, Any] | None:
        return self.obj.get("tuning")

    @property
    def instance_type(self) -> str:
        return str(self.resource.get("instanceType") or "")

    @property
    def sku(self) -> GpuSku | None:
        return catalog().sku(self.instance_type) if self.instance_type else None

    @property
    def preset(self) -> Preset | None:
        section = self.inference or self.tuning or {}
        name = (section.get("preset") or {}).get("name")
        return catalog().preset(name) if name else None

    @property
    def match_labels(self) -> dict[str, str]:
        """The user's selector as labels (matchLabels and single-value ``In`` expressions, the only forms
        admission lets through) without kaito-reserved keys (those are kaito-ctrl's to set)."""
        selector = self.resource.get("labelSelector") or {}
        labels = K.selector_as_map(selector)
        if labels is None:  # admitted before admission checked expressions: keep to the plain labels
            labels = {str(k): str(v) for k, v in (selector.get("matchLabels") or {}).items()}
        return {k: v for k, v in labels.items() if k not in L.RESERVED_SELECTOR_KEYS}

    @property
    def annotations(self) -> dict[str, str]:
        return dict(self.obj["metadata"].get("annotations") or {})

    @property
    def spec_data(self) -> dict[str, Any]:
        """What a revision records (Kaito's marshalSelectedFields): resource, inference, tuning."""
        return {"resource": self.obj.get("resource"), "inference": self.inference, "tuning": self.tuning}

    @property
    def spec_hash(self) -> str:
        """sha256 of what the workload depends on (resource, inference, tuning), as Kaito's
        ``workspace.kaito.io/hash``: a change makes a new revision."""
        return hashlib.sha256(orjson.dumps(self.spec_data, option=orjson.OPT_SORT_KEYS)).hexdigest()

    @property
    def revision(self) -> str:
        """The Workspace's revision number (``workspace.kaito.io/revision``, set by the reconciler's revision
        step from its ControllerRevisions); stamped on the workload and its pods, so a new revision rolls them.
        "1" before the first reconcile (what ``kaito-ctrl render`` shows)."""
        return self.annotations.get(L.ANNOTATION_REVISION) or "1"

    @property
    def legacy_revision(self) -> str:
        """What kaito-ctrl 0.1 stamped as the revision (16 hex digits of the hash): a Job stamped so is current
        when it matches, so an upgrade does not rerun a finished tuning."""
        return self.spec_hash[:16]

    @property
    def owner_reference(self) -> dict[str, Any]:
        return {
            "apiVersion": str(self.obj.get("apiVersion") or "kaito.sh/v1beta1"),
            "kind": "Workspace",
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    @property
    def workspace_labels(self) -> dict[str, str]:
        return {L.LABEL_WORKSPACE: self.name, L.LABEL_WORKSPACE_NAMESPACE: self.namespace}


def planned_node_count(ws: WorkspaceSpec) -> tuple[int, str]:
    """(nodes, estimate error): the estimator's count for a preset on a known SKU, else the requested count
    (BYO, tuning and custom templates use ``resource.count`` as written)."""
    count = int(ws.resource.get("count") or 1)
    preset, sku = ws.preset, ws.sku
    if ws.tuning is not None or preset is None or sku is None:
        return count, ""
    try:
        return estimate_nodes(preset, sku, minimum=count).nodes, ""
    except EstimateError as e:
        return count, str(e)


BY_WORKSPACE = "workspace"


def index_by_workspace(obj: dict[str, Any]) -> list[str]:
    """Index key ``<namespace>/<name>`` of the Workspace an object belongs to, from Kaito's labels (node
    objects and Nodes carry the workspace namespace as a label; Pods live in the workspace's namespace)."""
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    name = labels.get(L.LABEL_WORKSPACE)
    if not name:
        return []
    namespace = labels.get(L.LABEL_WORKSPACE_NAMESPACE) or meta.get("namespace") or ""
    return [f"{namespace}/{name}"]


def ensure_workspace_index(store: Any) -> None:
    if not store.has_index(BY_WORKSPACE):
        store.add_indexer(BY_WORKSPACE, index_by_workspace)
