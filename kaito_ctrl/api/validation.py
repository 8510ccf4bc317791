"""Workspace validation for the admission webhook and `kaito-ctrl plan`.

Every error names the field it is about and says what to fix. Works on plain dicts of either API version
(v1alpha1 is a subset of v1beta1). ``validate_workspace(obj)`` checks a create; with ``old`` an update.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from kaito_ctrl.api import labels as L
from kaito_ctrl.api.catalog import Catalog, catalog
from kaito_ctrl.api.estimator import EstimateError, estimate_nodes, fits_memory
from kaito_ctrl.api.netcheck import url_problem
from kaito_ctrl.api.reserved import selector_key_errors

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# A permissive OCI reference: [registry[:port]/]path[:tag][@digest], lowercase path components.
IMAGE_REF = re.compile(
    r"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
    r"(?::[\w][\w.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)
RUNTIMES = ("vllm", "transformers")
# A plain decimal (no whitespace, exponent or underscores): the value ends up in the server's command line.
STRENGTH = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,6})?|\.[0-9]{1,6}")


@dataclass(frozen=True)
class FieldError:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def short(value: Any, limit: int = 64) -> str:
    """A value quoted for an error message: at most a short prefix, so a huge input is never echoed back."""
    text = str(value)
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text)} characters)"


def _as_dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


class _Validator:
    def __init__(self, obj: dict[str, Any], old: dict[str, Any] | None, cat: Catalog) -> None:
        self.obj = obj
        self.old = old
        self.cat = cat
        self.errors: list[FieldError] = []
        self.v1beta1 = str(obj.get("apiVersion", "")).endswith("v1beta1")

    def err(self, path: str, message: str) -> None:
        self.errors.append(FieldError(path, message))

    # ------------------------------------------------------------------ top level
    def run(self) -> list[FieldError]:
        meta = _as_dict(self.obj.get("metadata"))
        name = meta.get("name")
        if isinstance(name, str) and name and (len(name) > 63 or not DNS_LABEL.fullmatch(name)):
            self.err(
                "metadata.name",
                f"{short(name)} must be a DNS label: lowercase letters, digits and '-', at most 63",
            )
        self.annotations(_as_dict(meta.get("annotations")))
        has_inf, has_tun = self.obj.get("inference") is not None, self.obj.get("tuning") is not None
        if has_inf == has_tun:
            which = "both are" if has_inf else "neither is"
            self.err("inference", f"set exactly one of inference or tuning ({which} set)")
        resource = self.obj.get("resource")
        if not isinstance(resource, dict):
            self.err("resource", "resource is required: set resource.instanceType and resource.labelSelector")
            resource = {}
        self.resource(resource)
        if has_inf and not has_tun:
            self.inference(_as_dict(self.obj.get("inference")), resource)
        if has_tun and not has_inf:
            self.tuning(_as_dict(self.obj.get("tuning")), resource)
        if self.old is not None:
            self.immutable(self.old)
        return self.errors

    def annotations(self, ann: dict[str, Any]) -> None:
        family = ann.get(L.ANNOTATION_NODE_IMAGE_FAMILY)
        if family is not None and family not in L.NODE_IMAGE_FAMILIES:
            self.err(
                f"metadata.annotations[{L.ANNOTATION_NODE_IMAGE_FAMILY}]",
                f"{short(family)} is not a node image family; use one of {', '.join(L.NODE_IMAGE_FAMILIES)}",
            )
        runtime = ann.get(L.ANNOTATION_RUNTIME)
        if runtime is not None and runtime not in RUNTIMES:
            self.err(
                f"metadata.annotations[{L.ANNOTATION_RUNTIME}]", f"{short(runtime)}: use vllm or transformers"
            )

    # ------------------------------------------------------------------ resource
    def resource(self, resource: dict[str, Any]) -> None:
        count = resource.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            self.err("resource.count", f"{short(count)} must be a whole number of nodes, at least 1")
        selector = resource.get("labelSelector")
        if not isinstance(selector, dict):
            self.err("resource.labelSelector", "labelSelector is required, e.g. matchLabels: {apps: phi-3}")
        else:
            self.reserved_selector_keys(selector)
            match = selector.get("matchLabels") or {}
            if not isinstance(match, dict) or not all(isinstance(v, str) for v in match.values()):
                self.err(
                    "resource.labelSelector.matchLabels", "matchLabels must map label keys to string values"
                )
            elif match and set(match) <= L.RESERVED_SELECTOR_KEYS:
                self.err(
                    "resource.labelSelector.matchLabels",
                    "only kaito-reserved keys are given; add a label of your own, e.g. apps: my-model",
                )
            elif not match and not selector.get("matchExpressions"):
                self.err("resource.labelSelector", "the selector is empty; add matchLabels, e.g. apps: phi-3")
        preferred = resource.get("preferredNodes")
        if preferred is not None and (
            not isinstance(preferred, list) or not all(isinstance(p, str) and p for p in preferred)
        ):
            self.err("resource.preferredNodes", "preferredNodes must be a list of node names")
        instance_type = resource.get("instanceType")
        if instance_type is not None and not isinstance(instance_type, str):
            self.err("resource.instanceType", "instanceType must be a string such as Standard_NC12s_v3")
        elif instance_type and self.cat.sku(instance_type) is None:
            close = self.cat.close_skus(instance_type)
            hint = (
                f"; did you mean {', '.join(close)}?"
                if close
                else "; `kaito-ctrl presets` lists the GPU sizes"
            )
            self.err(
                "resource.instanceType", f"{short(instance_type)} is not a known GPU instance type{hint}"
            )
        partition = resource.get("partition")
        if partition is not None and instance_type:
            self.err(
                "resource.partition", "GPU partitioning is only supported with BYO nodes (no instanceType)"
            )
        elif partition is not None:
            self.partition(_as_dict(partition))

    def reserved_selector_keys(self, selector: dict[str, Any]) -> None:
        for path, message in selector_key_errors(selector):
            self.err(path, message)

    def partition(self, partition: dict[str, Any]) -> None:
        mode = partition.get("mode")
        if mode not in ("mig", "accelerator"):
            self.err("resource.partition.mode", f"{short(mode)}: use mig or accelerator")
        elif mode == "mig" and not partition.get("profile"):
            self.err("resource.partition.profile", "mig mode needs a profile such as 1g.10gb")
        elif mode == "accelerator" and not partition.get("count"):
            self.err("resource.partition.count", "accelerator mode needs a count of slices")

    # ------------------------------------------------------------------ inference
    def preset(self, path: str, preset: Any, *, for_tuning: bool = False) -> Any:
        if not isinstance(preset, dict):
            self.err(path, "preset must be an object with a name")
            return None
        name = preset.get("name")
        if not isinstance(name, str) or not name.strip():
            self.err(f"{path}.name", "a preset name is required, e.g. phi-3-mini-4k-instruct")
            return None
        access = preset.get("accessMode")
        if access is not None and access not in ("public", "private"):
            self.err(f"{path}.accessMode", f"{short(access)}: use public or private")
        found = self.cat.preset(name)
        if found is None:
            close = self.cat.close_presets(name)
            hint = (
                f"; did you mean {', '.join(close)}?" if close else "; run `kaito-ctrl presets` for the list"
            )
            self.err(f"{path}.name", f"{short(name)} is not a known preset{hint}")
            return None
        if found.deprecated:
            self.err(
                f"{path}.name",
                f"model {found.name} is deprecated and no longer supported; pick a newer preset",
            )
            return None
        if for_tuning and not found.tuning:
            self.err(
                f"{path}.name",
                f"{found.name} does not support tuning; tunable presets: phi-3*, phi-4*, mistral-7b*, qwen2.5-coder*",
            )
        options = _as_dict(preset.get("presetOptions"))
        secret = options.get("modelAccessSecret")
        if self.v1beta1 and not for_tuning:
            if found.auth and not secret:
                self.err(
                    f"{path}.presetOptions.modelAccessSecret",
                    f"{found.model_id} needs a Hugging Face token: name a Secret with key HF_TOKEN",
                )
            if secret and not found.auth and not found.seed_era:
                self.err(f"{path}.presetOptions.modelAccessSecret", f"{found.name} needs no token; remove it")
        if secret is not None and not isinstance(secret, str):
            self.err(f"{path}.presetOptions.modelAccessSecret", "must be a Secret name")
        return found

    def inference(self, inf: dict[str, Any], resource: dict[str, Any]) -> None:
        has_preset, has_template = inf.get("preset") is not None, inf.get("template") is not None
        if has_preset and has_template:
            self.err("inference.template", "set either inference.preset or inference.template, not both")
        elif not has_preset and not has_template:
            self.err(
                "inference.preset", "set inference.preset (a model from the catalog) or inference.template"
            )
        if has_template and not isinstance(inf.get("template"), dict):
            self.err("inference.template", "template must be a pod template object")
        config = inf.get("config")
        if config is not None and (not isinstance(config, str) or not DNS_LABEL.fullmatch(config or "x_")):
            self.err("inference.config", "config must name a ConfigMap in the workspace's namespace")
        preset = (
            self.preset("inference.preset", inf.get("preset")) if has_preset and not has_template else None
        )
        self.adapters(inf.get("adapters"))
        instance_type = resource.get("instanceType")
        sku = self.cat.sku(instance_type) if isinstance(instance_type, str) and instance_type else None
        if (
            preset is not None
            and sku is not None
            and L.ANNOTATION_BYPASS_RESOURCE_CHECKS
            not in _as_dict(_as_dict(self.obj.get("metadata")).get("annotations"))
        ):
            count = resource.get("count", 1) if isinstance(resource.get("count", 1), int) else 1
            if not fits_memory(preset, sku, max(count, 1)) and not preset.distributed:
                self.err(
                    "resource.instanceType",
                    f"insufficient GPU memory: {instance_type} has {sku.gpu_memory_gib:g} GiB but {preset.name} "
                    f"needs at least {preset.weights_gib:g} GiB; choose a larger GPU size",
                )
            else:
                try:
                    estimate_nodes(preset, sku, minimum=1)
                except EstimateError as e:
                    self.err("resource.instanceType", str(e))

    def adapters(self, adapters: Any) -> None:
        if adapters is None:
            return
        if not isinstance(adapters, list):
            self.err("inference.adapters", "adapters must be a list")
            return
        if len(adapters) > L.MAX_ADAPTERS:
            self.err(
                "inference.adapters", f"{len(adapters)} adapters given; at most {L.MAX_ADAPTERS} are allowed"
            )
        seen: set[str] = set()
        for i, adapter in enumerate(adapters):
            path = f"inference.adapters[{i}]"
            adapter = _as_dict(adapter)
            source = adapter.get("source")
            if not isinstance(source, dict):
                self.err(f"{path}.source", "each adapter needs a source with a name and an image")
            else:
                name = source.get("name")
                if not isinstance(name, str) or not DNS_LABEL.fullmatch(name or "_"):
                    self.err(
                        f"{path}.source.name", "an adapter needs a name (a DNS label, e.g. phi-3-adapter)"
                    )
                elif name in seen:
                    self.err(
                        f"{path}.source.name",
                        f"adapter name {short(name)} is used twice; names must be unique",
                    )
                else:
                    seen.add(name)
                if source.get("urls"):
                    self.err(f"{path}.source.urls", "adapters come from an image or a volume, not URLs")
                if not source.get("image") and source.get("volumeSource") is None:
                    self.err(f"{path}.source.image", "set the adapter image (or a volumeSource)")
                elif source.get("image") and not IMAGE_REF.fullmatch(str(source["image"])):
                    self.err(
                        f"{path}.source.image", f"{short(source['image'])} is not a valid image reference"
                    )
            strength = adapter.get("strength")
            if strength is not None and not STRENGTH.fullmatch(str(strength)):
                self.err(f"{path}.strength", f"{short(strength)} is not a number; use a value from 0 to 1")
                continue
            if strength is not None:
                try:
                    value = float(str(strength))
                except ValueError:
                    self.err(
                        f"{path}.strength", f"{short(strength)} is not a number; use a value from 0 to 1"
                    )
                    continue
                if not 0.0 <= value <= 1.0:
                    self.err(
                        f"{path}.strength", f"{short(strength)} is out of range; use a value from 0 to 1"
                    )

    # ------------------------------------------------------------------ tuning
    def tuning(self, tun: dict[str, Any], resource: dict[str, Any]) -> None:
        method = tun.get("method")
        if not isinstance(method, str) or method.lower() not in L.TUNING_METHODS:
            self.err("tuning.method", f"{short(method)} is not a tuning method; use lora or qlora")
        if tun.get("preset") is None:
            self.err("tuning.preset", "a preset to tune is required, e.g. phi-3-mini-128k-instruct")
        else:
            self.preset("tuning.preset", tun.get("preset"), for_tuning=True)
        config = tun.get("config")
        if config is not None and (not isinstance(config, str) or not DNS_LABEL.fullmatch(config or "_")):
            self.err("tuning.config", "config must name a ConfigMap in the workspace's namespace")
        count = resource.get("count", 1)
        if isinstance(count, int) and count > 1:
            self.err("resource.count", "tuning runs on one node; set count to 1")
        if resource.get("partition") is not None:
            self.err("resource.partition", "GPU partitions are not supported for tuning")
        self.tuning_input(tun.get("input"))
        self.tuning_output(tun.get("output"))

    def tuning_input(self, source: Any) -> None:
        if not isinstance(source, dict):
            self.err("tuning.input", "input is required: urls, an image or a volumeSource")
            return
        given = [k for k in ("urls", "image", "volumeSource") if source.get(k)]
        if len(given) != 1:
            self.err(
                "tuning.input",
                f"set exactly one of urls, image or volumeSource (got {', '.join(given) or 'none'})",
            )
        urls = source.get("urls")
        if urls is not None:
            if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
                self.err("tuning.input.urls", "urls must be a list of http(s) URLs")
            else:
                for i, url in enumerate(urls):
                    problem = url_problem(url)
                    if problem:
                        self.err(
                            f"tuning.input.urls[{i}]", f"{short(url)} {problem}; use a public http(s) URL"
                        )
        image = source.get("image")
        if image and not IMAGE_REF.fullmatch(str(image)):
            self.err("tuning.input.image", f"{short(image)} is not a valid image reference")

    def tuning_output(self, dest: Any) -> None:
        if not isinstance(dest, dict):
            self.err("tuning.output", "output is required: an image (with imagePushSecret) or a volumeSource")
            return
        given = [k for k in ("image", "volumeSource") if dest.get(k)]
        if len(given) != 1:
            self.err(
                "tuning.output",
                f"set exactly one of image or volumeSource (got {', '.join(given) or 'none'})",
            )
        image = dest.get("image")
        if image:
            if not IMAGE_REF.fullmatch(str(image)):
                self.err("tuning.output.image", f"{short(image)} is not a valid image reference")
            if not dest.get("imagePushSecret"):
                self.err("tuning.output.imagePushSecret", "pushing the output image needs imagePushSecret")

    # ------------------------------------------------------------------ updates
    def immutable(self, old: dict[str, Any]) -> None:
        new = self.obj
        if (old.get("inference") is None) != (new.get("inference") is None):
            self.err("inference", "a workspace cannot switch between inference and tuning; create a new one")
            return
        ro, rn = _as_dict(old.get("resource")), _as_dict(new.get("resource"))
        # Clearing instanceType (moving to BYO nodes) is allowed; changing it is not.
        if ro.get("instanceType") != rn.get("instanceType") and rn.get("instanceType"):
            self.err(
                "resource.instanceType", "instanceType is immutable; create a new workspace to change it"
            )
        if _as_dict(ro.get("labelSelector")) != _as_dict(rn.get("labelSelector")):
            self.err("resource.labelSelector", "labelSelector is immutable")
        if ro.get("count", 1) != rn.get("count", 1):
            self.err("resource.count", "count is immutable")
        if ro.get("partition") != rn.get("partition"):
            self.err("resource.partition", "partition is immutable")
        io, in_ = _as_dict(old.get("inference")), _as_dict(new.get("inference"))
        if _as_dict(io.get("preset")).get("name") != _as_dict(in_.get("preset")).get("name"):
            self.err(
                "inference.preset.name", "the preset is immutable; create a new workspace for another model"
            )
        if (io.get("template") is None) != (in_.get("template") is None):
            self.err("inference.template", "template cannot be added or removed (its content may change)")
        to, tn = _as_dict(old.get("tuning")), _as_dict(new.get("tuning"))
        if to or tn:
            if _as_dict(to.get("preset")).get("name") != _as_dict(tn.get("preset")).get("name"):
                self.err("tuning.preset.name", "the tuning preset is immutable")
            if to.get("method") != tn.get("method"):
                self.err("tuning.method", "the tuning method is immutable")
            if _as_dict(to.get("input")).get("name") != _as_dict(tn.get("input")).get("name"):
                self.err("tuning.input.name", "the tuning input name is immutable")


def validate_workspace(obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[FieldError]:
    """All problems with a Workspace (create when ``old`` is None, else update); empty when valid."""
    if not isinstance(obj, dict):
        return [FieldError("", "a Workspace must be an object")]
    try:
        return _Validator(obj, old if isinstance(old, dict) else None, catalog()).run()
    except (TypeError, AttributeError, ValueError) as e:  # malformed shapes: report, never crash admission
        return [FieldError("", f"malformed workspace: {e}")]
