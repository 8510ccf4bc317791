"""Workspace validation for the admission webhook and `kaito-ctrl plan`.

Every error names the field it is about and says what to fix. Works on plain dicts of either API version
(v1alpha1 is a subset of v1beta1). ``validate_workspace(obj)`` checks a create; with ``old`` an update.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from kaito_ctrl.api import imageref
from kaito_ctrl.api import k8s_syntax as K
from kaito_ctrl.api import labels as L
from kaito_ctrl.api.catalog import Catalog, catalog
from kaito_ctrl.api.estimator import EstimateError, estimate_nodes, fits_memory
from kaito_ctrl.api.netcheck import url_problem
from kaito_ctrl.api.reserved import selector_key_errors
from kaito_ctrl.api.runtime_args import TRANSFORMERS, runtime_refusals, supports

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
RUNTIMES = ("vllm", "transformers")
# Node provisioner modes that create nodes from resource.instanceType (Kaito's node auto-provisioning).
AUTO_PROVISIONING = ("nodeclaim", "machine")
# Kaito's N_SERIES_PREFIX and D_SERIES_PREFIX (api/v1beta1 workspace_validation.go): the Azure sizes it admits
# outside its SKU table.
AZURE_SIZE_PREFIX = "Standard_"
AZURE_GPU_SERIES = ("Standard_N", "Standard_D")
# Kaito's own annotations with a closed set of values (api/v1beta1 validateAnnotations).
PERFORMANCE_MODES = ("balanced", "interactivity", "throughput")
ANNOTATION_PERFORMANCE_MODE = "kaito.sh/performance-mode"
ANNOTATION_USE_LOCAL_WEIGHTS = "kaito.sh/use-local-weights"
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
    def __init__(
        self,
        obj: dict[str, Any],
        old: dict[str, Any] | None,
        cat: Catalog,
        node_provisioner: str | None = None,
    ) -> None:
        self.obj = obj
        self.old = old
        self.cat = cat
        # None when not known (`kaito-ctrl plan` offline): the mode-dependent rules are skipped.
        self.node_provisioner = node_provisioner
        self.errors: list[FieldError] = []
        self.warnings: list[str] = []
        self.v1beta1 = str(obj.get("apiVersion", "")).endswith("v1beta1")

    def err(self, path: str, message: str) -> None:
        self.errors.append(FieldError(path, message))

    def image(self, path: str, ref: str, *, pushed: bool = False, by_puller: bool = False) -> None:
        """Refuse what a Pod would refuse; warn about what only the kubelet would (InvalidImageName)."""
        refused = imageref.refusal(ref)
        if refused:
            self.err(path, f"{ref!r} is not a valid image reference: {refused}")
        elif (warning := imageref.pull_warning(path, ref, pushed=pushed, by_puller=by_puller)) is not None:
            self.warnings.append(warning)

    # ------------------------------------------------------------------ top level
    def run(self) -> list[FieldError]:
        meta = _as_dict(self.obj.get("metadata"))
        name = meta.get("name")
        if isinstance(name, str) and name and K.dns1123_label(name):
            self.err(
                "metadata.name",
                f"{short(name)} must be a DNS label: lowercase letters, digits and '-', at most 63",
            )
        self.annotations(_as_dict(meta.get("annotations")))
        self.kaito_annotations(_as_dict(meta.get("annotations")))
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
        # Kaito trims and lower-cases the family before checking it (NormalizeSupportedNodeImageFamily).
        if family is not None and str(family).strip().lower() not in L.NODE_IMAGE_FAMILIES:
            self.err(
                f"metadata.annotations[{L.ANNOTATION_NODE_IMAGE_FAMILY}]",
                f"{short(family)} is not a node image family; use one of {', '.join(L.NODE_IMAGE_FAMILIES)}",
            )
        runtime = ann.get(L.ANNOTATION_RUNTIME)
        if runtime is not None and runtime not in RUNTIMES:
            self.err(
                f"metadata.annotations[{L.ANNOTATION_RUNTIME}]", f"{short(runtime)}: use vllm or transformers"
            )

    def kaito_annotations(self, ann: dict[str, Any]) -> None:
        """Kaito's annotations with a closed set of values: refused here as Kaito's webhook refuses them."""
        mode = ann.get(ANNOTATION_PERFORMANCE_MODE)
        if mode is not None and mode not in PERFORMANCE_MODES:
            self.err(
                f"metadata.annotations[{ANNOTATION_PERFORMANCE_MODE}]",
                f"{mode!r} is not a valid performance mode; choose one of: {', '.join(PERFORMANCE_MODES)}",
            )
        lb = ann.get(L.ANNOTATION_ENABLE_LB)
        if lb is not None and lb not in ("True", "False"):
            # Read as exactly "True" (as Kaito reads it): anything else silently means no load balancer.
            self.warnings.append(
                f"metadata.annotations[{L.ANNOTATION_ENABLE_LB}]: {lb!r} is read as False (no LoadBalancer "
                'Service); write "True" to get one'
            )
        local = ann.get(ANNOTATION_USE_LOCAL_WEIGHTS)
        if local is not None and local not in ("true", "false"):
            self.err(
                f"metadata.annotations[{ANNOTATION_USE_LOCAL_WEIGHTS}]",
                f'{local!r} must be "true" or "false"',
            )

    def runtime(self) -> str:
        return workspace_runtime(self.obj, self.cat)

    def label_selector_syntax(self, selector: Any) -> None:
        """Keys, values and expressions exactly as Kubernetes validates them: the matchLabels are copied
        onto NodeClaims and Nodes, where the apiserver would refuse what is not a label."""
        for path, message in K.label_selector(selector, "resource.labelSelector"):
            self.err(path, message)
        if isinstance(selector, dict) and K.selector_as_map(selector) is None:
            self.err(
                "resource.labelSelector.matchExpressions",
                "only matchLabels and 'In' expressions with a single value can select GPU nodes (they become "
                "node labels); use matchLabels",
            )

    def instance_type_required(self, resource: dict[str, Any]) -> None:
        """Kaito: with node auto-provisioning, instanceType says what to provision (create and update)."""
        if self.node_provisioner in AUTO_PROVISIONING and not resource.get("instanceType"):
            self.err(
                "resource.instanceType",
                f"instanceType is required when nodes are auto-provisioned (node provisioner "
                f"{self.node_provisioner}), e.g. Standard_NC12s_v3",
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
            self.label_selector_syntax(selector)
            if not isinstance(match, dict) or not all(isinstance(v, str) for v in match.values()):
                pass  # named by label_selector_syntax
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
            self.unknown_instance_type(instance_type)
        elif instance_type and K.label_value(instance_type):
            self.err("resource.instanceType", f"{instance_type!r} must be usable as a node label value")
        self.instance_type_required(resource)
        partition = resource.get("partition")
        if partition is not None and instance_type:
            self.err(
                "resource.partition", "GPU partitioning is only supported with BYO nodes (no instanceType)"
            )
        elif partition is not None:
            self.partition(_as_dict(partition))

    def unknown_instance_type(self, instance_type: str) -> None:
        """Kaito admits sizes outside its table (new SKUs appear before any table has them): admit with a
        warning that the GPU-fit check was skipped. It becomes a node label, so its syntax is still checked."""
        if K.label_value(instance_type):
            self.err(
                "resource.instanceType",
                f"{instance_type!r} is not an instance type: it must be usable as a node label value "
                "(letters, digits, '-', '_', '.', at most 63)",
            )
            return
        close = self.cat.close_skus(instance_type)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        if self.no_gpu_azure_size(instance_type):
            self.err(
                "resource.instanceType",
                f"{instance_type!r} is not a GPU instance type: an Azure size outside kaito-ctrl's GPU table must "
                f"be an N-series or D-series size ({' or '.join(p + '...' for p in AZURE_GPU_SERIES)}){hint}",
            )
            return
        self.warnings.append(
            f"resource.instanceType: {instance_type!r} is not in kaito-ctrl's GPU table, so the check that the "
            f"model fits its GPU memory was skipped{hint}"
        )

    def no_gpu_azure_size(self, instance_type: str) -> bool:
        """Kaito (v0.3.2 and 0.12, with node auto-provisioning): a size outside the table is refused unless it is
        an Azure N- or D-series size. An Azure size (``Standard_...``) of another series has no GPU to provision,
        so it is refused on create when nodes are provisioned (any mode but byo), for tuning too (Kaito checks
        inference Workspaces only; such a node could not run a tuning Job either); another cloud's names are
        admitted with the warning, as new sizes appear before any table has them."""
        return (
            self.old is None
            and self.node_provisioner != "byo"
            and instance_type.startswith(AZURE_SIZE_PREFIX)
            and not instance_type.startswith(AZURE_GPU_SERIES)
        )

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
        self.private_preset(path, preset, options)
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
        elif secret:
            self.object_name(f"{path}.presetOptions.modelAccessSecret", secret, "Secret")
        return found

    def private_preset(self, path: str, preset: dict[str, Any], options: dict[str, Any]) -> None:
        """Kaito v1alpha1: a private preset's weights come from the user's image, so it must be given."""
        if preset.get("accessMode") == "private" and not options.get("image"):
            self.err(
                f"{path}.presetOptions.image",
                "accessMode private needs the model image in presetOptions.image",
            )
        for i, secret in enumerate(options.get("imagePullSecrets") or []):
            self.object_name(f"{path}.presetOptions.imagePullSecrets[{i}]", secret, "Secret")

    def object_name(self, path: str, value: Any, kind: str) -> None:
        """A name kaito-ctrl copies into a Pod spec reference (Secret, ConfigMap). Kubernetes admits a Pod whose
        reference names no possible object (the kubelet reports it later), and the seed's examples carry such
        placeholders (``ACR_REGISTRY_SECRET_HERE``): warn that it can never be found, refuse only a non-string."""
        if not isinstance(value, str):
            self.err(path, f"{kind} name must be a string")
            return
        problems = K.dns1123_subdomain(value)
        if problems and kind != "Secret":  # a ConfigMap is looked up at admission: it must be able to exist
            self.err(path, f"{value[:64]!r} is not a valid {kind} name: {'; '.join(problems)}")
        elif problems:
            self.warnings.append(
                f"{path}: {value[:64]!r} is not a valid {kind} name ({'; '.join(problems)}); no {kind} can have "
                "it, so the pod will not find it until you replace it"
            )

    def adapter_strength_runtime(self, adapters: Any) -> None:
        """Kaito: vLLM cannot weigh adapters, so a strength is refused under the vLLM runtime."""
        if self.runtime() != "vllm" or not isinstance(adapters, list):
            return
        for i, adapter in enumerate(adapters):
            if isinstance(adapter, dict) and adapter.get("strength") is not None:
                self.err(
                    f"inference.adapters[{i}].strength",
                    "vLLM does not support adapter strength; remove it, or set the annotation "
                    f"{L.ANNOTATION_RUNTIME}: transformers",
                )

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
        if config is not None:
            self.object_name("inference.config", config, "ConfigMap")
        preset = (
            self.preset("inference.preset", inf.get("preset")) if has_preset and not has_template else None
        )
        self.adapters(inf.get("adapters"))
        if has_preset:
            self.adapter_strength_runtime(inf.get("adapters"))
        if preset is not None:
            for path, message in runtime_refusals(preset, self.runtime(), inf):
                if not path.endswith(".strength"):  # said once, by adapter_strength_runtime
                    self.err(path, message)
        instance_type = resource.get("instanceType")
        sku = self.cat.sku(instance_type) if isinstance(instance_type, str) and instance_type else None
        if (
            preset is not None
            and sku is not None
            and L.ANNOTATION_BYPASS_RESOURCE_CHECKS
            not in _as_dict(_as_dict(self.obj.get("metadata")).get("annotations"))
        ):
            count = resource.get("count", 1) if isinstance(resource.get("count", 1), int) else 1
            self.transformers_multi_node(preset, sku)
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

    def transformers_multi_node(self, preset: Any, sku: Any) -> None:
        """Kaito: the transformers runtime cannot spread a model over nodes, so a distributed preset that does
        not fit one node of the size is refused under it."""
        # Seed-era per-model images (llama-2) ran their own torchrun multi-node server, so they are exempt.
        modern = not preset.seed_era
        if (
            self.runtime() == "transformers"
            and modern
            and preset.distributed
            and not fits_memory(preset, sku, 1)
        ):
            self.err(
                "resource.instanceType",
                f"{preset.name} needs more than one {sku.name} node, and multi-node inference is not supported "
                f"with the transformers runtime; use a larger size or {L.ANNOTATION_RUNTIME}: vllm",
            )

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
                # It becomes the init container "puller-<name>", a DNS label of at most 63 characters.
                if not isinstance(name, str) or not DNS_LABEL.fullmatch(name or "_") or len(name) > 55:
                    self.err(
                        f"{path}.source.name",
                        "an adapter needs a name (a DNS label of at most 55 characters, e.g. phi-3-adapter)",
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
                elif source.get("image"):
                    self.image(f"{path}.source.image", str(source["image"]), by_puller=True)
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
        if config is not None:
            self.object_name("tuning.config", config, "ConfigMap")
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
        if image:
            self.image("tuning.input.image", str(image), by_puller=True)

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
            self.image("tuning.output.image", str(image), pushed=True)
            if not dest.get("imagePushSecret"):
                self.err("tuning.output.imagePushSecret", "pushing the output image needs imagePushSecret")
            else:
                self.object_name("tuning.output.imagePushSecret", dest.get("imagePushSecret"), "Secret")

    # ------------------------------------------------------------------ updates
    def immutable(self, old: dict[str, Any]) -> None:
        new = self.obj
        if (old.get("inference") is None) != (new.get("inference") is None):
            self.err("inference", "a workspace cannot switch between inference and tuning; create a new one")
            return
        ro, rn = _as_dict(old.get("resource")), _as_dict(new.get("resource"))
        self.instance_type_update(ro.get("instanceType"), rn.get("instanceType"))
        self.label_selector_update(ro.get("labelSelector"), rn.get("labelSelector"))
        if ro.get("count", 1) != rn.get("count", 1):
            self.err("resource.count", "count is immutable")
        if ro.get("partition") != rn.get("partition"):
            self.err("resource.partition", "partition is immutable")
        io, in_ = _as_dict(old.get("inference")), _as_dict(new.get("inference"))
        if io.get("preset") != in_.get("preset"):
            self.err(
                "inference.preset",
                "the preset (name, accessMode and presetOptions) is immutable; create a new workspace for "
                "another model",
            )
        if (io.get("template") is None) != (in_.get("template") is None):
            self.err("inference.template", "template cannot be added or removed (its content may change)")
        to, tn = _as_dict(old.get("tuning")), _as_dict(new.get("tuning"))
        if to or tn:
            if to.get("preset") != tn.get("preset"):
                self.err("tuning.preset", "the tuning preset is immutable")
            if str(to.get("method") or "").lower() != str(tn.get("method") or "").lower():
                self.err("tuning.method", "the tuning method is immutable")
            if _as_dict(to.get("input")).get("name") != _as_dict(tn.get("input")).get("name"):
                self.err("tuning.input.name", "the tuning input name is immutable")

    def instance_type_update(self, old: Any, new: Any) -> None:
        """Kaito: instanceType cannot change once set; with auto-provisioned nodes it cannot be cleared
        either (instance_type_required says so); with BYO nodes clearing it is allowed."""
        if old == new or not new:
            return
        if old:
            self.err(
                "resource.instanceType", "instanceType cannot be changed once set; create a new workspace"
            )
        else:
            self.err("resource.instanceType", "instanceType cannot be set on an existing workspace")

    def label_selector_update(self, old: Any, new: Any) -> None:
        """Kaito compares selectors as label sets: a re-ordered or re-written selector with the same labels is
        not a change."""
        old_map, new_map = K.selector_as_map(old), K.selector_as_map(new)
        if old_map is None or new_map is None:
            if old != new:
                self.err("resource.labelSelector", "labelSelector is immutable")
        elif old_map != new_map:
            self.err("resource.labelSelector", "labelSelector is immutable (its labels changed)")


def workspace_runtime(obj: dict[str, Any], cat: Catalog | None = None) -> str:
    """The inference runtime a Workspace runs: its ``kaito.sh/runtime`` annotation, else the default the
    defaulting webhook writes: transformers through v1alpha1 (the seed's API), the preset's runtime through
    v1beta1 (vllm for every current preset)."""
    meta = obj.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    value = annotations.get(L.ANNOTATION_RUNTIME) if isinstance(annotations, dict) else None
    if value in RUNTIMES:
        return str(value)
    inference = obj.get("inference")
    preset = inference.get("preset") if isinstance(inference, dict) else None
    name = preset.get("name") if isinstance(preset, dict) else None
    found = (cat or catalog()).preset(name) if isinstance(name, str) else None
    if not str(obj.get("apiVersion", "")).endswith("v1beta1") and (
        found is None or supports(found, TRANSFORMERS)
    ):
        return TRANSFORMERS
    return found.runtime if found is not None and found.runtime in RUNTIMES else "vllm"


def validate_workspace(obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[FieldError]:
    """All problems with a Workspace (create when ``old`` is None, else update); empty when valid."""
    return check_workspace(obj, old)[0]


def check_workspace(
    obj: dict[str, Any], old: dict[str, Any] | None = None, *, node_provisioner: str | None = None
) -> tuple[list[FieldError], list[str]]:
    """(errors, warnings): warnings name fields that are admitted but not fully checked or not working as
    written. ``node_provisioner`` (byo, nodeclaim, machine) enables the rules that depend on it."""
    if not isinstance(obj, dict):
        return [FieldError("", "a Workspace must be an object")], []
    try:
        validator = _Validator(obj, old if isinstance(old, dict) else None, catalog(), node_provisioner)
        return validator.run(), validator.warnings
    except (TypeError, AttributeError, ValueError) as e:  # malformed shapes: report, never crash admission
        return [FieldError("", f"malformed workspace: {e}")], []
