"""Kaito's own e2e assertions, ported to the sandbox and driven as Kaito's suite drives a cluster: Workspaces
created and updated through the apiserver (kubectl create / replace, as the suite's client Create / Update), the
real admission webhook answering, the controllers provisioning NodeClaims through the fake ARM.

Each test names the Kaito test it comes from (kaito-project/kaito ``test/e2e``): at ``v0.3.2`` for a Workspace
created through ``kaito.sh/v1alpha1`` (the seed era) and at ``056b8280b`` (v0.12) for ``v1beta1``, with the presets
and instance types each suite used where kaito-ctrl's catalog has them. Where Kaito's suite only asserts that a
create or update fails, the port also asserts that the refusal names the field and that nothing was stored.
docs/compatibility.md lists each behaviour with its Kaito source.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from e2e.conftest import Sandbox, wait_for

Obj = dict[str, Any]
ERAS = ("v1alpha1", "v1beta1")
REVISION = "workspace.kaito.io/revision"
HASH = "workspace.kaito.io/hash"
# Kaito's test/e2e/webhook_test.go fixtures, per era: (preset, instance type) of the valid inference Workspace,
# the preset an update switches to, and the instance type an update switches to.
INFERENCE = {
    "v1alpha1": ("falcon-7b", "Standard_NC12s_v3", "falcon-40b", "Standard_NC12"),
    "v1beta1": ("phi-4-mini-instruct", "Standard_NV72ads_A10_v5", "phi-4", "Standard_NV6"),
}
# (preset, instance type, the preset an update switches to, the input's name)
TUNING = {
    "v1alpha1": ("falcon-7b", "Standard_NC12s_v3", "falcon-40b", "falcon-7b"),
    "v1beta1": ("phi-4", "Standard_NV72ads_A10_v5", "gpt-oss-20b", "phi-4-mini-instruct"),
}
REGISTRY = "kaitoe2e.azurecr.io"
TEST_MODEL_IMAGE = f"{REGISTRY}/e2e-test:0.0.1"  # webhook_test.go testModelImage
SELECTOR = {"matchLabels": {"kaito-workspace": "webhook-e2e-test"}}


def _inference(era: str, name: str, preset: str, instance_type: str, runtime: str | None = None) -> Obj:
    """utils.GenerateInferenceWorkspaceManifest (HEAD: runtime annotation transformers, or vllm through
    GenerateInferenceWorkspaceManifestWithVLLM; v0.3.2: accessMode public)."""
    ws: Obj = {
        "apiVersion": f"kaito.sh/{era}",
        "kind": "Workspace",
        "metadata": {"name": name},
        "resource": {"count": 1, "instanceType": instance_type, "labelSelector": copy.deepcopy(SELECTOR)},
        "inference": {"preset": {"name": preset}},
    }
    if era == "v1alpha1":
        ws["inference"]["preset"]["accessMode"] = "public"
    else:
        ws["metadata"]["annotations"] = {"kaito.sh/runtime": runtime or "transformers"}
    return ws


def _tuning(era: str, name: str, *, drop: str = "") -> Obj:
    """utils.GenerateTuningWorkspaceManifest with webhook_test.go's input, output, preset and method (lora)."""
    preset, instance_type, _, input_name = TUNING[era]
    tuning: Obj = {
        "method": "lora",
        "preset": {"name": preset},
        "input": {"name": input_name, "image": TEST_MODEL_IMAGE},
        "output": {"image": TEST_MODEL_IMAGE, "imagePushSecret": "e2e-acr-secret"},
    }
    tuning.pop(drop, None)
    return {
        "apiVersion": f"kaito.sh/{era}",
        "kind": "Workspace",
        "metadata": {"name": name},
        "resource": {"count": 1, "instanceType": instance_type, "labelSelector": copy.deepcopy(SELECTOR)},
        "tuning": tuning,
    }


def _send(sandbox: Sandbox, verb: str, ns: str, obj: Obj) -> tuple[bool, str]:
    """``kubectl create`` or ``replace``: (accepted, kubectl's output), retried only while the webhook is briefly
    unreachable (a replica restarting), never on a refusal."""

    def attempt() -> str:
        out = sandbox.kubectl(verb, "-n", ns, "-f", "-", input=json.dumps(obj), check=False)
        return "" if "failed calling webhook" in out else out

    out = wait_for(attempt, 60, f"kubectl {verb} {obj['metadata']['name']} answered")
    done = "created" if verb == "create" else "replaced"
    return f"workspace.kaito.sh/{obj['metadata']['name']} {done}" in out, out


def _refused(sandbox: Sandbox, verb: str, ns: str, obj: Obj, field: str) -> str:
    accepted, out = _send(sandbox, verb, ns, obj)
    assert not accepted, f"{verb} {obj['metadata']['name']} was accepted: {out}"
    # Refused by the webhook, or first by the CRD's schema (a required field), either way naming the field.
    assert ("denied the request" in out or " is invalid" in out) and field in out, out
    return out


