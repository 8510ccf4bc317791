"""The preset catalog and the GPU SKU table, loaded once from the YAML files next to this module."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import yaml

GIB = 1024**3
# difflib is quadratic in its input: no suggestions for strings far longer than any real name.
MAX_SUGGEST_INPUT = 128


@dataclass(frozen=True)
class Preset:
    name: str
    model_id: str
    weights_gib: float
    context: int
    layers: int
    kv_heads: int = 0
    head_dim: int = 0
    kv_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    runtime: str = "vllm"
    tuning: bool = False
    distributed: bool = False
    auth: bool = False
    deprecated: bool = False
    image_tag: str | None = None
    family: str = ""
    aliases: tuple[str, ...] = ()

    @property
    def seed_era(self) -> bool:
        """Seed-era presets ship their weights in a per-model image; modern ones use the base image."""
        return self.image_tag is not None

    @property
    def bytes_per_token(self) -> int:
        """KV-cache bytes per token: 2 bytes x layers x (K and V heads x head dim, or the MLA latent size)."""
        if self.kv_lora_rank:
            return 2 * self.layers * (self.kv_lora_rank + self.qk_rope_head_dim)
        return 2 * self.layers * 2 * self.kv_heads * self.head_dim

    def image(self, registry: str, base: tuple[str, str]) -> str:
        if self.seed_era:
            return f"{registry}/kaito-{self.name}:{self.image_tag}"
        return f"{registry}/{base[0]}:{base[1]}"


@dataclass(frozen=True)
class GpuSku:
    name: str
    cloud: str
    gpu_count: int
    gpu_model: str
    gpu_memory_gib: float  # whole node
    nvme: bool = False
    legacy: bool = False

    @property
    def per_gpu_memory_gib(self) -> float:
        return self.gpu_memory_gib / self.gpu_count


@dataclass(frozen=True)
class Catalog:
    presets: dict[str, Preset]
    aliases: dict[str, str]
    skus: dict[str, GpuSku] = field(default_factory=dict)
    base_image: tuple[str, str] = ("kaito-base", "0.5.0")

    def preset(self, name: str) -> Preset | None:
        key = name.strip().lower()
        key = self.aliases.get(key, key)
        found = self.presets.get(key)
        if found is None and "/" in name:
            found = next((p for p in self.presets.values() if p.model_id.lower() == key), None)
        return found

    def close_presets(self, name: str, n: int = 3) -> list[str]:
        if len(name) > MAX_SUGGEST_INPUT:
            return []
        return difflib.get_close_matches(
            name.lower(), [p for p in self.presets if not self.presets[p].deprecated], n
        )

    def sku(self, name: str) -> GpuSku | None:
        return self.skus.get(name.lower())

    def close_skus(self, name: str, n: int = 3) -> list[str]:
        if len(name) > MAX_SUGGEST_INPUT:
            return []
        names = {sku.name.lower(): sku.name for sku in self.skus.values()}
        return [names[m] for m in difflib.get_close_matches(name.lower(), list(names), n)]


def _load_yaml(name: str) -> Any:
    return yaml.safe_load(resources.files("kaito_ctrl.api").joinpath(name).read_text())


@cache
def catalog() -> Catalog:
    data = _load_yaml("presets.yaml")
    presets: dict[str, Preset] = {}
    aliases: dict[str, str] = {}
    for entry in data["presets"]:
        entry = dict(entry)
        entry["aliases"] = tuple(entry.get("aliases") or ())
        preset = Preset(**entry)
        presets[preset.name] = preset
        for alias in preset.aliases:
            aliases[alias.lower()] = preset.name
    skus: dict[str, GpuSku] = {}
    for cloud, table in _load_yaml("skus.yaml").items():
        for sku_name, spec in table.items():
            skus[sku_name.lower()] = GpuSku(name=sku_name, cloud=cloud, **spec)
    base = data.get("base_image") or {}
    return Catalog(presets, aliases, skus, (base.get("name", "kaito-base"), base.get("tag", "0.5.0")))
