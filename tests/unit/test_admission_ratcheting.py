"""Deletion is never blocked by admission: an update that leaves what the rules judge unchanged, or any update
of an object being deleted, is admitted even when today's rules refuse its spec (a preset that left the
catalog); a change to a judged field is judged in full; the defaulting webhook leaves a deleting object alone."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

from kaito_ctrl.webhook import admission
from tests.cases.invalid_workspaces import inference_ws
from tests.unit.test_webhook_admission import _apply_patch, _review


def _stored_with_a_retired_preset() -> dict[str, Any]:
    """A Workspace admitted under an older catalog: its preset is unknown today."""
    ws = inference_ws("old")
    ws["inference"]["preset"]["name"] = "a-preset-no-longer-in-the-catalog"
    ws["metadata"].update(namespace="ns", finalizers=["workspace.kaito.io/finalizer"], resourceVersion="7")
    ws["metadata"].setdefault("annotations", {})["kaito.sh/runtime"] = "vllm"
    return ws


def _allowed(new: dict[str, Any], old: dict[str, Any] | None, op: str = "UPDATE") -> dict[str, Any]:
    return dict(admission.validate(_review(new, op, old))["response"])


def test_the_stored_spec_is_refused_by_todays_rules() -> None:
    # The premise of the tests below: judged in full, this object is refused.
    resp = _allowed(_stored_with_a_retired_preset(), None, "CREATE")
    assert resp["allowed"] is False and "a-preset-no-longer-in-the-catalog" in resp["status"]["message"]


def test_removing_the_finalizer_is_admitted() -> None:
    old = _stored_with_a_retired_preset()
    new = copy.deepcopy(old)
    new["metadata"]["finalizers"] = []
    assert _allowed(new, old)["allowed"] is True


def test_adding_a_label_or_a_foreign_annotation_is_admitted() -> None:
    old = _stored_with_a_retired_preset()
    new = copy.deepcopy(old)
    new["metadata"]["labels"] = {"team": "a"}
    new["metadata"]["annotations"]["example.com/owner"] = "a"
    new["status"] = {"state": "Pending"}
    assert _allowed(new, old)["allowed"] is True


def test_any_update_of_an_object_being_deleted_is_admitted() -> None:
    old = _stored_with_a_retired_preset()
    old["metadata"]["deletionTimestamp"] = "2026-12-03T10:00:00Z"
    new = copy.deepcopy(old)
    new["metadata"]["finalizers"] = []
    new["resource"]["instanceType"] = "Standard_Not_A_SKU"
    assert _allowed(new, old)["allowed"] is True


def test_a_changed_spec_is_judged_in_full() -> None:
    good = inference_ws("w")
    good["metadata"]["namespace"] = "ns"
    new = copy.deepcopy(good)
    new["inference"]["preset"]["name"] = "no-such-preset"
    resp = _allowed(new, good)
    assert resp["allowed"] is False and "no-such-preset" in resp["status"]["message"]
    # Changing a retired object's spec: the whole of it is judged, the old refusal included.
    old = _stored_with_a_retired_preset()
    edited = copy.deepcopy(old)
    edited["resource"]["count"] = 2
    assert _allowed(edited, old)["allowed"] is False


def test_a_changed_kaito_annotation_is_judged() -> None:
    good = inference_ws("w")
    good["metadata"]["namespace"] = "ns"
    new = copy.deepcopy(good)
    new["metadata"].setdefault("annotations", {})["kaito.sh/runtime"] = "tensorrt"
    resp = _allowed(new, good)
    assert resp["allowed"] is False and "kaito.sh/runtime" in resp["status"]["message"]


def test_the_defaulting_webhook_leaves_a_deleting_object_alone() -> None:
    ws = inference_ws("w")
    ws["metadata"].pop("annotations", None)
    assert "patch" in admission.mutate(_review(ws, "UPDATE", ws))["response"], "premise: defaults apply"
    ws["metadata"]["deletionTimestamp"] = "2026-12-03T10:00:00Z"
    resp = admission.mutate(_review(ws, "UPDATE", ws))["response"]
    assert resp["allowed"] is True and "patch" not in resp


def test_what_the_defaulting_webhook_adds_to_a_stored_object_is_not_a_change() -> None:
    # Stored before the runtime annotation was defaulted; the mutating webhook (run first) adds it now.
    old = _stored_with_a_retired_preset()
    del old["metadata"]["annotations"]["kaito.sh/runtime"]
    review = _review(copy.deepcopy(old), "UPDATE", old)
    mutated = admission.mutate(review)["response"]
    assert "patch" in mutated, "premise: the defaulting webhook changes the stored object"
    new = _apply_patch(old, json.loads(base64.b64decode(mutated["patch"])))
    new["metadata"]["labels"] = {"team": "a"}
    assert _allowed(new, old)["allowed"] is True


def test_a_ratcheted_update_is_not_judged_by_the_pod_security_baseline_either() -> None:
    from kaito_ctrl.webhook.server import _baseline_violations

    old = inference_ws("priv")
    old["metadata"]["namespace"] = "ns"
    old["inference"] = {
        "template": {
            "spec": {
                "containers": [{"name": "c", "image": "r.io/i:1", "securityContext": {"privileged": True}}]
            }
        }
    }
    create = json.dumps(_review(old, "CREATE")).encode()
    assert _baseline_violations(create)[1], "premise: the baseline refuses this template"
    new = copy.deepcopy(old)
    new["metadata"]["finalizers"] = []
    new["metadata"]["labels"] = {"team": "a"}
    assert _baseline_violations(json.dumps(_review(new, "UPDATE", old)).encode()) == ("", [])
    changed = copy.deepcopy(old)
    changed["inference"]["template"]["spec"]["hostNetwork"] = True
    assert _baseline_violations(json.dumps(_review(changed, "UPDATE", old)).encode())[1]