def _get(sandbox: Sandbox, ns: str, name: str, era: str = "v1beta1") -> Obj:
    return sandbox.get_json(f"workspaces.{era}.kaito.sh", name, "-n", ns)


def _absent(sandbox: Sandbox, ns: str, name: str) -> bool:
    out = sandbox.kubectl("get", "workspace", name, "-n", ns, "--ignore-not-found", "-o", "name")
    return out.strip() == ""


def _condition(ws: Obj, type_: str) -> Obj:
    return next((c for c in ws.get("status", {}).get("conditions", []) if c["type"] == type_), {})


def _wait_condition(sandbox: Sandbox, ns: str, name: str, type_: str, timeout: float = 240) -> Obj:
    """Wait for the condition to be True; a timeout names the condition as last seen."""
    last: Obj = {}

    def true() -> Obj | None:
        nonlocal last
        last = _condition(_get(sandbox, ns, name), type_)
        return last if last.get("status") == "True" else None

    try:
        return dict(wait_for(true, timeout, f"{type_} True on {name}"))
    except AssertionError as e:
        raise AssertionError(f"{e}; {type_} was {last}") from None


# --------------------------------------------------------------------------- webhook_test.go: at creation


@pytest.mark.parametrize("era", ERAS)
def test_an_unsupported_instance_type_is_refused_at_creation(
    sandbox: Sandbox, e2e_namespace: str, era: str
) -> None:
    """Kaito test/e2e/webhook_test.go, "should validate the workspace resource spec at creation" ("Creating a
    workspace with invalid instancetype": Standard_Bad, falcon-7b at v0.3.2, phi-4 at v0.12): refused, as Kaito's
    validateCreateWithInference refuses a size outside its table that is not N- or D-series. A size outside the
    table that is N-series is admitted (with kaito-ctrl's warning), as in Kaito."""
    preset = "falcon-7b" if era == "v1alpha1" else "phi-4"
    bad = _inference(era, "webhook-bad-sku", preset, "Standard_Bad")
    out = _refused(sandbox, "create", e2e_namespace, bad, "resource.instanceType")
    assert "Standard_Bad" in out and "N-series or D-series" in out, out
    assert _absent(sandbox, e2e_namespace, "webhook-bad-sku")
    # The same Workspace with an N-series size Kaito's table does not know either: admitted.
    newer = _inference(era, "webhook-new-sku", preset, "Standard_NC12s_v9")
    accepted, out = _send(sandbox, "create", e2e_namespace, newer)
    assert accepted and "Warning: resource.instanceType" in out, out
    sandbox.kubectl("delete", "workspace", "webhook-new-sku", "-n", e2e_namespace, "--wait=false")


@pytest.mark.parametrize("era", ERAS)
def test_an_invalid_preset_name_is_refused_at_creation(
    sandbox: Sandbox, e2e_namespace: str, era: str
) -> None:
    """Kaito test/e2e/webhook_test.go, "should validate the workspace inference spec at creation" ("Creating a
    workspace with invalid preset name": preset invalid-name on Standard_NC6)."""
    bad = _inference(era, "webhook-bad-preset", "invalid-name", "Standard_NC6")
    out = _refused(sandbox, "create", e2e_namespace, bad, "inference.preset.name")
    assert "invalid-name" in out, out
    assert _absent(sandbox, e2e_namespace, "webhook-bad-preset")


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("missing", ["input", "output", "preset"])
def test_a_tuning_spec_without_input_output_or_preset_is_refused_at_creation(
    sandbox: Sandbox, e2e_namespace: str, era: str, missing: str
) -> None:
    """Kaito test/e2e/webhook_test.go, the three "should validate the workspace tuning spec at creation" cases
    ("Creating a workspace with nil input", "... nil output", "... nil preset")."""
    name = f"webhook-no-{missing}"
    _refused(sandbox, "create", e2e_namespace, _tuning(era, name, drop=missing), f"tuning.{missing}")
    assert _absent(sandbox, e2e_namespace, name)


