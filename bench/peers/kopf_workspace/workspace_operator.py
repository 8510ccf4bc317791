"""A minimal kopf operator for kaito.sh Workspaces, the peer of benchmark P6 (bench/bench_workspaces.py).

It makes the writes kaito-ctrl's Workspace controller makes for a BYO inference Workspace whose nodes are
ready: its revision (the ControllerRevision and the Workspace's revision annotations), a finalizer (kopf adds its
own because there is a deletion handler), the Service and the Deployment
with the very bodies kaito-ctrl renders, the status (the same conditions, state and node list) and one
Event per condition. It does not look at nodes or pods: it measures the framework's cost for the same
writes, it is not a second Kaito.

The benchmark renders the bodies once with kaito-ctrl's own renderer and passes them in the JSON file named
by ``KAITO_BENCH_TEMPLATES`` (placeholders for the name, namespace and uid of each Workspace). Run with
``kopf run --standalone --namespace NS workspace_operator.py`` and ``KUBECONFIG`` set; it runs in
bench/peers/.venv (made by bench/peers/setup.sh), which has kopf and kubernetes-asyncio but not kaito-ctrl.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import os
from pathlib import Path
from typing import Any

import kopf
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client.exceptions import ApiException

GROUP, VERSION, PLURAL = "kaito.sh", "v1beta1", "workspaces"
TEMPLATES: dict[str, Any] = json.loads(Path(os.environ["KAITO_BENCH_TEMPLATES"]).read_text())
PLACEHOLDERS: dict[str, str] = TEMPLATES["placeholders"]


class _Clients:
    api: k8s.ApiClient | None = None
    core: k8s.CoreV1Api | None = None
    apps: k8s.AppsV1Api | None = None


clients = _Clients()


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    # The Workspace CRD has a structural schema: keep kopf's own bookkeeping in annotations, not in status.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage()
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage()
    # Only the Events the handler posts (one per condition, as kaito-ctrl), not kopf's per-handler ones.
    settings.posting.level = logging.WARNING
    await k8s_config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
    clients.api = k8s.ApiClient()
    clients.core = k8s.CoreV1Api(clients.api)
    clients.apps = k8s.AppsV1Api(clients.api)


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    if clients.api is not None:
        await clients.api.close()


def render(name: str, namespace: str, uid: str) -> list[dict[str, Any]]:
    text = TEMPLATES["objects_json"]
    for key, value in (("name", name), ("namespace", namespace), ("uid", uid)):
        text = text.replace(PLACEHOLDERS[key], value)
    objects: list[dict[str, Any]] = json.loads(text)
    return objects


def render_revision(name: str, namespace: str, uid: str) -> dict[str, Any]:
    text = TEMPLATES["revision_json"]
    for key, value in (("name", name), ("namespace", namespace), ("uid", uid)):
        text = text.replace(PLACEHOLDERS[key], value)
    revision: dict[str, Any] = json.loads(text)
    return revision


def desired_status(generation: int) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    status: dict[str, Any] = copy.deepcopy(TEMPLATES["status"])
    for condition in status["conditions"]:
        condition["lastTransitionTime"] = now
        condition["observedGeneration"] = generation
    status["observedGeneration"] = generation
    return status


@kopf.on.create(GROUP, VERSION, PLURAL)
async def create_workspace(
    body: kopf.Body, name: str, namespace: str, uid: str, meta: kopf.Meta, patch: kopf.Patch, **_: Any
) -> None:
    assert clients.core is not None and clients.apps is not None
    # kaito-ctrl's revision step: list the history, record revision 1, annotate the Workspace.
    await clients.apps.list_namespaced_controller_revision(
        namespace, label_selector=f"workspace.kaito.io/name={name}"
    )
    try:
        await clients.apps.create_namespaced_controller_revision(
            namespace, render_revision(name, namespace, uid)
        )
    except ApiException as e:
        if e.status != 409:
            raise
    patch.metadata.annotations.update(TEMPLATES["revision_annotations"])
    for obj in render(name, namespace, uid):
        try:
            if obj["kind"] == "Service":
                await clients.core.create_namespaced_service(namespace, obj)
            else:
                await clients.apps.create_namespaced_deployment(namespace, obj)
        except ApiException as e:
            if e.status != 409:  # 409: made by an earlier attempt of this handler
                raise
    patch.status.update(desired_status(int(meta.get("generation") or 0)))
    for event in TEMPLATES["events"]:
        kopf.event(body, type=event["type"], reason=event["reason"], message=event["message"])


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def delete_workspace(**_: Any) -> None:
    """The Service and Deployment go with their ownerReferences. Having a deletion handler makes kopf keep a
    finalizer on every Workspace, as kaito-ctrl does."""
