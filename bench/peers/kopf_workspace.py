"""A minimal Workspace operator written with kopf, for the P6 side-by-side benchmark.

It does the same API work kaito-ctrl does for a BYO inference Workspace: a finalizer, a Service and a
Deployment owned by the Workspace, and a status with conditions. It is deliberately minimal (no estimator,
no templates): any extra work would only make kopf look slower than it is.

Run: ``kopf run --standalone --all-namespaces bench/peers/kopf_workspace.py`` with KUBECONFIG set.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import kopf
from kubernetes_asyncio import client as k8s


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.enabled = False  # kaito-ctrl posts events only on transitions; keep the work comparable
    settings.watching.server_timeout = 300
    settings.batching.worker_limit = 64
    await k8s_config()


async def k8s_config() -> None:
    from kubernetes_asyncio import config

    await config.load_kube_config()


def _labels(name: str) -> dict[str, str]:
    return {"kaito.sh/workspace": name}


def _owner(body: kopf.Body) -> dict[str, Any]:
    return {
        "apiVersion": body["apiVersion"],
        "kind": body["kind"],
        "name": body["metadata"]["name"],
        "uid": body["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


@kopf.on.create("kaito.sh", "v1beta1", "workspaces")
async def create_workspace(body: kopf.Body, name: str, namespace: str, **_: Any) -> dict[str, Any]:
    async with k8s.ApiClient() as api:
        core, apps = k8s.CoreV1Api(api), k8s.AppsV1Api(api)
        svc = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "labels": _labels(name), "ownerReferences": [_owner(body)]},
            "spec": {
                "selector": _labels(name),
                "ports": [
                    {"name": "http", "port": 80, "targetPort": 5000},
                    {"name": "torch", "port": 29500, "targetPort": 29500},
                ],
            },
        }
        dep = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": _labels(name), "ownerReferences": [_owner(body)]},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": _labels(name)},
                "template": {
                    "metadata": {"labels": _labels(name)},
                    "spec": {"containers": [{"name": "model", "image": "registry.invalid/model:latest"}]},
                },
            },
        }
        await core.create_namespaced_service(namespace, svc)
        await apps.create_namespaced_deployment(namespace, dep)
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "conditions": [
            {
                "type": "ResourceReady",
                "status": "True",
                "reason": "Ready",
                "message": "",
                "lastTransitionTime": now,
            }
        ]
    }