def test_adapter_rules_at_creation(sandbox: Sandbox, e2e_namespace: str) -> None:
    """Kaito test/e2e/webhook_test.go (v0.12), "should validate the workspace inference adapters at creation":
    a vLLM Workspace with adapter strength is refused; without strength it is created; a transformers Workspace
    with strength is created; an adapter with neither image nor volume is refused (the adapters are
    inference_with_adapters_test.go's testAdapters1 and phi4Adapter)."""
    ns = e2e_namespace
    adapter = {
        "source": {
            "name": "e2e-adapter",
            "image": f"{REGISTRY}/e2e-adapter:0.0.1",
            "imagePullSecrets": ["acr"],
        },
        "strength": "1.0",
    }
    phi4_adapter = {
        "source": {
            "name": "adapter-phi-3-mini-pycoder",
            "image": f"{REGISTRY}/adapter-phi-3-mini-pycoder:0.0.1",
            "imagePullSecrets": ["acr"],
        }
    }

    vllm_strength = _inference(
        "v1beta1", "webhook-vllm-strength", "phi-4-mini-instruct", "Standard_NV72ads_A10_v5", runtime="vllm"
    )
    vllm_strength["inference"]["adapters"] = [adapter]
    _refused(sandbox, "create", ns, vllm_strength, "inference.adapters[0].strength")

    vllm_plain = _inference(
        "v1beta1", "webhook-vllm-adapter", "phi-4-mini-instruct", "Standard_NV72ads_A10_v5", runtime="vllm"
    )
    vllm_plain["inference"]["adapters"] = [phi4_adapter]
    accepted, out = _send(sandbox, "create", ns, vllm_plain)
    assert accepted, out
    stored = _get(sandbox, ns, "webhook-vllm-adapter")
    assert "strength" not in stored["inference"]["adapters"][0], "no strength defaulted under vLLM"

    tfs_strength = _inference(
        "v1beta1", "webhook-tfs-strength", "phi-3-mini-128k-instruct", "Standard_NV72ads_A10_v5"
    )
    tfs_strength["inference"]["adapters"] = [adapter]
    accepted, out = _send(sandbox, "create", ns, tfs_strength)
    assert accepted, out

    no_source = _inference("v1beta1", "webhook-adapter-no-image", "phi-4", "Standard_NV72ads_A10_v5")
    no_source["inference"]["adapters"] = [{"source": {"name": "invalid-adapter"}, "strength": "1.0"}]
    _refused(sandbox, "create", ns, no_source, "inference.adapters[0].source")
    assert _absent(sandbox, ns, "webhook-vllm-strength") and _absent(sandbox, ns, "webhook-adapter-no-image")
    sandbox.kubectl(
        "delete", "workspace", "webhook-vllm-adapter", "webhook-tfs-strength", "-n", ns, "--wait=false"
    )


def test_inference_config_rules_at_creation(sandbox: Sandbox, e2e_namespace: str) -> None:
    """Kaito test/e2e/webhook_test.go (v0.12), "should validate the workspace inference configfile": a 2-GPU
    transformers Workspace without a config is created; a vLLM one naming a ConfigMap with inference_config.yaml
    (max-model-len 1024) is created. Kaito's webhook reads the ConfigMap (inference_config_validation.go), so the
    port also asserts the other side: naming a ConfigMap that does not exist is refused."""
    ns = e2e_namespace
    accepted, out = _send(
        sandbox, "create", ns, _inference("v1beta1", "webhook-no-config", "phi-4", "Standard_NV72ads_A10_v5")
    )
    assert accepted, out

    missing = _inference(
        "v1beta1", "webhook-missing-config", "phi-4-mini-instruct", "Standard_NV72ads_A10_v5", runtime="vllm"
    )
    missing["inference"]["config"] = "inference-config-webhook"
    out = _refused(sandbox, "create", ns, missing, "inference.config")
    assert "inference-config-webhook" in out and "not found" in out, out

    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "inference-config-webhook"},
        "data": {"inference_config.yaml": "\nvllm:\n  max-model-len: 1024\n"},
    }
    sandbox.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(configmap))
    with_config = copy.deepcopy(missing)
    with_config["metadata"]["name"] = "webhook-with-config"
    accepted, out = _send(sandbox, "create", ns, with_config)
    assert accepted, out
    sandbox.kubectl(
        "delete", "workspace", "webhook-no-config", "webhook-with-config", "-n", ns, "--wait=false"
    )


# --------------------------------------------------------------------------- webhook_test.go: at update


def _update(sandbox: Sandbox, ns: str, name: str, era: str, change: Any) -> Obj:
    """The stored object (as read through ``era``), changed as Kaito's suite changes it before Update."""
    obj = _get(sandbox, ns, name, era)
    obj.pop("status", None)
    change(obj)
    return obj


def _replace(sandbox: Sandbox, ns: str, name: str, era: str, change: Any) -> tuple[bool, str]:
    """``kubectl replace`` of the stored object changed by ``change``, read again and retried when the controller
    wrote in between (a 409 on the stale resourceVersion, as a user retrying would), never on a refusal."""

    def attempt() -> tuple[bool, str] | None:
        accepted, out = _send(sandbox, "replace", ns, _update(sandbox, ns, name, era, change))
        return None if "the object has been modified" in out else (accepted, out)

    got: tuple[bool, str] = wait_for(attempt, 60, f"kubectl replace {name} answered without a conflict")
    return got


def _refused_replace(sandbox: Sandbox, ns: str, name: str, era: str, change: Any, field: str) -> str:
    accepted, out = _replace(sandbox, ns, name, era, change)
    assert not accepted, f"replace {name} was accepted: {out}"
    assert ("denied the request" in out or " is invalid" in out) and field in out, out
    return out


def _unchanged_after(sandbox: Sandbox, ns: str, name: str, era: str, before: Obj) -> None:
    after = _get(sandbox, ns, name, era)
    for key in ("resource", "inference", "tuning"):
        assert after.get(key) == before.get(key), f"{key} changed by a refused update"


