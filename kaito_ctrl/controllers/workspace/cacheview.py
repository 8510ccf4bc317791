"""What the Workspace controller keeps of the objects in its caches: each Pod's fields it reads, and every
string once.

A Workspace's pods are most of what its cache holds on a busy cluster (four to eight per Workspace), and a
parsed Pod costs about 17 KiB of Python objects, most of it a pod spec the controller never reads (commands,
env, probes, volumes, resources) and container statuses' mounts and resources. Keeping the view below instead,
as controller-runtime users do with a cache transform, cuts a pod to a few KiB (docs/performance.md, P8).

What the controller reads, and so what the view keeps (any change to those readers must keep this in step;
tests/unit/test_cache_views.py runs the readers over a full pod and its view):
- metadata: name, namespace, uid, resourceVersion, labels (the workspace index and mapping), deletionTimestamp,
  ownerReferences;
- spec: nodeName (the worker nodes of the status), and the puller init containers' command (which image a
  failing puller fetches; the script in it is the same string in every pod, so it is kept once);
- status: phase, reason, message, conditions and container statuses without their mounts and resources.

Workspaces, workloads, Services and Jobs are kept whole (the controller compares the rendered workload with the
live one), but their strings are interned: the same preset's command lines, images, env values, label keys and
namespace names are one string shared by every object instead of a copy per object (a quarter of a parsed
Deployment). Interning costs about 12 us per Deployment event on this machine, a small part of its parse.
"""

from __future__ import annotations

import sys
from typing import Any

from kaito_ctrl.controllers.workspace.inference_pod import puller_image
from kaito_ctrl.kube.informer import strip_managed_fields

_META = ("name", "namespace", "uid", "resourceVersion", "labels", "deletionTimestamp", "ownerReferences")
_STATUS = ("phase", "reason", "message", "conditions")
_CONTAINER_STATUS = ("name", "ready", "started", "restartCount", "state", "lastState", "image")
_CONDITION = ("type", "status", "reason", "message")


def _pick(obj: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: obj[k] for k in keys if k in obj}


def _intern(node: Any) -> Any:
    """``node`` with every string inside it (dict values, list items) replaced by its interned copy, in place.
    Dict keys need nothing: orjson already shares the keys it parses."""
    if type(node) is dict:
        for key, value in node.items():
            kind = type(value)
            if kind is str:
                node[key] = sys.intern(value)
            elif kind is dict or kind is list:
                _intern(value)
    elif type(node) is list:
        for i, value in enumerate(node):
            kind = type(value)
            if kind is str:
                node[i] = sys.intern(value)
            elif kind is dict or kind is list:
                _intern(value)
    return node


def interned(obj: dict[str, Any]) -> dict[str, Any]:
    """The cache transform of Workspaces, workloads, Services and Jobs: managedFields dropped, strings shared."""
    out: dict[str, Any] = _intern(strip_managed_fields(obj))
    return out


def pod_view(pod: dict[str, Any]) -> dict[str, Any]:
    """The fields of ``pod`` the Workspace controller reads (see the module docstring)."""
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    view_spec: dict[str, Any] = {}
    if "nodeName" in spec:
        view_spec["nodeName"] = spec["nodeName"]
    pullers = [
        {"name": c.get("name"), "command": c.get("command") or []}
        for c in spec.get("initContainers") or []
        if isinstance(c, dict) and puller_image(c) is not None
    ]
    if pullers:
        view_spec["initContainers"] = pullers
    view_status = _pick(status, _STATUS)
    if "conditions" in view_status:
        view_status["conditions"] = [_pick(c, _CONDITION) for c in view_status["conditions"] or []]
    for key in ("initContainerStatuses", "containerStatuses"):
        if key in status:
            view_status[key] = [_pick(cs, _CONTAINER_STATUS) for cs in status[key] or []]
    view = {
        "apiVersion": pod.get("apiVersion", "v1"),
        "kind": pod.get("kind", "Pod"),
        "metadata": _pick(meta, _META),
        "spec": view_spec,
        "status": view_status,
    }
    # Interned: the puller script is one long string, the same in every pod that runs a puller, and labels,
    # images and node names repeat across a Workspace's pods.
    out: dict[str, Any] = _intern(view)
    return out
