"""Runtime selection by the API version a Workspace is written through, the catalog's image and API per runtime,
and image references that are admitted with a warning instead of refused."""

from __future__ import annotations

import base64
import copy
import json
import re
from typing import Any

import pytest

from kaito_ctrl.api.catalog import catalog
from kaito_ctrl.api.imageref import PULLABLE_PATTERN, pull_problem, refusal
from kaito_ctrl.api.runtimes import default_runtime_annotation, runtime_image, runtime_images
from kaito_ctrl.webhook import admission
from tests.cases.invalid_workspaces import inference_ws


def _review(obj: Any, version: str, op: str = "CREATE", old: Any = None, key: str = "kind") -> dict[str, Any]:
    req: dict[str, Any] = {"uid": "u", "operation": op, "object": obj, key: {"group": "kaito.sh", "version": version, "kind": "Workspace"}}  # fmt: skip
    if old is not None:
        req["oldObject"] = old
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req}


def _mutated(review: dict[str, Any]) -> dict[str, Any]:
    resp = admission.mutate(review)["response"]
    doc = copy.deepcopy(review["request"]["object"])
    for op in json.loads(base64.b64decode(resp.get("patch", "W10="))):
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        cur = doc
        for p in parts[:-1]:
            cur = cur[p]
        cur[parts[-1]] = op["value"]
    return doc


def _runtime(obj: dict[str, Any]) -> str | None:
    return (obj["metadata"].get("annotations") or {}).get("kaito.sh/runtime")


def test_v1alpha1_gets_transformers_and_v1beta1_gets_vllm() -> None:
    assert _runtime(_mutated(_review(inference_ws(), "v1alpha1"))) == "transformers"
    assert _runtime(_mutated(_review(inference_ws(), "v1beta1"))) == "vllm"
    # requestKind (the version the user wrote, before any equivalent-version conversion) wins over kind.
    review = _review(inference_ws(), "v1beta1")
    review["request"]["requestKind"] = {"group": "kaito.sh", "version": "v1alpha1", "kind": "Workspace"}
    assert _runtime(_mutated(review)) == "transformers"


def test_an_explicit_or_stored_runtime_is_kept() -> None:
    obj = inference_ws()
    obj["metadata"]["annotations"] = {"kaito.sh/runtime": "vllm"}
    assert _runtime(_mutated(_review(obj, "v1alpha1"))) == "vllm"
    old = copy.deepcopy(obj)
    new = inference_ws()  # an update that omits the annotation keeps the stored choice
    assert _runtime(_mutated(_review(new, "v1beta1", "UPDATE", old))) == "vllm"


def test_a_tuning_workspace_records_the_seed_era_only_through_v1alpha1() -> None:
    """Tuning runs transformers in every era; the annotation marks a Workspace that came through the seed's API
    (its NodeClaimReady reads installNodePluginsSuccess), kept on a later v1beta1 update that omits it."""
    tuning = {
        "apiVersion": "kaito.sh/v1alpha1",
        "metadata": {"name": "t"},
        "tuning": {"method": "qlora", "preset": {"name": "phi-3-mini-4k-instruct"}},
    }
    seed = default_runtime_annotation(tuning, {"operation": "CREATE", "kind": {"version": "v1alpha1"}})
    assert seed["metadata"]["annotations"] == {"kaito.sh/runtime": "transformers"}
    assert "annotations" not in tuning["metadata"], "the request's object is not changed in place"
    assert (
        default_runtime_annotation(tuning, {"operation": "CREATE", "kind": {"version": "v1beta1"}}) == tuning
    )
    update = {"operation": "UPDATE", "kind": {"version": "v1beta1"}, "oldObject": seed}
    assert default_runtime_annotation(tuning, update)["metadata"]["annotations"] == {
        "kaito.sh/runtime": "transformers"
    }
    no_preset = {"apiVersion": "kaito.sh/v1alpha1", "metadata": {"name": "t"}, "tuning": {"method": "qlora"}}
    assert default_runtime_annotation(no_preset, {"kind": {"version": "v1alpha1"}}) == no_preset


def test_the_runtime_annotation_is_validated() -> None:
    obj = inference_ws()
    obj["metadata"]["annotations"] = {"kaito.sh/runtime": "tgi"}
    resp = admission.validate(_review(obj, "v1beta1"))["response"]
    assert not resp["allowed"] and "kaito.sh/runtime" in resp["status"]["message"]


def test_the_catalog_records_image_and_api_per_runtime() -> None:
    phi3 = catalog().preset("phi-3-mini-4k-instruct")
    assert phi3 is not None
    images = runtime_images(phi3)
    assert (images["transformers"].repository, images["transformers"].tag, images["transformers"].api) == (
        "kaito-phi-3-mini-4k-instruct", "0.0.2", "chat",
    )  # fmt: skip
    assert (images["vllm"].repository, images["vllm"].api) == ("kaito-base", "openai")
    phi4 = catalog().preset("phi-4")
    assert phi4 is not None and runtime_image(phi4, "transformers").api == "openai", (
        "current images: OpenAI API"
    )


@pytest.mark.parametrize(
    ("ref", "problem"),
    [
        ("ACR_REPO_HERE.azurecr.io/ADAPTER_HERE:0.0.1", "'_'"),
        ("myregistry.azurecr.io/Adapter:1", "upper-case"),
        ("r.io/a:bad tag", None),  # whitespace: refused, see below
        ("r.io/a@sha256:123", "digest"),
        ("mcr.microsoft.com/aks/kaito/kaito-base:0.5.0", None),
        ("localhost:5000/team/adapter:1", None),
    ],
)
def test_pull_problems_and_the_kwok_pattern_agree(ref: str, problem: str | None) -> None:
    if refusal(ref):
        return
    found = pull_problem(ref)
    assert (found is None) == (problem is None) and (problem is None or problem in (found or ""))
    assert bool(re.match(PULLABLE_PATTERN, ref)) == (found is None)


def test_placeholders_are_admitted_with_a_warning_naming_the_field() -> None:
    obj = inference_ws()
    obj["inference"]["adapters"] = [
        {"source": {"name": "a", "image": "ACR_REPO_HERE.azurecr.io/ADAPTER_HERE:0.0.1"}}
    ]
    resp = admission.validate(_review(obj, "v1alpha1"))["response"]
    assert resp["allowed"]
    (warning,) = resp["warnings"]
    assert warning.startswith("inference.adapters[0].source.image:") and "InvalidImageName" in warning
    obj["inference"]["adapters"][0]["source"]["image"] = "r.io/has space:1"
    resp = admission.validate(_review(obj, "v1alpha1"))["response"]
    assert not resp["allowed"] and "whitespace" in resp["status"]["message"], "a Pod would refuse it too"
    clean = inference_ws()
    assert "warnings" not in admission.validate(_review(clean, "v1alpha1"))["response"]
