from __future__ import annotations

import base64
import copy
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kaito_ctrl import pki
from kaito_ctrl.api.defaults import default_workspace
from kaito_ctrl.api.runtimes import default_runtime_annotation
from kaito_ctrl.kube.clock import FakeClock
from kaito_ctrl.webhook import admission
from kaito_ctrl.webhook.certs import DAY, CertPolicy, from_secret, generate, needs_rotation, to_secret
from tests.cases.invalid_workspaces import CASES, inference_ws


def _review(obj: Any, op: str = "CREATE", old: Any = None, uid: str = "u-1") -> dict[str, Any]:
    req: dict[str, Any] = {"uid": uid, "operation": op, "object": obj}
    if old is not None:
        req["oldObject"] = old
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req}


def _apply_patch(obj: Any, ops: list[dict[str, Any]]) -> Any:
    doc = copy.deepcopy(obj)
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        if not parts:
            doc = op["value"]
            continue
        target = doc
        for p in parts[:-1]:
            target = target[int(p)] if isinstance(target, list) else target[p]
        if op["op"] == "remove":
            del target[parts[-1]]
        else:
            target[parts[-1]] = op["value"]
    return doc


def test_valid_create_is_allowed_and_invalid_names_fields() -> None:
    ok = admission.validate(_review(inference_ws()))
    assert ok["response"] == {"uid": "u-1", "allowed": True}
    _case_id, obj, field = CASES[10]
    bad = admission.validate(_review(obj))["response"]
    assert bad["allowed"] is False and bad["status"]["code"] == 422
    assert field in bad["status"]["message"]


def test_update_checks_immutables_and_delete_is_allowed() -> None:
    old = inference_ws()
    new = copy.deepcopy(old)
    new["inference"]["preset"]["name"] = "phi-4"
    resp = admission.validate(_review(new, "UPDATE", old))["response"]
    assert not resp["allowed"] and "inference.preset:" in resp["status"]["message"]
    assert admission.validate(_review(None, "DELETE"))["response"]["allowed"]


def test_mutation_patch_produces_the_defaulted_object() -> None:
    obj = inference_ws()
    obj["inference"]["adapters"] = [{"source": {"name": "a/b~c", "image": "r.io/a:1"}}]
    resp = admission.mutate(_review(obj))["response"]
    assert resp["allowed"] and resp["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(resp["patch"]))
    review = _review(obj)
    expected = default_runtime_annotation(default_workspace(obj), review["request"])
    assert _apply_patch(obj, ops) == expected
    already = expected
    assert "patch" not in admission.mutate(_review(already))["response"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=25,
)
reviews = st.one_of(
    json_values,
    st.builds(
        lambda uid, op, obj, old: {"request": {"uid": uid, "operation": op, "object": obj, "oldObject": old}},
        st.text(max_size=6) | st.none() | st.integers(),
        st.sampled_from(["CREATE", "UPDATE", "DELETE", "CONNECT", ""]) | st.integers(),
        json_values
        | st.builds(
            lambda o: {**inference_ws(), **o},
            st.dictionaries(
                st.sampled_from(["resource", "inference", "tuning", "metadata"]), json_values, max_size=3
            ),
        ),
        json_values,
    ),
)


@settings(max_examples=500, deadline=None)
@given(reviews)
def test_fuzz_handlers_always_answer_a_well_formed_review(review: Any) -> None:
    for handler in (admission.validate, admission.mutate):
        out = handler(review)
        assert out["apiVersion"] == "admission.k8s.io/v1" and out["kind"] == "AdmissionReview"
        resp = out["response"]
        assert isinstance(resp["uid"], str) and isinstance(resp["allowed"], bool)
        if not resp["allowed"]:
            assert resp["status"]["code"] in (400, 422) and resp["status"]["message"]
        if "patch" in resp:
            json.loads(base64.b64decode(resp["patch"]))
        json.dumps(out)  # serialisable


def test_certificates_san_rotation_decision_and_secret_round_trip() -> None:
    policy = CertPolicy("kaito-ctrl-webhook", "kaito-system", validity_days=60, rotate_before_days=30)
    bundle = generate(policy)
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(bundle.cert)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "kaito-ctrl-webhook.kaito-system.svc" in sans.get_values_for_type(x509.DNSName)
    clock = FakeClock(wall_start=bundle.expires - 60 * DAY + 10)
    assert not needs_rotation(bundle, policy, clock)
    clock._wall_offset += 31 * DAY  # 31 days later: inside the 30-day window
    assert needs_rotation(bundle, policy, clock)
    rotated = generate(policy, bundle)
    assert rotated.previous_ca == bundle.ca_cert and bundle.ca_cert in rotated.ca_bundle
    assert pki.serial(rotated.cert) != pki.serial(bundle.cert)
    assert from_secret(to_secret(rotated, "s", "ns")) == rotated


def test_warnings_reach_the_review_and_admit() -> None:
    obj = inference_ws()
    obj["resource"]["instanceType"] = "Standard_NC12s_v9"
    obj["metadata"]["annotations"] = {"kaito.sh/enablelb": "true"}
    resp = admission.validate(_review(obj, "CREATE"))["response"]
    assert resp["allowed"], resp
    assert any(
        w.startswith("resource.instanceType:") and "GPU memory was skipped" in w for w in resp["warnings"]
    )
    assert any("kaito.sh/enablelb" in w for w in resp["warnings"])


def test_node_provisioner_mode_decides_whether_instance_type_is_required() -> None:
    obj = inference_ws()
    del obj["resource"]["instanceType"]
    assert admission.validate(_review(obj, "CREATE"), node_provisioner="byo")["response"]["allowed"]
    refused = admission.validate(_review(obj, "CREATE"), node_provisioner="nodeclaim")["response"]
    assert not refused["allowed"] and "resource.instanceType" in refused["status"]["message"]
