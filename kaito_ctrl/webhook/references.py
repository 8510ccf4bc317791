"""Admission checks that read the cluster: the ConfigMaps a Workspace names must exist when it is created.

Kaito's webhook checks ``inference.config`` and ``tuning.config`` live (api/v1beta1 inference_config_validation.go
and tuning_config_validation.go); without the check a typo in the name surfaces only as a pod stuck in
ContainerCreating. Only names the user gave are checked: when ``tuning.config`` is empty kaito-ctrl renders its
own parameters ConfigMap, so there is nothing to look up. An apiserver that cannot answer does not block
admission (the webhook would then refuse every Workspace during an outage); the reconciler reports a missing
ConfigMap later through the pod's condition.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
import yaml

from kaito_ctrl.api.catalog import catalog
from kaito_ctrl.api.validation import FieldError, workspace_runtime
from kaito_ctrl.kube.errors import ApiError, NotFound

log = structlog.get_logger(__name__)

# (namespace, name) -> the ConfigMap's data, raising NotFound when it does not exist.
GetConfigMap = Callable[[str, str], Awaitable[dict[str, Any]]]

INFERENCE_CONFIG_KEY = "inference_config.yaml"
TUNING_CONFIG_KEY = "training_config.yaml"


async def reference_errors(obj: dict[str, Any], namespace: str, get: GetConfigMap) -> list[FieldError]:
    """Problems with the ConfigMaps ``obj`` names in ``namespace`` (empty when they exist as needed)."""
    checks: list[tuple[str, str, str | None]] = []
    inference, tuning = obj.get("inference"), obj.get("tuning")
    if isinstance(inference, dict) and isinstance(inference.get("config"), str) and inference["config"]:
        # Kaito reads inference_config.yaml only under vLLM; kaito-ctrl mounts the ConfigMap under both.
        key = INFERENCE_CONFIG_KEY if workspace_runtime(obj) == "vllm" else None
        checks.append(("inference.config", inference["config"], key))
    if isinstance(tuning, dict) and isinstance(tuning.get("config"), str) and tuning["config"]:
        checks.append(("tuning.config", tuning["config"], TUNING_CONFIG_KEY))
    errors = []
    for path, name, key in checks:
        try:
            configmap = await get(namespace, name)
        except NotFound:
            errors.append(
                FieldError(path, f"ConfigMap {name!r} not found in namespace {namespace!r}; create it first")
            )
            continue
        except ApiError as e:  # cannot tell: admit, the workload's condition will say it if it is missing
            log.warning("configmap reference not checked", field=path, error=str(e)[:200])
            continue
        data = configmap.get("data") or {}
        if key is not None and key not in data:
            errors.append(FieldError(path, f"ConfigMap {name!r} has no key {key!r}"))
        elif key == INFERENCE_CONFIG_KEY:
            problem = max_model_len_problem(str(data[key]), obj)
            if problem:
                errors.append(FieldError(path, f"ConfigMap {name!r}: {problem}"))
    return errors


def max_model_len_problem(config_yaml: str, obj: dict[str, Any]) -> str:
    """Kaito: vLLM's ``max-model-len`` must be an integer no larger than the model's context window."""
    try:
        config = yaml.safe_load(config_yaml)
    except yaml.YAMLError as e:
        return f"{INFERENCE_CONFIG_KEY} is not YAML: {str(e)[:200]}"
    vllm = config.get("vllm") if isinstance(config, dict) else None
    raw = vllm.get("max-model-len") if isinstance(vllm, dict) else None
    if raw is None or not str(raw).strip():
        return ""
    try:
        value = int(str(raw).strip())
    except ValueError:
        return f"vllm max-model-len {raw!r} must be an integer"
    preset_name = ((obj.get("inference") or {}).get("preset") or {}).get("name")
    preset = catalog().preset(preset_name) if isinstance(preset_name, str) else None
    if preset is not None and preset.context > 0 and value > preset.context:
        return f"vllm max-model-len {value} exceeds {preset.name}'s context window of {preset.context} tokens"
    return ""