@pytest.mark.parametrize("era", ERAS)
def test_resource_spec_updates_are_refused(sandbox: Sandbox, e2e_namespace: str, era: str) -> None:
    """Kaito test/e2e/webhook_test.go, "should validate the workspace resource spec at update": the label
    selector emptied and the instance type changed (Standard_NC12 at v0.3.2, Standard_NV6 at v0.12) are refused.
    An update that touches neither (a label) goes through, so the refusals are the rules', not the write's."""
    ns = e2e_namespace
    preset, instance_type, _, other_type = INFERENCE[era]
    ws = _inference(era, "webhook-update-resource", preset, instance_type, runtime="vllm")
    accepted, out = _send(sandbox, "create", ns, ws)
    assert accepted, out
    before = _get(sandbox, ns, ws["metadata"]["name"], era)

    def empty_selector(o: Obj) -> None:
        o["resource"]["labelSelector"] = {}

    def other_instance(o: Obj) -> None:
        o["resource"]["instanceType"] = other_type

    def label(o: Obj) -> None:
        o["metadata"].setdefault("labels", {})["team"] = "e2e"

    name = ws["metadata"]["name"]
    _refused_replace(sandbox, ns, name, era, empty_selector, "resource.labelSelector")
    _refused_replace(sandbox, ns, name, era, other_instance, "resource.instanceType")
    _unchanged_after(sandbox, ns, name, era, before)
    accepted, out = _replace(sandbox, ns, name, era, label)
    assert accepted, out
    sandbox.kubectl("delete", "workspace", name, "-n", ns, "--wait=false")


@pytest.mark.parametrize("era", ERAS)
def test_tuning_spec_updates_are_refused(sandbox: Sandbox, e2e_namespace: str, era: str) -> None:
    """Kaito test/e2e/webhook_test.go, "should validate the workspace tuning spec at update": the tuning preset
    (falcon-40b at v0.3.2, gpt-oss-20b at v0.12) and the method (lora to qlora) cannot be changed."""
    ns = e2e_namespace
    ws = _tuning(era, "webhook-update-tuning")
    accepted, out = _send(sandbox, "create", ns, ws)
    assert accepted, out
    name = ws["metadata"]["name"]
    before = _get(sandbox, ns, name, era)
    other_preset = TUNING[era][2]

    def preset(o: Obj) -> None:
        o["tuning"]["preset"] = {"name": other_preset}

    def method(o: Obj) -> None:
        o["tuning"]["method"] = "qlora"

    _refused_replace(sandbox, ns, name, era, preset, "tuning.preset")
    _refused_replace(sandbox, ns, name, era, method, "tuning.method")
    _unchanged_after(sandbox, ns, name, era, before)
    sandbox.kubectl("delete", "workspace", name, "-n", ns, "--wait=false")


@pytest.mark.parametrize("era", ERAS)
def test_an_inference_preset_update_is_refused(sandbox: Sandbox, e2e_namespace: str, era: str) -> None:
    """Kaito test/e2e/webhook_test.go, "should validate the workspace inference spec at update": the preset
    name changed (falcon-7b to falcon-40b at v0.3.2, phi-4-mini-instruct to phi-4 at v0.12) is refused."""
    ns = e2e_namespace
    preset, instance_type, other_preset, _ = INFERENCE[era]
    ws = _inference(era, "webhook-update-preset", preset, instance_type, runtime="vllm")
    accepted, out = _send(sandbox, "create", ns, ws)
    assert accepted, out
    name = ws["metadata"]["name"]
    before = _get(sandbox, ns, name, era)

    def change(o: Obj) -> None:
        o["inference"]["preset"]["name"] = other_preset

    _refused_replace(sandbox, ns, name, era, change, "inference.preset")
    _unchanged_after(sandbox, ns, name, era, before)
    sandbox.kubectl("delete", "workspace", name, "-n", ns, "--wait=false")


# --------------------------------------------------------------------------- preset_test.go helpers


def _claims(sandbox: Sandbox, ns: str, name: str) -> list[Obj]:
    """utils.GetAllValidNodeClaims: NodeClaims labelled with the Workspace's name and namespace."""
    selector = f"kaito.sh/workspace={name},kaito.sh/workspacenamespace={ns}"
    return list(sandbox.get_json("nodeclaims", "-l", selector)["items"])


def _validate_create_node(sandbox: Sandbox, ns: str, name: str, count: int) -> None:
    """utils.ValidateNodeClaimCreation: exactly ``count`` NodeClaims, each Ready True."""

    def ready() -> bool:
        claims = _claims(sandbox, ns, name)
        return len(claims) == count and all(_condition(c, "Ready").get("status") == "True" for c in claims)

    wait_for(ready, 240, f"{count} Ready NodeClaim(s) for {name}")


