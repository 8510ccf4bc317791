"""The live ConfigMap check of a new Workspace (Kaito: validateConfigMap / validateInferenceConfig)."""

from __future__ import annotations

from typing import Any

from kaito_ctrl.kube.errors import NotFound, ServerError
from kaito_ctrl.webhook.references import reference_errors
from tests.cases.invalid_workspaces import inference_ws, tuning_ws


def _getter(configmaps: dict[tuple[str, str], dict[str, Any]], fail: bool = False) -> Any:
    async def get(namespace: str, name: str) -> dict[str, Any]:
        if fail:
            raise ServerError(503, "ServiceUnavailable", "etcd is down")
        if (namespace, name) not in configmaps:
            raise NotFound(404, "NotFound", f'configmaps "{name}" not found')
        return configmaps[(namespace, name)]

    return get


async def test_missing_inference_config_is_refused_naming_the_field() -> None:
    ws = inference_ws()
    ws["inference"]["config"] = "my-config"
    errors = await reference_errors(ws, "team-a", _getter({}))
    assert [e.path for e in errors] == ["inference.config"] and "team-a" in errors[0].message


async def test_inference_config_under_vllm_needs_its_key() -> None:
    ws = inference_ws()  # v1beta1: vllm
    ws["inference"]["config"] = "my-config"
    cms = {("team-a", "my-config"): {"data": {"other.yaml": ""}}}
    errors = await reference_errors(ws, "team-a", _getter(cms))
    assert errors and "inference_config.yaml" in errors[0].message
    cms[("team-a", "my-config")]["data"]["inference_config.yaml"] = "vllm: {}"
    assert await reference_errors(ws, "team-a", _getter(cms)) == []


async def test_tuning_config_must_exist_with_training_config() -> None:
    ws = tuning_ws()
    ws["tuning"]["config"] = "params"
    assert [e.path for e in await reference_errors(ws, "ns", _getter({}))] == ["tuning.config"]
    ok = {("ns", "params"): {"data": {"training_config.yaml": "training_config: {}"}}}
    assert await reference_errors(ws, "ns", _getter(ok)) == []


async def test_no_config_named_nothing_to_check_and_outage_admits() -> None:
    assert await reference_errors(tuning_ws(), "ns", _getter({}, fail=True)) == []
    ws = inference_ws()
    ws["inference"]["config"] = "my-config"
    assert await reference_errors(ws, "ns", _getter({}, fail=True)) == [], (
        "an outage must not block admission"
    )


async def test_vllm_max_model_len_within_the_models_context() -> None:
    ws = inference_ws()  # phi-3-mini-4k-instruct: 4096 tokens
    ws["inference"]["config"] = "cfg"

    def cms(body: str) -> Any:
        return _getter({("ns", "cfg"): {"data": {"inference_config.yaml": body}}})

    assert await reference_errors(ws, "ns", cms("vllm:\n  max-model-len: 4096\n")) == []
    too_long = await reference_errors(ws, "ns", cms("vllm:\n  max-model-len: 8192\n"))
    assert too_long and "4096" in too_long[0].message and too_long[0].path == "inference.config"
    not_int = await reference_errors(ws, "ns", cms("vllm:\n  max-model-len: lots\n"))
    assert not_int and "integer" in not_int[0].message
    assert await reference_errors(ws, "ns", cms("vllm: [unclosed\n"))
