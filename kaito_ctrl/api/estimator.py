"""How many GPU nodes a preset needs on a SKU (Kaito's formula), and whether it fits at all."""

from __future__ import annotations

import math
from dataclasses import dataclass

from kaito_ctrl.api.catalog import GpuSku, Preset

GPU_UTILIZATION = 0.84
FIXED_OVERHEAD_GIB = 2.3
ACTIVATION_MARGIN = 1.05
WEIGHT_MARGIN = 1.02
DEFAULT_MAX_MODEL_LEN = 2048
GIB = 1024**3


class EstimateError(ValueError):
    pass


@dataclass(frozen=True)
class Estimate:
    nodes: int
    gpus_needed: int
    gpus_per_node: int
    reason: str


def estimate_nodes(
    preset: Preset,
    sku: GpuSku,
    *,
    max_model_len: int | None = None,
    minimum: int = 1,
) -> Estimate:
    """Nodes needed to serve ``preset`` on ``sku``: model weights plus KV cache for ``max_model_len`` tokens.

    Raises EstimateError when a single GPU cannot even hold the fixed overhead, or when the model needs
    several nodes but cannot run distributed.
    """
    ctx = max_model_len or DEFAULT_MAX_MODEL_LEN
    model_gib = preset.weights_gib * WEIGHT_MARGIN
    avail = sku.per_gpu_memory_gib * GPU_UTILIZATION
    fixed = FIXED_OVERHEAD_GIB + ctx * preset.bytes_per_token / sku.gpu_count / GIB
    if avail <= fixed:
        raise EstimateError(
            f"a {sku.gpu_model} GPU of {sku.name} ({sku.per_gpu_memory_gib:g} GiB) cannot hold the runtime "
            f"overhead and a {ctx}-token KV cache for {preset.name}; choose a SKU with more GPU memory"
        )
    avail_per_gpu = (avail - fixed) / ACTIVATION_MARGIN
    gpus = int(model_gib / avail_per_gpu) + 1
    nodes = max(minimum, math.ceil(gpus / sku.gpu_count))
    if nodes > 1 and not preset.distributed:
        raise EstimateError(
            f"{preset.name} needs {gpus} GPUs ({model_gib:.1f} GiB of weights) but {sku.name} has "
            f"{sku.gpu_count} x {sku.per_gpu_memory_gib:g} GiB and the model cannot span several nodes; "
            f"choose a SKU with at least {math.ceil(model_gib / GPU_UTILIZATION):d} GiB of GPU memory"
        )
    reason = (
        f"{preset.name} ({preset.weights_gib:g} GiB) needs {gpus} GPU(s) of {sku.per_gpu_memory_gib:g} GiB: "
        f"{nodes} x {sku.name}"
    )
    return Estimate(nodes=nodes, gpus_needed=gpus, gpus_per_node=sku.gpu_count, reason=reason)


def fits_memory(preset: Preset, sku: GpuSku, count: int = 1) -> bool:
    """Kaito's admission check: the nodes' total GPU memory holds the weights."""
    return count * sku.gpu_memory_gib >= preset.weights_gib
