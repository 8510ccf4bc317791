"""Defaults the mutating webhook fills in, so stored objects say what kaito-ctrl will do."""

from __future__ import annotations

import copy
from typing import Any

from kaito_ctrl.api.validation import workspace_runtime


def default_workspace(obj: dict[str, Any]) -> dict[str, Any]:
    """A defaulted deep copy: resource.count 1, preset accessMode public, adapter strength "1.0" (only under
    the transformers runtime: vLLM refuses a strength, see validation.adapter_strength_runtime)."""
    out = copy.deepcopy(obj)
    resource = out.get("resource")
    if isinstance(resource, dict) and "count" not in resource:
        resource["count"] = 1
    for section in ("inference", "tuning"):
        spec = out.get(section)
        if not isinstance(spec, dict):
            continue
        preset = spec.get("preset")
        if isinstance(preset, dict) and "accessMode" not in preset:
            preset["accessMode"] = "public"
        if section == "tuning" and isinstance(spec.get("method"), str):
            spec["method"] = spec["method"].lower()
    inference = out.get("inference")
    adapters = inference.get("adapters") if isinstance(inference, dict) else None
    if isinstance(adapters, list) and workspace_runtime(out) == "transformers":
        for adapter in adapters:
            if isinstance(adapter, dict) and adapter.get("strength") is None:
                adapter["strength"] = "1.0"
    return out