def _validate_revision(sandbox: Sandbox, ns: str, name: str, kind: str, revision: str) -> None:
    """preset_test.go validateRevision: the Workspace and its workload annotated with the revision, and the
    ControllerRevision <ws>-<hash[:5]> numbered so."""

    def matches() -> bool:
        ws = _get(sandbox, ns, name)
        ann = ws["metadata"].get("annotations", {})
        workload = sandbox.get_json(kind, name, "-n", ns)
        if ann.get(REVISION) != revision or not ann.get(HASH):
            return False
        if workload["metadata"].get("annotations", {}).get(REVISION) != revision:
            return False
        cr = sandbox.get_json("controllerrevision", f"{name}-{ann[HASH][:5]}", "-n", ns)
        return bool(cr["revision"] == int(revision))

    wait_for(
        matches, 240, f"{name} at revision {revision} on the Workspace, its {kind} and ControllerRevision"
    )


@pytest.mark.parametrize("era", ERAS)
def test_a_preset_workspace_shows_what_kaito_validates(
    sandbox: Sandbox, e2e_namespace: str, era: str
) -> None:
    """Kaito's preset e2e helpers, in the order its tests call them: v0.3.2 test/e2e/preset_test.go "should
    create a falcon workspace with preset public mode successfully" (falcon-7b, Standard_NC12s_v3) and v0.12
    test/e2e/preset_vllm_test.go "should create a single-node llama-3.1-8b-instruct workspace with preset public
    mode successfully" (vLLM, Standard_NV36ads_A10_v5, model access secret hf-token): validateCreateNode,
    validateResourceStatus, validateAssociatedService, validateInferenceConfig, validateInferenceResource,
    validateWorkspaceReadiness, and validateRevision (as called after creation in the adapter tests).

    Deliberately different for v0.12: one node runs a Deployment (Kaito 0.8+: a one-replica StatefulSet), so
    validateInferenceResource's readyReplicas is read from the Deployment, as v0.3.2's isStatefulSet=false did."""
    ns = e2e_namespace
    if era == "v1alpha1":
        name = "preset-falcon-7b"
        ws = _inference(era, name, "falcon-7b", "Standard_NC12s_v3")
        ws["resource"]["labelSelector"] = {
            "matchLabels": {"kaito-workspace": "public-preset-e2e-test-falcon"}
        }
    else:
        name = "preset-llama3-1-8b"
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "hf-token"},
            "stringData": {"HF_TOKEN": "hf_e2e"},
        }
        sandbox.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(secret))
        configmap = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "e2e-inference-config"},
            "data": {
                "inference_config.yaml": "\nvllm:\n  max-model-len: 2560\n  gpu-memory-utilization: 0.7\n"
            },
        }
        sandbox.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(configmap))
        ws = _inference(era, name, "llama-3.1-8b-instruct", "Standard_NV36ads_A10_v5", runtime="vllm")
        ws["resource"]["labelSelector"] = {"matchLabels": {"kaito-workspace": name}}
        ws["inference"]["preset"]["presetOptions"] = {"modelAccessSecret": "hf-token"}
        ws["inference"]["config"] = "e2e-inference-config"  # GenerateE2EInferenceConfigMapManifest's content
    accepted, out = _send(sandbox, "create", ns, ws)
    assert accepted, out

    _validate_create_node(sandbox, ns, name, 1)
    _wait_condition(sandbox, ns, name, "ResourceReady")  # validateResourceStatus
    svc = wait_for(  # validateAssociatedService: a Service named as the Workspace, in its namespace
        lambda: sandbox.kubectl("get", "service", name, "-n", ns, "--ignore-not-found", "-o", "name").strip(),
        240,
        f"Service {name}",
    )
    assert svc == f"service/{name}"
    if era == "v1beta1":  # validateInferenceConfig: the ConfigMap the Workspace names exists with data
        config = sandbox.get_json("configmap", _get(sandbox, ns, name)["inference"]["config"], "-n", ns)
        assert config.get("data"), config
    wait_for(  # validateInferenceResource
        lambda: sandbox.get_json("deployment", name, "-n", ns).get("status", {}).get("readyReplicas") == 1,
        240,
        f"Deployment {name} with one ready replica",
    )
    succeeded = _wait_condition(sandbox, ns, name, "WorkspaceSucceeded")  # validateWorkspaceReadiness
    # As both eras' controllers write it (v0.3.2 workspace_controller.go addOrUpdateWorkspace, v0.12
    # applyInferenceWorkspaceStatus).
    assert (succeeded["reason"], succeeded["message"]) == ("workspaceSucceeded", "workspace succeeds"), (
        succeeded
    )
    _validate_revision(sandbox, ns, name, "deployment", "1")
    sandbox.kubectl("delete", "workspace", name, "-n", ns, "--wait=false")


