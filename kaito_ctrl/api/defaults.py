"""Defaults the mutating webhook fills in, so stored objects say what kaito-ctrl will do."""

from __future__ import annotations

import copy
from typing import Any


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
    if isinstance(adapters, list) and _runtime(out) == "transformers":
        for adapter in adapters:
            if isinstance(adapter, dict) and adapter.get("strength") is None:
                adapter["strength"] = "1.0"
    return out


def _runtime(obj: dict[str, Any]) -> str:
    """The runtime annotation, else the API version's default (v1alpha1: transformers, v1beta1: vllm)."""
    meta = obj.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    value = annotations.get("kaito.sh/runtime") if isinstance(annotations, dict) else None
    if value in ("vllm", "transformers"):
        return str(value)
    return "vllm" if str(obj.get("apiVersion", "")).endswith("v1beta1") else "transformers"
