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

from kaito_ctrl.api.validation import FieldError
from kaito_ctrl.kube.errors import ApiError, NotFound

log = structlog.get_logger(__name__)

# (namespace, name) -> the ConfigMap's data, raising NotFound when it does not exist.
GetConfigMap = Callable[[str, str], Awaitable[dict[str, Any]]]

INFERENCE_CONFIG_KEY = "inference_config.yaml"
TUNING_CONFIG_KEY = "training_config.yaml"


def _runtime(obj: dict[str, Any]) -> str:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    value = annotations.get("kaito.sh/runtime") if isinstance(annotations, dict) else None
    if value in ("vllm", "transformers"):
        return str(value)
    return "vllm" if str(obj.get("apiVersion", "")).endswith("v1beta1") else "transformers"


async def reference_errors(obj: dict[str, Any], namespace: str, get: GetConfigMap) -> list[FieldError]:
    """Problems with the ConfigMaps ``obj`` names in ``namespace`` (empty when they exist as needed)."""
    checks: list[tuple[str, str, str | None]] = []
    inference, tuning = obj.get("inference"), obj.get("tuning")
    if isinstance(inference, dict) and isinstance(inference.get("config"), str) and inference["config"]:
        # Kaito reads inference_config.yaml only under vLLM; kaito-ctrl mounts the ConfigMap under both.
        key = INFERENCE_CONFIG_KEY if _runtime(obj) == "vllm" else None
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
        if key is not None and key not in (configmap.get("data") or {}):
            errors.append(FieldError(path, f"ConfigMap {name!r} has no key {key!r}"))
    return errors
