"""Rendering and applying the inference workload and its Services (server-side apply: hand edits are
repaired on the next reconcile)."""

from __future__ import annotations

import copy
from typing import Any

from kaito_ctrl.api import labels as L
from kaito_ctrl.api.catalog import catalog
from kaito_ctrl.controllers.workspace.hardening import hardening_values
from kaito_ctrl.controllers.workspace.spec import WorkspaceSpec
from kaito_ctrl.render import render

BIG_MODEL_GIB = 40  # above this, loading takes long enough to need a startup probe


def inference_command(ws: WorkspaceSpec, nodes: int, gpus: int) -> str:
    preset = ws.preset
    assert preset is not None
    runtime = ws.annotations.get(L.ANNOTATION_RUNTIME) or preset.runtime
    if runtime == "transformers":
        cmd = f"accelerate launch --num_processes 1 --num_machines {nodes} --gpu_ids all /workspace/tfs/inference_api.py"
        if nodes > 1:
            cmd = (
                f"torchrun --nnodes={nodes} --nproc_per_node={gpus} --node_rank=$(echo $HOSTNAME | sed 's/.*-//') "
                f"--master_addr={ws.name}-0.{ws.name}-headless --master_port=29500 /workspace/tfs/inference_api.py"
            )
    else:
        cmd = (
            f"python3 /workspace/vllm/inference_api.py --model={preset.model_id} --served-model-name={preset.name} "
            f"--tensor-parallel-size={gpus} --pipeline-parallel-size={nodes} --port=5000"
        )
    adapters = (ws.inference or {}).get("adapters") or []
    if adapters:
        cmd += " --enable-lora " + " ".join(
            f"--lora-modules {a['source']['name']}=/mnt/adapter/{a['source']['name']}:{a.get('strength', '1.0')}"
            for a in adapters
        )
    return cmd


def render_inference(
    ws: WorkspaceSpec, *, nodes: int, node_requirements: list[dict[str, Any]], registry: str
) -> list[dict[str, Any]]:
    preset = ws.preset
    assert preset is not None
    sku = ws.sku
    gpus = sku.gpu_count if sku else 1
    selector = {L.LABEL_WORKSPACE: ws.name}
    labels = {**selector, "app.kubernetes.io/managed-by": "kaito-ctrl"}
    multi = nodes > 1
    inference = ws.inference or {}
    adapters = [
        {"name": a["source"]["name"], "image": a["source"]["image"]}
        for a in inference.get("adapters") or []
        if a.get("source", {}).get("image")
    ]
    pull_secrets = sorted(
        {
            s
            for a in inference.get("adapters") or []
            for s in (a.get("source") or {}).get("imagePullSecrets") or []
        }
        | set(((inference.get("preset") or {}).get("presetOptions") or {}).get("imagePullSecrets") or [])
    )
    env: list[dict[str, Any]] = []
    secret = ((inference.get("preset") or {}).get("presetOptions") or {}).get("modelAccessSecret")
    if secret:
        env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": secret, "key": "HF_TOKEN"}}})
    big = preset.weights_gib >= BIG_MODEL_GIB
    image = ((inference.get("preset") or {}).get("presetOptions") or {}).get("image") or preset.image(
        registry, catalog().base_image
    )
    values = {
        "name": ws.name,
        "namespace": ws.namespace,
        "labels": labels,
        "selector": selector,
        "owner": ws.owner_reference,
        "revision": ws.revision,
        "kind": "StatefulSet" if multi else "Deployment",
        "replicas": nodes if multi else 1,
        "node_requirements": node_requirements,
        "image": image,
        "image_pull_secrets": [{"name": s} for s in pull_secrets],
        "command": inference_command(ws, nodes, gpus),
        "env": env,
        "gpus": str(gpus),
        "adapters": adapters,
        "config_map": inference.get("config"),
        "startup_probe": big,
        # Big models take minutes to load: let the startup probe wait up to 30 minutes before liveness counts.
        "startup_failure_threshold": 180,
        "liveness_delay": 0 if big else 600,
        "readiness_delay": 0 if big else 30,
        **hardening_values(),
    }
    return render_services(ws, labels, selector, headless=multi) + render(
        "inference-workload.yaml.j2", **values
    )


def render_services(
    ws: WorkspaceSpec, labels: dict[str, str], selector: dict[str, str], *, headless: bool
) -> list[dict[str, Any]]:
    """The Workspace's Service (LoadBalancer when annotated kaito.sh/enablelb: "True") and, for several nodes,
    the headless Service giving pods stable names."""
    service_type = "LoadBalancer" if ws.annotations.get(L.ANNOTATION_ENABLE_LB) == "True" else "ClusterIP"
    return render(
        "inference-service.yaml.j2",
        name=ws.name, namespace=ws.namespace, labels=labels, selector=selector,
        owner=ws.owner_reference, service_type=service_type, headless=headless,
    )  # fmt: skip


def render_template_workload(
    ws: WorkspaceSpec, *, node_requirements: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """A Deployment running the user's pod template, kept in sync with it (Kaito never updates these)."""
    selector = {L.LABEL_WORKSPACE: ws.name}
    template = copy.deepcopy((ws.inference or {}).get("template") or {})
    meta = template.setdefault("metadata", {})
    meta["labels"] = {**(meta.get("labels") or {}), **selector}
    meta["annotations"] = {**(meta.get("annotations") or {}), L.ANNOTATION_REVISION: ws.revision}
    spec = template.setdefault("spec", {})
    if node_requirements and "affinity" not in spec:
        spec["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": node_requirements}]
                }
            }
        }
    labels = {**selector, "app.kubernetes.io/managed-by": "kaito-ctrl"}
    services = render_services(ws, labels, selector, headless=False)
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": ws.name,
            "namespace": ws.namespace,
            "labels": labels,
            "annotations": {L.ANNOTATION_REVISION: ws.revision},
            "ownerReferences": [ws.owner_reference],
        },
        "spec": {"replicas": 1, "selector": {"matchLabels": selector}, "template": template},
    }
    return [*services, deployment]
