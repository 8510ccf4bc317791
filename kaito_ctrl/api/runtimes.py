"""Which inference runtime a Workspace runs, which image that means for its preset, and which HTTP API the
image's server answers.

Each preset image bakes its runtime's server, so the API follows the image, not the runtime's name: the seed-era
per-model images (``kaito-<preset>:<tag>``) run Kaito's transformers server of that era, which answers
``POST /chat`` with ``{"prompt": ...}`` -> ``{"Result": ...}``; the current base image (``kaito-base``) runs vLLM
or the transformers OpenAI-compatible server (Kaito commit cd5a67c39, February 2026), both answering
``/v1/models`` and ``/v1/chat/completions``.

The rule the defaulting webhook applies when ``kaito.sh/runtime`` is absent: a Workspace created through
``kaito.sh/v1alpha1`` (the seed's API) gets ``transformers``, so the seed's ``POST /chat`` works; one created
through ``v1beta1`` gets the preset's default (``vllm`` for every current preset), as Kaito v0.12 does. The value
is written on the object so the choice is visible and does not change when the object is later read or updated
through the other version.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from kaito_ctrl.api import labels as L
from kaito_ctrl.api.catalog import Catalog, Preset, catalog
from kaito_ctrl.api.runtime_args import supports

VLLM, TRANSFORMERS = "vllm", "transformers"
RUNTIMES = (VLLM, TRANSFORMERS)
# The two HTTP APIs a preset image can serve.
API_CHAT = "chat"  # seed-era transformers server: POST /chat, GET /health, GET /
API_OPENAI = "openai"  # OpenAI-compatible: GET /v1/models, POST /v1/chat/completions, GET /health


@dataclass(frozen=True)
class RuntimeImage:
    runtime: str
    repository: str  # without the registry
    tag: str
    api: str

    def reference(self, registry: str) -> str:
        return f"{registry}/{self.repository}:{self.tag}"


def runtime_image(preset: Preset, runtime: str, cat: Catalog | None = None) -> RuntimeImage:
    """The image ``preset`` runs under ``runtime`` and the API it serves."""
    base_name, base_tag = (cat or catalog()).base_image
    if runtime == TRANSFORMERS and preset.image_tag is not None:
        return RuntimeImage(TRANSFORMERS, f"kaito-{preset.name}", preset.image_tag, API_CHAT)
    return RuntimeImage(runtime if runtime in RUNTIMES else VLLM, base_name, base_tag, API_OPENAI)


def runtime_images(preset: Preset, cat: Catalog | None = None) -> dict[str, RuntimeImage]:
    """Per runtime, the image and API of ``preset`` (what ``kaito-ctrl presets`` and the docs show)."""
    return {r: runtime_image(preset, r, cat) for r in RUNTIMES}


def runtime_of(annotations: dict[str, Any], preset: Preset) -> str:
    """The runtime a stored Workspace runs: its annotation, else the preset's default."""
    value = annotations.get(L.ANNOTATION_RUNTIME)
    return value if value in RUNTIMES else preset.runtime


def request_version(request: dict[str, Any], obj: dict[str, Any]) -> str:
    """The API version the user wrote through: ``requestKind`` (the original request, before any
    equivalent-version conversion), then ``kind``, then the object's apiVersion."""
    for key in ("requestKind", "kind"):
        kind = request.get(key)
        if isinstance(kind, dict) and isinstance(kind.get("version"), str) and kind["version"]:
            return str(kind["version"])
    return str(obj.get("apiVersion", "")).rpartition("/")[2]


def default_runtime(version: str, preset: Preset | None) -> str:
    # Through v1alpha1, transformers where Kaito has transformers parameters for the preset (else the preset's
    # own default, which validation accepts).
    if version == "v1alpha1" and (preset is None or supports(preset, TRANSFORMERS)):
        return TRANSFORMERS
    return preset.runtime if preset is not None else VLLM


def default_runtime_annotation(obj: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """``obj`` with ``kaito.sh/runtime`` written when absent: on inference preset Workspaces, and on tuning
    Workspaces created through v1alpha1. On an update the stored choice is kept even when the request omits it:
    switching runtimes switches images and APIs.

    Tuning runs transformers (accelerate and peft) in every era, so the annotation changes no tuning object; it
    records that the Workspace came through the seed's API, so its status reads as the seed's Kaito wrote it
    (NodeClaimReady's installNodePluginsSuccess). A v1beta1 tuning Workspace gets none, as Kaito 0.12."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return obj
    annotations = meta.get("annotations")
    if isinstance(annotations, dict) and L.ANNOTATION_RUNTIME in annotations:
        return obj
    old = request.get("oldObject") if request.get("operation") == "UPDATE" else None
    old_meta = old.get("metadata") if isinstance(old, dict) else None
    old_ann = old_meta.get("annotations") if isinstance(old_meta, dict) else None
    kept = old_ann.get(L.ANNOTATION_RUNTIME) if isinstance(old_ann, dict) else None
    version = request_version(request, obj)
    inference, tuning = obj.get("inference"), obj.get("tuning")
    if isinstance(inference, dict) and isinstance(inference.get("preset"), dict):
        name = inference["preset"].get("name")
        preset = catalog().preset(name) if isinstance(name, str) else None
        value = kept if isinstance(kept, str) else default_runtime(version, preset)
    elif isinstance(tuning, dict) and isinstance(tuning.get("preset"), dict):
        if isinstance(kept, str):
            value = kept
        elif version == "v1alpha1":
            value = TRANSFORMERS
        else:
            return obj
    else:
        return obj
    out = copy.deepcopy(obj)
    out_meta = out["metadata"]
    out_meta["annotations"] = {**(out_meta.get("annotations") or {}), L.ANNOTATION_RUNTIME: value}
    return out
