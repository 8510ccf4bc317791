"""kaito-ctrl's admission against Kaito's webhook, rule by rule.

Each row names the rule's source in Kaito (kaito-project/kaito, api/v1alpha1 and api/v1beta1
workspace_validation.go and their tests, read at commit 056b8280) and what kaito-ctrl answers: refuse naming a
field, admit, or admit with a warning. docs/troubleshooting.md lists the same rows.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from kaito_ctrl.api.validation import check_workspace
from tests.cases.invalid_workspaces import inference_ws, tuning_ws

Obj = dict[str, Any]
V = "workspace_validation.go"


@dataclass(frozen=True)
class Rule:
    id: str
    source: str  # Kaito's function
    make: Callable[[], Obj]
    expect: str  # "refuse", "admit" or "warn"
    field: str = ""
    old: Callable[[], Obj] | None = None
    node_provisioner: str | None = None
    versions: tuple[str, ...] = ("v1alpha1", "v1beta1")


def _with(base: Callable[[], Obj], **paths: Any) -> Callable[[], Obj]:
    def make() -> Obj:
        obj = base()
        for dotted, value in paths.items():
            cur = obj
            keys = dotted.split("__")
            for k in keys[:-1]:
                cur = cur.setdefault(k, {})
            if value is None:
                cur.pop(keys[-1], None)
            else:
                cur[keys[-1]] = copy.deepcopy(value)
        return obj

    return make


def _ann(base: Callable[[], Obj], annotations: dict[str, str]) -> Callable[[], Obj]:
    return _with(base, metadata__annotations=annotations)


ADAPTER = {"source": {"name": "a1", "image": "myregistry.azurecr.io/adapter:1"}}
WITH_STRENGTH = {**ADAPTER, "strength": "0.5"}

RULES = [
    Rule("name-dns-label", f"Validate: IsDNS1123Label ({V})", _with(inference_ws, metadata__name="Bad.Name"),
         "refuse", "metadata.name"),
    Rule("inference-or-tuning", f"validateCreate ({V})", _with(inference_ws, inference=None), "refuse", "inference"),
    Rule("instance-type-required-nap", f"validateCreate, FeatureFlagDisableNodeAutoProvisioning ({V})",
         _with(inference_ws, resource__instanceType=None), "refuse", "resource.instanceType",
         node_provisioner="nodeclaim"),
    Rule("instance-type-optional-byo", f"validateCreate, NAP disabled ({V})",
         _with(inference_ws, resource__instanceType=None), "admit", node_provisioner="byo"),
    Rule("node-image-family-case", f"validateNodeImageFamilyAnnotation ({V})",
         _ann(inference_ws, {"kaito.sh/node-image-family": " AzureLinux "}), "admit"),
    Rule("node-image-family-unknown", f"validateNodeImageFamilyAnnotation ({V})",
         _ann(inference_ws, {"kaito.sh/node-image-family": "windows"}), "refuse", "kaito.sh/node-image-family"),
    Rule("performance-mode", f"validateAnnotations (v1beta1 {V})",
         _ann(inference_ws, {"kaito.sh/performance-mode": "fast"}), "refuse", "kaito.sh/performance-mode"),
    Rule("use-local-weights", f"validateAnnotations (v1beta1 {V})",
         _ann(inference_ws, {"kaito.sh/use-local-weights": "True"}), "refuse", "kaito.sh/use-local-weights"),
    Rule("unknown-instance-type", f"validateCreateWithInference: GetGPUConfigBySKU ({V})",
         _with(inference_ws, resource__instanceType="Standard_NC12s_v9"), "warn", "resource.instanceType"),
    Rule("instance-type-not-n-or-d-series", f"validateCreateWithInference: N_SERIES_PREFIX, D_SERIES_PREFIX ({V})",
         _with(inference_ws, resource__instanceType="Standard_Bad"), "refuse", "resource.instanceType",
         node_provisioner="nodeclaim"),
    Rule("instance-type-not-n-or-d-series-byo", f"validateCreateWithInference, NAP disabled ({V})",
         _with(inference_ws, resource__instanceType="Standard_Bad"), "warn", "resource.instanceType",
         node_provisioner="byo"),
    Rule("gpu-memory", f"validateCreateWithInference: Insufficient total GPU memory ({V})",
         _with(_with(inference_ws, inference__preset__name="phi-4"), resource__instanceType="Standard_NC6s_v3"),
         "refuse", "resource.instanceType"),
    Rule("gpu-memory-bypass", f"validateCreateWithInference: AnnotationBypassResourceChecks ({V})",
         _ann(_with(_with(inference_ws, inference__preset__name="phi-4"), resource__instanceType="Standard_NC6s_v3"),
              {"kaito.sh/bypass-resource-checks": "True"}), "admit"),
    Rule("transformers-multi-node", f"validateCreateWithInference: distributed + Huggingface Transformers ({V})",
         _ann(_with(_with(inference_ws, inference__preset__name="llama-3.3-70b-instruct",
                          inference__preset__presetOptions={"modelAccessSecret": "hf"}),
                    resource__instanceType="Standard_NC24ads_A100_v4", resource__count=2),
              {"kaito.sh/runtime": "transformers"}), "refuse", "resource.instanceType", versions=("v1beta1",)),
    Rule("selector-as-map", f"validateCreateWithInference: LabelSelectorAsMap ({V})",
         _with(inference_ws, resource__labelSelector={"matchExpressions": [
             {"key": "apps", "operator": "In", "values": ["a", "b"]}]}),
         "refuse", "resource.labelSelector.matchExpressions"),
    Rule("selector-reserved-only", f"validateCreateWithInference: SanitizedMatchLabels ({V})",
         _with(inference_ws, resource__labelSelector={"matchLabels": {"kaito.sh/workspace": "x"}}),
         "refuse", "resource.labelSelector.matchLabels"),
    Rule("partition-needs-byo", f"validateCreateWithInference: partitioning with NAP ({V})",
         _with(inference_ws, resource__partition={"mode": "mig", "profile": "1g.10gb"}),
         "refuse", "resource.partition", versions=("v1beta1",)),
    Rule("partition-mode", f"validatePartition ({V})",
         _with(_with(inference_ws, resource__instanceType=None), resource__partition={"mode": "x"}),
         "refuse", "resource.partition.mode", versions=("v1beta1",)),
    Rule("preset-or-template", f"InferenceSpec.validateCreate ({V})", _with(inference_ws, inference={}),
         "refuse", "inference.preset"),
    Rule("preset-and-template", f"InferenceSpec.validateCreate ({V})",
         _with(inference_ws, inference__template={"spec": {"containers": []}}), "refuse", "inference.template"),
    Rule("preset-unknown", f"InferenceSpec.validateCreate: IsValidPreset ({V})",
         _with(inference_ws, inference__preset__name="gpt-99"), "refuse", "inference.preset.name"),
    Rule("preset-deprecated", f"validateCreateWithInference: Deprecated ({V})",
         _with(inference_ws, inference__preset__name="phi-2"), "refuse", "inference.preset.name"),
    Rule("private-needs-image", f"InferenceSpec.validateCreate: AccessMode private (v1alpha1 {V})",
         _with(inference_ws, inference__preset__accessMode="private"), "refuse",
         "inference.preset.presetOptions.image"),
    Rule("private-with-image", f"InferenceSpec.validateCreate: AccessMode private (v1alpha1 {V})",
         _with(inference_ws, inference__preset__accessMode="private",
               inference__preset__presetOptions={"image": "myregistry.azurecr.io/phi-3:1"}), "admit"),
    Rule("access-secret-required", f"InferenceSpec.validateCreate: DownloadAuthRequired (v1beta1 {V})",
         _with(_with(inference_ws, inference__preset__name="llama-3.1-8b-instruct"),
               resource__instanceType="Standard_NC24ads_A100_v4"),
         "refuse", "modelAccessSecret", versions=("v1beta1",)),
    Rule("adapter-strength-vllm", f"InferenceSpec.validateCreate: params.Validate AdapterStrengthEnabled ({V})",
         _ann(_with(inference_ws, inference__adapters=[WITH_STRENGTH]), {"kaito.sh/runtime": "vllm"}),
         "refuse", "inference.adapters[0].strength"),
    Rule("adapter-strength-transformers", f"InferenceSpec.validateCreate: params.Validate ({V})",
         _ann(_with(inference_ws, inference__adapters=[WITH_STRENGTH]), {"kaito.sh/runtime": "transformers"}),
         "admit"),
    Rule("adapter-without-strength-vllm", f"InferenceSpec.validateCreate: params.Validate ({V})",
         _ann(_with(inference_ws, inference__adapters=[ADAPTER]), {"kaito.sh/runtime": "vllm"}), "admit"),
    Rule("adapter-strength-range", f"AdapterSpec.validateCreateorUpdate ({V})",
         _ann(_with(inference_ws, inference__adapters=[{**ADAPTER, "strength": "1.5"}]),
              {"kaito.sh/runtime": "transformers"}), "refuse", "inference.adapters[0].strength"),
    Rule("adapter-urls", f"AdapterSpec.validateCreateorUpdate ({V})",
         _with(inference_ws, inference__adapters=[{"source": {"name": "a", "urls": ["https://x.io/a"]}}]),
         "refuse", "inference.adapters[0].source"),
    Rule("adapter-max", f"InferenceSpec.validateCreate: MaxAdaptersNumber ({V})",
         _with(inference_ws, inference__adapters=[
             {"source": {"name": f"a{i}", "image": "r.io/a:1"}} for i in range(11)]),
         "refuse", "inference.adapters"),
    Rule("adapter-duplicate", f"validateDuplicateName ({V})",
         _with(inference_ws, inference__adapters=[ADAPTER, ADAPTER]), "refuse", "inference.adapters[1].source.name"),
    Rule("tuning-method", f"TuningSpec.validateCreate ({V})", _with(tuning_ws, tuning__method="full"),
         "refuse", "tuning.method"),
    Rule("tuning-method-case", f"TuningSpec.validateCreate: ToLower ({V})", _with(tuning_ws, tuning__method="QLoRA"),
         "admit"),
    Rule("tuning-input-one-source", f"DataSource.validateCreate ({V})",
         _with(tuning_ws, tuning__input__image="r.io/data:1"), "refuse", "tuning.input"),
    Rule("tuning-url-private", f"validateDataSourceURL ({V})",
         _with(tuning_ws, tuning__input__urls=["http://10.1.2.3/d"]), "refuse", "tuning.input.urls[0]"),
    Rule("tuning-output-push-secret", f"DataDestination.validateCreate ({V})",
         _with(tuning_ws, tuning__output__imagePushSecret=None), "refuse", "tuning.output.imagePushSecret"),
    Rule("tuning-count", f"validateCreateWithTuning ({V})", _with(tuning_ws, resource__count=2), "refuse",
         "resource.count"),
    Rule("tuning-partition", f"validateCreateWithTuning ({V})",
         _with(_with(tuning_ws, resource__instanceType=None), resource__partition={"mode": "accelerator", "count": 1}),
         "refuse", "resource.partition", versions=("v1beta1",)),
    # --- updates ---
    Rule("update-toggle", f"Workspace.validateUpdate ({V})", lambda: tuning_ws("bad"), "refuse", "inference",
         old=inference_ws),
    Rule("update-count", f"ResourceSpec.validateUpdate ({V})", _with(inference_ws, resource__count=2), "refuse",
         "resource.count", old=inference_ws),
    Rule("update-instance-type-change", f"ResourceSpec.validateUpdate ({V})",
         _with(inference_ws, resource__instanceType="Standard_NC24ads_A100_v4"), "refuse", "resource.instanceType",
         old=inference_ws),
    Rule("update-instance-type-clear-nap", f"ResourceSpec.validateUpdate, NAP enabled ({V})",
         _with(inference_ws, resource__instanceType=None), "refuse", "resource.instanceType", old=inference_ws,
         node_provisioner="nodeclaim"),
    Rule("update-instance-type-clear-byo", f"ResourceSpec.validateUpdate, NAP disabled ({V})",
         _with(inference_ws, resource__instanceType=None), "admit", old=inference_ws, node_provisioner="byo"),
    Rule("update-selector-reordered", f"ResourceSpec.validateUpdate: LabelSelectorAsMap ({V})",
         _with(inference_ws, resource__labelSelector={"matchExpressions": [
             {"key": "apps", "operator": "In", "values": ["phi-3"]}]}), "admit", old=inference_ws),
    Rule("update-selector-changed", f"ResourceSpec.validateUpdate ({V})",
         _with(inference_ws, resource__labelSelector={"matchLabels": {"apps": "other"}}), "refuse",
         "resource.labelSelector", old=inference_ws),
    Rule("update-preset-options", f"InferenceSpec.validateUpdate: DeepEqual(Preset) ({V})",
         _with(inference_ws, inference__preset__presetOptions={"image": "r.io/x:1"}), "refuse",
         "inference.preset", old=inference_ws),
    Rule("update-template-set", f"InferenceSpec.validateUpdate ({V})",
         _with(inference_ws, inference={"template": {"spec": {"containers": []}}}), "refuse",
         "inference.template", old=lambda: _with(inference_ws, inference={"template": None})()),
    Rule("update-tuning-preset", f"TuningSpec.validateUpdate: DeepEqual(Preset) ({V})",
         _with(tuning_ws, tuning__preset__presetOptions={"image": "r.io/x:1"}), "refuse", "tuning.preset",
         old=tuning_ws),
    Rule("update-tuning-method-case", f"TuningSpec.validateUpdate: ToLower(Method) ({V})",
         _with(tuning_ws, tuning__method="QLORA"), "admit", old=tuning_ws),
    Rule("update-tuning-input-name", f"DataSource.validateUpdate ({V})",
         _with(tuning_ws, tuning__input__name="other"), "refuse", "tuning.input.name", old=tuning_ws),
]  # fmt: skip

CASES = [(r, v) for r in RULES for v in r.versions]


def _version(obj: Obj, version: str) -> Obj:
    return {**obj, "apiVersion": f"kaito.sh/{version}"}


@pytest.mark.parametrize(("rule", "version"), CASES, ids=[f"{r.id}-{v}" for r, v in CASES])
def test_kaito_rule(rule: Rule, version: str) -> None:
    obj = _version(rule.make(), version)
    old = _version(rule.old(), version) if rule.old else None
    errors, warnings = check_workspace(obj, old, node_provisioner=rule.node_provisioner)
    text = [str(e) for e in errors]
    if rule.expect == "refuse":
        assert any(rule.field in t for t in text), (rule.source, text)
    elif rule.expect == "warn":
        assert not errors, text
        assert any(rule.field in w for w in warnings), warnings
    else:
        assert not errors, (rule.source, text)


def test_every_rule_has_a_source_and_a_unique_id() -> None:
    assert len({r.id for r in RULES}) == len(RULES)
    assert all(r.source for r in RULES)


def test_runtime_is_the_annotation_else_the_defaulting_webhooks_choice() -> None:
    from kaito_ctrl.api.validation import workspace_runtime

    ws = inference_ws()
    assert workspace_runtime(_version(ws, "v1beta1")) == "vllm"
    assert workspace_runtime(_version(ws, "v1alpha1")) == "transformers"
    seed_era = _with(inference_ws, inference__preset__name="llama-2-7b")()
    assert workspace_runtime(_version(seed_era, "v1beta1")) == "transformers", "the preset's own runtime"
    annotated = _ann(inference_ws, {"kaito.sh/runtime": "transformers"})()
    assert workspace_runtime(_version(annotated, "v1beta1")) == "transformers"
