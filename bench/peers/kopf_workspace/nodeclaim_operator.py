"""A minimal kopf operator for kaito.sh Workspaces that need a node of their own: the peer of benchmark P11
(bench/bench_burst_nodeclaims.py).

For each Workspace it makes what kaito-ctrl's Workspace controller makes in NodeClaim mode, with the very bodies
kaito-ctrl renders: one NodeClaim (named as kaito-ctrl names it), and once that claim is Ready (the node
provisioner, `kaito-ctrl run --controllers provisioner`, turned it into a Node with its GPU) the Service and the
Deployment; once the Deployment's pod is ready, the status a ready Workspace carries. It waits the kopf way: the
handler raises ``kopf.TemporaryError`` and kopf runs it again ``POLL`` seconds later. On deletion it deletes the
NodeClaim (the provisioner then deletes the agent pool). It posts no Events and records no revision.

The benchmark renders the bodies with kaito-ctrl's own functions and passes them in the JSON file named by
``KAITO_BENCH_TEMPLATES`` (placeholders for the Workspace's name, namespace and uid and the claim's name). Run
with ``kopf run --standalone --namespace NS nodeclaim_operator.py`` and ``KUBECONFIG`` set, from
bench/peers/.venv (made by bench/peers/setup.sh), which has kopf and kubernetes-asyncio but not kaito-ctrl.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
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
CLAIMS = ("karpenter.sh", "v1", "nodeclaims")
POLL = 1.0  # seconds between kopf's retries of a handler that waits
TEMPLATES: dict[str, Any] = json.loads(Path(os.environ["KAITO_BENCH_TEMPLATES"]).read_text())
PLACEHOLDERS: dict[str, str] = TEMPLATES["placeholders"]


class _Clients:
    api: k8s.ApiClient | None = None
    core: k8s.CoreV1Api | None = None
    apps: k8s.AppsV1Api | None = None
    custom: k8s.CustomObjectsApi | None = None


clients = _Clients()
# Steps done per Workspace uid, so a retried handler does not send its creates again.
claimed: set[str] = set()
applied: set[str] = set()


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    # The Workspace CRD has a structural schema: keep kopf's own bookkeeping in annotations, not in status.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage()
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage()
    settings.posting.level = logging.WARNING
    await k8s_config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
    clients.api = k8s.ApiClient()
    clients.core = k8s.CoreV1Api(clients.api)
    clients.apps = k8s.AppsV1Api(clients.api)
    clients.custom = k8s.CustomObjectsApi(clients.api)


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    if clients.api is not None:
        await clients.api.close()


def claim_name(name: str, namespace: str, uid: str) -> str:
    """kaito-ctrl's name for a Workspace's first node object (controllers/workspace/nodes.py)."""
    return "ws" + hashlib.sha256(f"{namespace}/{name}/{uid}/0".encode()).hexdigest()[:9]


def fill(text: str, name: str, namespace: str, uid: str) -> Any:
    values = {"name": name, "namespace": namespace, "uid": uid, "claim": claim_name(name, namespace, uid)}
    for key, value in values.items():
        text = text.replace(PLACEHOLDERS[key], value)
    return json.loads(text)


def is_ready(obj: dict[str, Any]) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def ready_status(generation: int, node: str) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    status: dict[str, Any] = copy.deepcopy(TEMPLATES["status"])
    for condition in status.get("conditions") or []:
        condition["lastTransitionTime"] = now
        condition["observedGeneration"] = generation
    status["observedGeneration"] = generation
    if "workerNodes" in status:
        status["workerNodes"] = [node]
    return status


async def _create(make: Any) -> None:
    try:
        await make
    except ApiException as e:
        if e.status != 409:  # 409: made by an earlier attempt of this handler
            raise


@kopf.on.create(GROUP, VERSION, PLURAL)
async def create_workspace(
    name: str, namespace: str, uid: str, meta: kopf.Meta, patch: kopf.Patch, **_: Any
) -> None:
    assert clients.core is not None and clients.apps is not None and clients.custom is not None
    if uid not in claimed:
        await _create(
            clients.custom.create_cluster_custom_object(
                *CLAIMS, fill(TEMPLATES["claim_json"], name, namespace, uid)
            )
        )
        claimed.add(uid)
    claim = await clients.custom.get_cluster_custom_object(*CLAIMS, claim_name(name, namespace, uid))
    if not is_ready(claim):
        raise kopf.TemporaryError("waiting for the NodeClaim to be Ready", delay=POLL)
    if uid not in applied:
        for obj in fill(TEMPLATES["objects_json"], name, namespace, uid):
            if obj["kind"] == "Service":
                await _create(clients.core.create_namespaced_service(namespace, obj))
            else:
                await _create(clients.apps.create_namespaced_deployment(namespace, obj))
        applied.add(uid)
    deployment = await clients.apps.read_namespaced_deployment_status(name, namespace)
    if (deployment.status.ready_replicas or 0) < (deployment.spec.replicas or 1):
        raise kopf.TemporaryError("waiting for the inference pod to be ready", delay=POLL)
    node = str((claim.get("status") or {}).get("nodeName") or "")
    patch.status.update(ready_status(int(meta.get("generation") or 0), node))


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def delete_workspace(name: str, namespace: str, uid: str, **_: Any) -> None:
    """Delete the NodeClaim (the Service and Deployment go with their ownerReferences); kopf keeps a finalizer
    on every Workspace because this handler exists, as kaito-ctrl keeps its own."""
    assert clients.custom is not None
    try:
        await clients.custom.delete_cluster_custom_object(*CLAIMS, claim_name(name, namespace, uid))
    except ApiException as e:
        if e.status != 404:
            raise
    claimed.discard(uid)
    applied.discard(uid)