def test_a_private_preset_workspace_shows_what_kaito_validates(sandbox: Sandbox, e2e_namespace: str) -> None:
    """Kaito test/e2e/preset_test.go (v0.3.2), "should create a llama 7b workspace with preset private mode
    successfully" (llama-2-7b-chat, accessMode private, the model image from the suite's registry with its pull
    secret, Standard_NC12s_v3): validateCreateNode, validateResourceStatus, validateAssociatedService,
    validateInferenceResource (a Deployment, one ready replica) and validateWorkspaceReadiness; and what private
    mode means for the pod: it runs the given image with the given pull secret."""
    ns = e2e_namespace
    name = "preset-llama-2-7b-private"
    image = f"{REGISTRY}/llama-2-7b-chat:0.0.4"
    ws = _inference("v1alpha1", name, "llama-2-7b-chat", "Standard_NC12s_v3")
    ws["resource"]["labelSelector"] = {
        "matchLabels": {"kaito-workspace": "private-preset-e2e-test-llama-2-7b"}
    }
    ws["inference"]["preset"].update(
        {"accessMode": "private", "presetOptions": {"image": image, "imagePullSecrets": ["e2e-acr-secret"]}}
    )
    accepted, out = _send(sandbox, "create", ns, ws)
    assert accepted, out
    _validate_create_node(sandbox, ns, name, 1)
    _wait_condition(sandbox, ns, name, "ResourceReady")
    assert sandbox.kubectl("get", "service", name, "-n", ns, "-o", "name").strip() == f"service/{name}"
    wait_for(
        lambda: sandbox.get_json("deployment", name, "-n", ns).get("status", {}).get("readyReplicas") == 1,
        240,
        f"Deployment {name} with one ready replica",
    )
    _wait_condition(sandbox, ns, name, "WorkspaceSucceeded")
    spec = _pod_template(sandbox, ns, name)
    assert [c["image"] for c in spec["containers"]] == [image], spec["containers"]
    assert {s["name"] for s in spec.get("imagePullSecrets", [])} >= {"e2e-acr-secret"}, spec
    sandbox.kubectl("delete", "workspace", name, "-n", ns, "--wait=false")


TUNING_CONFIG = """training_config:
  ModelConfig:
    torch_dtype: "bfloat16"
    local_files_only: true
    device_map: "auto"
  QuantizationConfig:
    load_in_4bit: true
    bnb_4bit_quant_type: "nf4"
    bnb_4bit_compute_dtype: "bfloat16"
    bnb_4bit_use_double_quant: true
  LoraConfig:
    r: 8
    lora_alpha: 8
    lora_dropout: 0.0
    target_modules: ['k_proj', 'q_proj', 'v_proj', 'o_proj', "gate_proj", "down_proj", "up_proj"]
  TrainingArguments:
    output_dir: "/mnt/results"
    ddp_find_unused_parameters: false
    save_strategy: "epoch"
    per_device_train_batch_size: 1
    max_steps: 2
  DataCollator:
    mlm: true
  DatasetConfig:
    shuffle_dataset: true
    train_test_split: 1
"""


def _job_images(sandbox: Sandbox, ns: str, name: str) -> tuple[Obj, list[str], list[str]]:
    """The Job named as the Workspace, what its puller init containers pull and its pusher pushes."""
    job = sandbox.get_json("job", name, "-n", ns)
    spec = job["spec"]["template"]["spec"]

    def argv(c: Obj) -> list[str]:
        return [*c.get("command", []), *c.get("args", [])]

    pulled = [a for c in spec.get("initContainers", []) if "puller" in c["name"] for a in argv(c)]
    pushed = [a for c in spec.get("containers", []) if c["name"] == "pusher" for a in argv(c)]
    return job, pulled, pushed


