"""The VM sizes the fake ARM server offers: GPU facts from Kaito's SKU table, compute facts kept here.

``kaito_ctrl.api.catalog`` knows GPU count, model and memory but not what ARM's ResourceSkus and usages
need (vCPUs, memory, quota family), so the fake keeps that small table itself. Values follow the Azure size
pages closely enough for quota arithmetic; they are a fake's data, not a reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from kaito_ctrl.api.catalog import catalog

# size -> (vCPUs, memory GiB, quota family)
_COMPUTE: dict[str, tuple[int, int, str]] = {
    "Standard_NC6s_v3": (6, 112, "standardNCSv3Family"),
    "Standard_NC12s_v3": (12, 224, "standardNCSv3Family"),
    "Standard_NC24s_v3": (24, 448, "standardNCSv3Family"),
    "Standard_NC24rs_v3": (24, 448, "standardNCSv3Family"),
    "Standard_NC4as_T4_v3": (4, 28, "standardNCASv3_T4Family"),
    "Standard_NC8as_T4_v3": (8, 56, "standardNCASv3_T4Family"),
    "Standard_NC16as_T4_v3": (16, 110, "standardNCASv3_T4Family"),
    "Standard_NC64as_T4_v3": (64, 440, "standardNCASv3_T4Family"),
    "Standard_NV36ads_A10_v5": (36, 440, "standardNVADSA10v5Family"),
    "Standard_NV72ads_A10_v5": (72, 880, "standardNVADSA10v5Family"),
    "Standard_NC24ads_A100_v4": (24, 220, "standardNCADSA100v4Family"),
    "Standard_NC48ads_A100_v4": (48, 440, "standardNCADSA100v4Family"),
    "Standard_NC96ads_A100_v4": (96, 880, "standardNCADSA100v4Family"),
    "Standard_ND96asr_A100_v4": (96, 900, "standardNDASv4_A100Family"),
    "Standard_ND96amsr_A100_v4": (96, 1900, "standardNDAMSv4_A100Family"),
    "Standard_NC40ads_H100_v5": (40, 320, "standardNCadsH100v5Family"),
    "Standard_NCC40ads_H100_v5": (40, 320, "standardNCCadsH100v5Family"),
    "Standard_NC80adis_H100_v5": (80, 640, "standardNCadsH100v5Family"),
    "Standard_ND96isr_H100_v5": (96, 1900, "standardNDSH100v5Family"),
    "Standard_ND96isr_H200_v5": (96, 1850, "standardNDSH200v5Family"),
    "Standard_NG32ads_V620_v1": (32, 64, "standardNGADSV620v1Family"),
    "Standard_NG32adms_V620_v1": (32, 176, "standardNGADSV620v1Family"),
    # CPU sizes, for a system pool.
    "Standard_D2s_v3": (2, 8, "standardDSv3Family"),
    "Standard_D4s_v3": (4, 16, "standardDSv3Family"),
    "Standard_D8s_v3": (8, 32, "standardDSv3Family"),
}


@dataclass(frozen=True)
class VmSize:
    name: str
    vcpus: int
    memory_gib: int
    family: str
    gpus: int = 0
    gpu_model: str = ""
    gpu_memory_gib: float = 0.0

    @property
    def gpu_resource(self) -> str:
        return "amd.com/gpu" if self.gpu_model.upper().startswith("AMD") else "nvidia.com/gpu"

    @property
    def gpu_product(self) -> str:
        if self.gpu_model.startswith(("Tesla", "NVIDIA", "AMD")):
            return self.gpu_model
        return f"NVIDIA-{self.gpu_model}"

    @property
    def gpu_memory_mib_each(self) -> int:
        return int(self.gpu_memory_gib * 1024 / self.gpus) if self.gpus else 0

    @property
    def tier_size(self) -> str:
        """``Standard_NC12s_v3`` -> ``NC12s_v3``, as ResourceSkus reports ``size``."""
        return self.name.split("_", 1)[1] if "_" in self.name else self.name


@cache
def vm_sizes() -> dict[str, VmSize]:
    """All offered sizes, keyed by lower-cased name (ARM compares sizes case-insensitively)."""
    gpu_table = catalog()
    out: dict[str, VmSize] = {}
    for name, (vcpus, memory, family) in _COMPUTE.items():
        gpu = gpu_table.sku(name)
        out[name.lower()] = VmSize(
            name,
            vcpus,
            memory,
            family,
            gpus=gpu.gpu_count if gpu else 0,
            gpu_model=gpu.gpu_model if gpu else "",
            gpu_memory_gib=gpu.gpu_memory_gib if gpu else 0.0,
        )
    return out


def vm_size(name: str) -> VmSize | None:
    return vm_sizes().get(name.lower())
