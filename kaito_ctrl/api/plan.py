"""An offline plan for a Workspace: is it valid, does the SKU fit, how many nodes it will get."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kaito_ctrl.api.catalog import catalog
from kaito_ctrl.api.estimator import EstimateError, estimate_nodes
from kaito_ctrl.api.validation import FieldError, check_workspace


@dataclass
class Plan:
    name: str
    errors: list[FieldError] = field(default_factory=list)
    preset: str | None = None
    instance_type: str | None = None
    nodes: int | None = None
    gpus_per_node: int | None = None
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.errors


def plan_workspace(obj: dict[str, Any]) -> Plan:
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    errors, warnings = check_workspace(obj)
    out = Plan(name=str((meta or {}).get("name", "")), errors=errors, warnings=warnings)
    resource: dict[str, Any] = obj["resource"] if isinstance(obj.get("resource"), dict) else {}
    section = obj.get("inference") or obj.get("tuning") or {}
    preset_name = ((section.get("preset") or {}) if isinstance(section, dict) else {}).get("name")
    cat = catalog()
    preset = cat.preset(preset_name) if isinstance(preset_name, str) else None
    instance_type = (resource or {}).get("instanceType")
    sku = cat.sku(instance_type) if isinstance(instance_type, str) and instance_type else None
    out.preset = preset.name if preset else preset_name
    out.instance_type = instance_type if isinstance(instance_type, str) else None
    if not out.instance_type:
        out.notes.append("no instanceType: the workspace uses your own (BYO) nodes matching labelSelector")
    if preset and sku and out.valid:
        if obj.get("tuning"):
            out.nodes, out.gpus_per_node = 1, sku.gpu_count
            out.notes.append("tuning runs as one Job on one node")
        else:
            count = resource.get("count", 1) if isinstance(resource.get("count", 1), int) else 1
            try:
                est = estimate_nodes(preset, sku, minimum=max(1, count))
                out.nodes, out.gpus_per_node = est.nodes, est.gpus_per_node
                out.notes.append(est.reason)
            except EstimateError as e:
                out.errors.append(FieldError("resource.instanceType", str(e)))
    return out