@pytest.mark.parametrize("era", ERAS)
def test_a_tuning_workspace_shows_what_kaito_validates(
    sandbox: Sandbox, e2e_namespace: str, era: str
) -> None:
    """Kaito test/e2e/preset_test.go, "should create a workspace for tuning successfully, and update the
    workspace with another dataset and output image" (v0.3.2: Standard_NC6s_v3; v0.12: Standard_NV36ads_A10_v5;
    phi-3-mini-128k-instruct, qlora, the suite's e2e-qlora-params-template ConfigMap, dataset image in, adapter
    image out): validateCreateNode, validateResourceStatus, validateTuningResource (the Job named as the
    Workspace succeeds), validateACRTuningResultsUploaded (the Job completes), validateWorkspaceReadiness,
    validateTuningJobInputOutput and validateRevision 1; then the input and output changed: revision 2, and the
    Job pulls the new dataset and pushes the new image.

    Deliberately different in how the images are carried: v0.3.2 ran the dataset image as an init container
    and pushed with a privileged docker-in-docker sidecar; v0.12 bakes each reference into a puller / pusher
    shell script (``IMG_REF='...'``). kaito-ctrl passes each reference as its own argv word to a fixed script (no
    shell quoting of user values, no privileged container; docs/security.md), so the port asserts the
    reference is what the puller and the pusher container named ``pusher`` are given."""
    ns = e2e_namespace
    name = "preset-tuning-phi3"
    instance_type = "Standard_NC6s_v3" if era == "v1alpha1" else "Standard_NV36ads_A10_v5"
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "e2e-qlora-params-template"},
        "data": {"training_config.yaml": TUNING_CONFIG},
    }
    sandbox.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(configmap))
    dataset1, dataset2 = f"{REGISTRY}/e2e-tuning-dataset:0.0.1", f"{REGISTRY}/e2e-tuning-dataset2:0.0.1"
    output1 = f"{REGISTRY}/adapter-phi-3-mini-128k-instruct-e2e-test:a1b2c3"
    output2 = f"{REGISTRY}/adapter-phi-3-mini-128k-instruct-e2e-test2:d4e5f6"
    ws: Obj = {
        "apiVersion": f"kaito.sh/{era}",
        "kind": "Workspace",
        "metadata": {"name": name},
        "resource": {
            "count": 1,
            "instanceType": instance_type,
            "labelSelector": {"matchLabels": {"kaito-workspace": name}},
        },
        "tuning": {
            "preset": {"name": "phi-3-mini-128k-instruct"},
            "method": "qlora",
            "config": "e2e-qlora-params-template",
            "input": {"image": dataset1, "imagePullSecrets": ["e2e-acr-secret"]},
            "output": {"image": output1, "imagePushSecret": "e2e-acr-secret"},
        },
    }
    accepted, out = _send(sandbox, "create", ns, ws)
    assert accepted, out

    def job_done(revision: str) -> Obj:
        def done() -> Obj | None:
            job = sandbox.get_json("job", name, "-n", ns)
            current = job["metadata"].get("annotations", {}).get(REVISION) == revision
            return job if current and job.get("status", {}).get("succeeded", 0) > 0 else None

        return dict(wait_for(done, 240, f"tuning Job {name} (revision {revision}) succeeded"))

    _validate_create_node(sandbox, ns, name, 1)
    _wait_condition(sandbox, ns, name, "ResourceReady")
    job = job_done("1")  # validateTuningResource
    assert job["status"].get("completionTime"), "validateACRTuningResultsUploaded: the Job completed"
    _wait_condition(sandbox, ns, name, "WorkspaceSucceeded")  # validateWorkspaceReadiness
    _, pulled, pushed = _job_images(sandbox, ns, name)  # validateTuningJobInputOutput
    assert dataset1 in pulled and output1 in pushed, (pulled, pushed)
    _validate_revision(sandbox, ns, name, "job", "1")

    def new_input_and_output(o: Obj) -> None:
        o["tuning"]["input"] = {"image": dataset2, "imagePullSecrets": ["e2e-acr-secret"]}
        o["tuning"]["output"] = {"image": output2, "imagePushSecret": "e2e-acr-secret"}

    accepted, out = _replace(sandbox, ns, name, era, new_input_and_output)
    assert accepted, out
    _wait_condition(sandbox, ns, name, "ResourceReady")
    job_done("2")
    _wait_condition(sandbox, ns, name, "WorkspaceSucceeded")
    _, pulled, pushed = _job_images(sandbox, ns, name)
    assert dataset2 in pulled and output2 in pushed and dataset1 not in pulled, (pulled, pushed)
    _validate_revision(sandbox, ns, name, "job", "2")
    sandbox.kubectl("delete", "workspace", name, "-n", ns, "--wait=false")


def _pod_template(sandbox: Sandbox, ns: str, name: str) -> Obj:
    return dict(sandbox.get_json("deployment", name, "-n", ns)["spec"]["template"]["spec"])


def _adapter_pullers(sandbox: Sandbox, ns: str, name: str) -> dict[str, str]:
    """The inference pod's adapter init containers: name -> image."""
    spec = _pod_template(sandbox, ns, name)
    return {c["name"]: c["image"] for c in spec.get("initContainers", []) if c["name"].startswith("puller-")}


