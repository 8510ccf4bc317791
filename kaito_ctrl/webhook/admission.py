"""AdmissionReview v1 handling as pure functions: request dict in, response dict out, never an exception.

Validation refuses with a message that lists every offending field and what to fix; mutation answers with
a JSONPatch that fills in defaults. Malformed input still gets a well-formed review (allowed: false, 400).
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from kaito_ctrl.api.defaults import default_workspace
from kaito_ctrl.api.runtimes import default_runtime_annotation
from kaito_ctrl.api.validation import FieldError, check_workspace

API_VERSION = "admission.k8s.io/v1"


def _response(
    uid: str, allowed: bool, *, code: int = 200, message: str = "", reason: str = ""
) -> dict[str, Any]:
    resp: dict[str, Any] = {"uid": uid, "allowed": allowed}
    if not allowed or message:
        status: dict[str, Any] = {"code": code, "message": message}
        if reason:
            status["reason"] = reason
        resp["status"] = status
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": resp}


def _request(review: Any) -> tuple[str, dict[str, Any] | None, str]:
    """(uid, request, problem): a problem string when the review is not usable."""
    if not isinstance(review, dict):
        return "", None, "the body is not an AdmissionReview object"
    request = review.get("request")
    if not isinstance(request, dict):
        return "", None, "the AdmissionReview has no request"
    uid = request.get("uid")
    uid = uid if isinstance(uid, str) else ""
    if not uid:
        return "", None, "the AdmissionReview request has no uid"
    return uid, request, ""


def validate(review: Any, *, node_provisioner: str | None = None) -> dict[str, Any]:
    """``node_provisioner`` (byo, nodeclaim, machine) turns on the rules that depend on how nodes come."""
    uid, request, problem = _request(review)
    if request is None:
        return _response(uid, False, code=400, message=problem, reason="BadRequest")
    operation = request.get("operation")
    if operation not in ("CREATE", "UPDATE"):
        return _response(uid, True)
    obj = request.get("object")
    if not isinstance(obj, dict):
        return _response(uid, False, code=400, message="the request carries no object", reason="BadRequest")
    old = request.get("oldObject") if operation == "UPDATE" else None
    if ratcheted(request):
        return _response(uid, True)
    errors, warnings = check_workspace(
        obj, old if isinstance(old, dict) else None, node_provisioner=node_provisioner
    )
    out = _response(uid, True) if not errors else refusal(uid, errors)
    if warnings:  # kubectl prints each as "Warning: ..."
        out["response"]["warnings"] = warnings
    return out


# Annotations with this prefix are kaito-ctrl's and Kaito's own settings, which the rules read.
_JUDGED_ANNOTATION_PREFIX = "kaito.sh/"
_NOT_JUDGED = frozenset({"apiVersion", "kind", "metadata", "status"})


def _being_deleted(obj: dict[str, Any]) -> bool:
    meta = obj.get("metadata")
    return isinstance(meta, dict) and bool(meta.get("deletionTimestamp"))


def ratcheted(request: dict[str, Any]) -> bool:
    """An update admitted without judging the spec (every check of it, Pod Security baseline included).

    Ratcheting, as Kubernetes does for CRD validation: an update that leaves what the rules judge as it was
    (finalizers, labels, foreign annotations, status), or any update of an object being deleted, is admitted
    even if today's rules (a newer catalog) would refuse its spec. Otherwise a Workspace whose preset left the
    catalog could never lose its finalizer, and could never be deleted."""
    obj, old = request.get("object"), request.get("oldObject")
    if request.get("operation") != "UPDATE" or not isinstance(obj, dict) or not isinstance(old, dict):
        return False
    return _being_deleted(obj) or _being_deleted(old) or _unchanged(obj, old, request)


def _unchanged(obj: dict[str, Any], old: dict[str, Any], request: dict[str, Any]) -> bool:
    """True when the update leaves what the rules judge as stored, or as the defaulting webhook (which runs
    first) makes of what is stored: an object stored before a default existed gains it on its next update."""
    judged = _judged(obj)
    if judged == _judged(old):
        return True
    try:
        return judged == _judged(default_runtime_annotation(default_workspace(old), request))
    except (TypeError, ValueError, RecursionError):
        return False


def _judged(obj: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """What the validation rules read: every spec-like top-level field (resource, inference, tuning, ...)
    and the annotations under kaito.sh/."""
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    annotations = meta.get("annotations")
    annotations = annotations if isinstance(annotations, dict) else {}
    fields = {k: v for k, v in obj.items() if k not in _NOT_JUDGED}
    judged_annotations = {
        k: v for k, v in annotations.items() if isinstance(k, str) and k.startswith(_JUDGED_ANNOTATION_PREFIX)
    }
    return fields, judged_annotations


def refusal(uid: str, errors: list[FieldError]) -> dict[str, Any]:
    message = "invalid Workspace: " + "; ".join(str(e) for e in errors)
    return _response(uid, False, code=422, message=message, reason="Invalid")


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def json_patch(old: Any, new: Any, path: str = "") -> list[dict[str, Any]]:
    """RFC 6902 operations turning ``old`` into ``new`` (objects diffed by key; lists replaced whole)."""
    if isinstance(old, dict) and isinstance(new, dict):
        ops: list[dict[str, Any]] = []
        for key in old:
            if key not in new:
                ops.append({"op": "remove", "path": f"{path}/{_escape(key)}"})
        for key, value in new.items():
            sub = f"{path}/{_escape(key)}"
            if key not in old:
                ops.append({"op": "add", "path": sub, "value": value})
            else:
                ops.extend(json_patch(old[key], value, sub))
        return ops
    if old == new and type(old) is type(new):
        return []
    return [{"op": "replace", "path": path or "", "value": new}]


def mutate(review: Any) -> dict[str, Any]:
    uid, request, problem = _request(review)
    if request is None:
        return _response(uid, False, code=400, message=problem, reason="BadRequest")
    obj = request.get("object")
    if request.get("operation") not in ("CREATE", "UPDATE") or not isinstance(obj, dict):
        return _response(uid, True)
    if _being_deleted(obj):
        return _response(uid, True)  # never change an object on its way out (only finalizers may go)
    try:
        defaulted = default_runtime_annotation(default_workspace(obj), request)
        ops = json_patch(obj, defaulted)
    except (TypeError, ValueError, RecursionError) as e:
        return _response(uid, False, code=400, message=f"cannot default the object: {e}", reason="BadRequest")
    out = _response(uid, True)
    if ops:
        out["response"]["patchType"] = "JSONPatch"
        out["response"]["patch"] = base64.b64encode(orjson.dumps(ops)).decode()
    return out
