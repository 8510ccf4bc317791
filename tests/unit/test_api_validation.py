from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from kaito_ctrl.api.catalog import catalog
from kaito_ctrl.api.defaults import default_workspace
from kaito_ctrl.api.estimator import EstimateError, estimate_nodes
from kaito_ctrl.api.netcheck import url_problem
from kaito_ctrl.api.validation import validate_workspace
from tests.cases.invalid_workspaces import CASES, inference_ws, tuning_ws

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").rglob("*.yaml"))


def test_enough_invalid_cases_with_unique_ids() -> None:
    assert len(CASES) >= 60
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize(("case_id", "obj", "field"), CASES, ids=[c[0] for c in CASES])
def test_invalid_workspace_is_refused_naming_the_field(case_id: str, obj: dict[str, Any], field: str) -> None:
    errors = validate_workspace(obj)
    assert errors, f"{case_id} should be refused"
    assert any(field in e.path or field in str(e) for e in errors), [str(e) for e in errors]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_are_accepted(path: Path) -> None:
    assert validate_workspace(yaml.safe_load(path.read_text())) == []


def test_base_objects_are_valid() -> None:
    assert validate_workspace(inference_ws()) == []
    assert validate_workspace(tuning_ws()) == []


UPDATE_CASES = [
    (
        "instanceType",
        lambda o: o["resource"].__setitem__("instanceType", "Standard_NC24ads_A100_v4"),
        "resource.instanceType",
    ),
    (
        "preset",
        lambda o: o["inference"]["preset"].__setitem__("name", "phi-3-mini-128k-instruct"),
        "inference.preset",
    ),
    (
        "selector",
        lambda o: o["resource"]["labelSelector"]["matchLabels"].__setitem__("apps", "other"),
        "resource.labelSelector",
    ),
    ("count", lambda o: o["resource"].__setitem__("count", 3), "resource.count"),
    (
        "to-tuning",
        lambda o: (o.pop("inference"), o.__setitem__("tuning", tuning_ws()["tuning"])),
        "inference",
    ),
    (
        "template-added",
        lambda o: (o["inference"].pop("preset"), o["inference"].__setitem__("template", {"spec": {}})),
        "inference.template",
    ),
]


@pytest.mark.parametrize(("name", "change", "field"), UPDATE_CASES, ids=[c[0] for c in UPDATE_CASES])
def test_immutable_fields_on_update(name: str, change: Any, field: str) -> None:
    old = inference_ws()
    new = copy.deepcopy(old)
    change(new)
    errors = validate_workspace(new, old)
    assert any(field in e.path for e in errors), [str(e) for e in errors]


def test_tuning_immutables_and_allowed_changes() -> None:
    old = tuning_ws()
    new = copy.deepcopy(old)
    new["tuning"]["method"] = "lora"
    assert any(e.path == "tuning.method" for e in validate_workspace(new, old))
    same = copy.deepcopy(old)
    same["metadata"]["labels"] = {"team": "a"}
    assert validate_workspace(same, old) == []


def test_defaults() -> None:
    obj = inference_ws()
    obj["inference"]["adapters"] = [{"source": {"name": "a", "image": "r.io/a:1"}}]
    out = default_workspace(obj)
    assert out["resource"]["count"] == 1
    assert out["inference"]["preset"]["accessMode"] == "public"
    assert "strength" not in out["inference"]["adapters"][0], "v1beta1 defaults to vLLM: no strength"
    assert "count" not in obj["resource"], "the input is not modified"
    obj["metadata"]["annotations"] = {"kaito.sh/runtime": "transformers"}
    assert default_workspace(obj)["inference"]["adapters"][0]["strength"] == "1.0"


@pytest.mark.parametrize(
    "url",
    [
        "https://huggingface.co/datasets/x/resolve/main/a.parquet",
        "http://8.8.8.8/data",
        "https://example.com:8443/x",
    ],
)
def test_public_urls_pass(url: str) -> None:
    assert url_problem(url) is None


@pytest.mark.parametrize(
    ("preset", "sku", "nodes"),
    [
        ("phi-3-mini-4k-instruct", "Standard_NC12s_v3", 1),
        ("phi-3-mini-4k-instruct", "Standard_NC24ads_A100_v4", 1),
        ("phi-3-medium-128k-instruct", "Standard_NC24ads_A100_v4", 1),
        ("llama-3.3-70b-instruct", "Standard_NC24ads_A100_v4", 3),
        ("llama-3.3-70b-instruct", "Standard_NC96ads_A100_v4", 1),
        ("llama-3.3-70b-instruct", "Standard_NV36ads_A10_v5", 9),
        ("qwen2.5-coder-32b-instruct", "Standard_NC24ads_A100_v4", 2),
        ("qwen2.5-coder-32b-instruct", "Standard_NV36ads_A10_v5", 4),
        ("gpt-oss-120b", "Standard_NC24ads_A100_v4", 3),
        ("gpt-oss-120b", "Standard_NC96ads_A100_v4", 1),
        ("phi-4", "Standard_NC24ads_A100_v4", 1),
        ("falcon-40b", "Standard_NC96ads_A100_v4", 1),
    ],
)
def test_node_estimate_table(preset: str, sku: str, nodes: int) -> None:
    cat = catalog()
    p, s = cat.preset(preset), cat.sku(sku)
    assert p is not None and s is not None
    est = estimate_nodes(p, s)
    assert est.nodes == nodes
    # More memory per node never needs more nodes.
    assert est.nodes * s.gpu_count >= est.gpus_needed


def test_estimate_refuses_non_distributed_model_over_several_nodes() -> None:
    cat = catalog()
    with pytest.raises(EstimateError, match="cannot span several nodes"):
        estimate_nodes(cat.preset("phi-4"), cat.sku("Standard_NC12s_v3"))  # type: ignore[arg-type]


def test_catalog_has_seed_and_modern_presets_and_aliases() -> None:
    cat = catalog()
    for name in ("phi-3-mini-4k-instruct", "falcon-7b", "llama-2-70b-chat", "mistral-7b-instruct", "phi-4",
                 "llama-3.1-8b-instruct", "qwen2.5-coder-7b-instruct", "deepseek-r1-distill-llama-8b",
                 "gemma-3-27b-instruct", "gpt-oss-20b"):  # fmt: skip
        assert cat.preset(name) is not None, name
    assert cat.preset("mistral-7b-instruct-v0.3") is cat.preset("mistral-7b-instruct")
    assert cat.preset("microsoft/phi-4") is cat.preset("phi-4")
    assert cat.preset("phi-2").deprecated  # type: ignore[union-attr]
    assert cat.sku("standard_nc12s_v3") is not None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "apiVersion": st.sampled_from(["kaito.sh/v1alpha1", "kaito.sh/v1beta1"]) | st.text(max_size=5),
            "metadata": json_values,
            "resource": json_values,
            "inference": json_values,
            "tuning": json_values,
        },
    ),
    json_values,
)
def test_validation_never_raises(obj: dict[str, Any], old: Any) -> None:
    errors = validate_workspace(obj, old if isinstance(old, dict) else None)
    assert isinstance(errors, list)
    for e in errors:
        assert isinstance(e.path, str) and isinstance(e.message, str)