@pytest.mark.parametrize("era", ERAS)
def test_an_adapter_workspace_shows_what_kaito_validates(
    sandbox: Sandbox, e2e_namespace: str, era: str
) -> None:
    """Kaito test/e2e/inference_with_adapters_test.go: v0.3.2 "should create a falcon workspace with adapter, and
    update the workspace with another adapter" (falcon-7b, Standard_NC12s_v3) and v0.12 "should create a phi-3
    workspace with adapter, and update the workspace with another adapter" (phi-3-mini-128k-instruct under
    transformers, Standard_NV36ads_A10_v5): the NodeClaim, ResourceReady, Service, one ready replica,
    WorkspaceSucceeded, validateRevision 1; validateInitContainers (v0.12: ``puller-e2e-adapter`` running Kaito's
    skopeo puller image) and validateImagePullSecrets (the pod carries the adapter's pull secret); the adapter
    replaced by e2e-adapter2: revision 2 and its puller alone (v0.3.2 checked the init containers' count).

    Deliberately different for v1alpha1: v0.3.2 ran the adapter image itself as an init container named after the
    adapter; kaito-ctrl pulls adapters in both eras as v0.12 does (images without a shell work too)."""
    ns = e2e_namespace
    name = "preset-adapter"
    adapter1 = {
        "source": {
            "name": "e2e-adapter",
            "image": f"{REGISTRY}/e2e-adapter:0.0.1",
            "imagePullSecrets": ["acr"],
        },
        "strength": "1.0",
    }
    adapter2 = {
        "source": {
            "name": "e2e-adapter2",
            "image": f"{REGISTRY}/e2e-adapter2:0.0.1",
            "imagePullSecrets": ["acr2"],
        },
        "strength": "1.0",
    }
    if era == "v1alpha1":
        ws = _inference(era, name, "falcon-7b", "Standard_NC12s_v3")
    else:
        ws = _inference(era, name, "phi-3-mini-128k-instruct", "Standard_NV36ads_A10_v5")
    ws["resource"]["labelSelector"] = {"matchLabels": {"kaito-workspace": "custom-preset-e2e-test-adapter"}}
    ws["inference"]["adapters"] = [adapter1]
    accepted, out = _send(sandbox, "create", ns, ws)
    assert accepted, out

    def ready_at(revision: str) -> None:
        _wait_condition(sandbox, ns, name, "ResourceReady")
        wait_for(
            lambda: (
                (d := sandbox.get_json("deployment", name, "-n", ns))["metadata"]
                .get("annotations", {})
                .get(REVISION)
                == revision
                and d.get("status", {}).get("readyReplicas") == 1
                and d["status"].get("updatedReplicas") == 1
            ),
            240,
            f"Deployment {name} at revision {revision} with one ready replica",
        )
        _wait_condition(sandbox, ns, name, "WorkspaceSucceeded")
        _validate_revision(sandbox, ns, name, "deployment", revision)

    _validate_create_node(sandbox, ns, name, 1)
    assert sandbox.kubectl("get", "service", name, "-n", ns, "-o", "name").strip() == f"service/{name}"
    ready_at("1")
    assert _adapter_pullers(sandbox, ns, name) == {
        "puller-e2e-adapter": "mcr.microsoft.com/aks/skopeo:1.14.4-6"
    }
    secrets = {s["name"] for s in _pod_template(sandbox, ns, name).get("imagePullSecrets", [])}
    assert "acr" in secrets, secrets

    def other_adapter(o: Obj) -> None:
        o["inference"]["adapters"] = [adapter2]

    accepted, out = _replace(sandbox, ns, name, era, other_adapter)
    assert accepted, out
    ready_at("2")
    assert _adapter_pullers(sandbox, ns, name) == {
        "puller-e2e-adapter2": "mcr.microsoft.com/aks/skopeo:1.14.4-6"
    }
    secrets = {s["name"] for s in _pod_template(sandbox, ns, name).get("imagePullSecrets", [])}
    assert "acr2" in secrets and "acr" not in secrets, secrets
    sandbox.kubectl("delete", "workspace", name, "-n", ns, "--wait=false")


def test_a_custom_template_workspace_shows_what_kaito_validates(sandbox: Sandbox, e2e_namespace: str) -> None:
    """Kaito test/e2e/preset_test.go (v0.3.2), "should create a custom template workspace successfully" (at v0.12
    the same test is skipped for quota): inference.template from utils.GeneratePodTemplate (one container
    ``/bin/sleep 10000``) on Standard_D4s_v3, a D-series size outside the GPU table: validateCreateNode,
    validateResourceStatus, validateInferenceResource (one ready replica) and validateWorkspaceReadiness.
    ResourceReady is given a minute once the NodeClaim is Ready (its node registered), as Kaito's controller
    needs no more."""
    era = "v1alpha1"
    ns = e2e_namespace
    name = "preset-custom"
    ws = _inference(era, name, "unused", "Standard_D4s_v3")
    ws["resource"]["labelSelector"] = {"matchLabels": {"kaito-workspace": "private-preset-e2e-test-custom"}}
    ws["inference"] = {
        "template": {
            "metadata": {"name": name},
            "spec": {
                "containers": [
                    {
                        "name": name,
                        "image": "nginx:latest",
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["/bin/sleep", "10000"],
                    }
                ]
            },
        }
    }
    accepted, out = _send(sandbox, "create", ns, ws)
    assert accepted, out
    _validate_create_node(sandbox, ns, name, 1)
    _wait_condition(sandbox, ns, name, "ResourceReady", timeout=60)
    wait_for(
        lambda: sandbox.get_json("deployment", name, "-n", ns).get("status", {}).get("readyReplicas") == 1,
        240,
        f"Deployment {name} with one ready replica",
    )
    _wait_condition(sandbox, ns, name, "WorkspaceSucceeded")
    containers = _pod_template(sandbox, ns, name)["containers"]
    assert [(c["image"], c["command"]) for c in containers] == [("nginx:latest", ["/bin/sleep", "10000"])]
    sandbox.kubectl("delete", "workspace", name, "-n", ns, "--wait=false")
