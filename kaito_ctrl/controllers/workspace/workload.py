"""Rendering and applying the inference workload and its Services (server-side apply: hand edits are
repaired on the next reconcile)."""

from __future__ import annotations

import copy
from typing import Any

from kaito_ctrl.api import labels as L
from kaito_ctrl.api import runtime_args as rt
from kaito_ctrl.api.catalog import catalog
from kaito_ctrl.controllers.workspace.hardening import hardening_values
from kaito_ctrl.controllers.workspace.inference_pod import pod_pieces, tolerations
from kaito_ctrl.controllers.workspace.spec import WorkspaceSpec
from kaito_ctrl.render import render


def server_context(ws: WorkspaceSpec, nodes: int) -> rt.ServerContext:
    preset = ws.preset
    assert preset is not None
    sku = ws.sku
    inference = ws.inference or {}
    return rt.ServerContext(
        runtime=rt.runtime_of(ws.annotations, preset),
        nodes=nodes,
        gpus=sku.gpu_count if sku else 1,
        gpu_memory_gib=sku.gpu_memory_gib if sku else 0.0,
        gpu_model=sku.gpu_model if sku else "",
        name=ws.name,
        namespace=ws.namespace,
        adapters=bool(inference.get("adapters")),
        config_file=bool(inference.get("config")),
    )


def inference_image(ws: WorkspaceSpec, runtime: str, registry: str) -> str:
    """presetOptions.image when given (a private image); a seed-era preset under transformers runs its own
    per-model image; everything else runs the base image and downloads the weights."""
    preset = ws.preset
    assert preset is not None
    options = ((ws.inference or {}).get("preset") or {}).get("presetOptions") or {}
    if options.get("image"):
        return str(options["image"])
    if rt.uses_seed_image(preset, runtime):
        return preset.image(registry, catalog().base_image)
    base = catalog().base_image
    return f"{registry}/{base[0]}:{base[1]}"


def render_inference(
    ws: WorkspaceSpec, *, nodes: int, node_requirements: list[dict[str, Any]], registry: str
) -> list[dict[str, Any]]:
    preset = ws.preset
    assert preset is not None
    ctx = server_context(ws, nodes)
    selector = {L.LABEL_WORKSPACE: ws.name}
    labels = {**selector, "app.kubernetes.io/managed-by": "kaito-ctrl"}
    multi = nodes > 1
    inference = ws.inference or {}
    options = (inference.get("preset") or {}).get("presetOptions") or {}
    pull_secrets = sorted(
        {
            s
            for a in inference.get("adapters") or []
            for s in (a.get("source") or {}).get("imagePullSecrets") or []
        }
        | set(options.get("imagePullSecrets") or [])
    )
    values = {
        "name": ws.name,
        "namespace": ws.namespace,
        "labels": labels,
        "selector": selector,
        "owner": ws.owner_reference,
        "revision": ws.revision,
        # The runtime on the pod too: what its server answers (the sandbox's stand-in reads it).
        "pod_annotations": {L.ANNOTATION_REVISION: ws.revision, L.ANNOTATION_RUNTIME: ctx.runtime},
        "kind": "StatefulSet" if multi else "Deployment",
        "replicas": nodes if multi else 1,
        "node_requirements": node_requirements,
        "image": inference_image(ws, ctx.runtime, registry),
        "image_pull_secrets": [{"name": s} for s in pull_secrets],
        "gpus": str(ctx.gpus),
        **pod_pieces(preset, ctx, inference, access_secret=options.get("modelAccessSecret")),
        **hardening_values(),
    }
    ports = service_ports(ws, runtime=ctx.runtime, seed_era=rt.uses_seed_image(preset, ctx.runtime))
    return render_services(ws, labels, selector, headless=multi, ports=ports) + render(
        "inference-workload.yaml.j2", **values
    )


def service_type(ws: WorkspaceSpec) -> str:
    return "LoadBalancer" if ws.annotations.get(L.ANNOTATION_ENABLE_LB) == "True" else "ClusterIP"


def service_ports(ws: WorkspaceSpec, *, runtime: str, seed_era: bool) -> list[dict[str, Any]]:
    """The Service's ports as Kaito sets them. Seed era (v0.3.2 GenerateServiceManifest): http 80 -> 5000 and
    torch 29500. Base image (v0.12): http, ray 6379 and the Ray dashboard 8265, plus vLLM's KV-cache events
    (5557) on a ClusterIP Service only: that ZMQ stream is unauthenticated, never published on a LoadBalancer."""
    http = {"name": "http", "port": 80, "targetPort": 5000, "protocol": "TCP"}
    if seed_era:
        return [http, {"name": "torch", "port": 29500, "targetPort": 29500, "protocol": "TCP"}]
    ports = [
        http,
        {"name": "ray", "port": 6379, "targetPort": 6379, "protocol": "TCP"},
        {"name": "dashboard", "port": 8265, "targetPort": 8265, "protocol": "TCP"},
    ]
    if runtime == "vllm" and service_type(ws) == "ClusterIP":
        ports.append({"name": "kv-events", "port": 5557, "targetPort": 5557, "protocol": "TCP"})
    return ports


def render_services(
    ws: WorkspaceSpec,
    labels: dict[str, str],
    selector: dict[str, str],
    *,
    headless: bool,
    ports: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """The Workspace's Service (LoadBalancer when annotated kaito.sh/enablelb: "True") and, for several nodes,
    the headless Service giving pods stable names."""
    return render(
        "inference-service.yaml.j2",
        name=ws.name, namespace=ws.namespace, labels=labels, selector=selector, ports=ports,
        owner=ws.owner_reference, service_type=service_type(ws), headless=headless,
        service_selector={**selector, "statefulset.kubernetes.io/pod-name": f"{ws.name}-0"} if headless else selector,
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
    # Kaito appends its default tolerations to the user's (v0.3.2 GenerateDeploymentManifestWithPodTemplate,
    # 0.12 GenerateManifestWithPodTemplate): a provisioned node carries the sku=gpu taint whatever its size.
    user_tolerations = list(spec.get("tolerations") or [])
    spec["tolerations"] = user_tolerations + [t for t in tolerations() if t not in user_tolerations]
    if node_requirements and "affinity" not in spec:
        spec["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": node_requirements}]
                }
            }
        }
    labels = {**selector, "app.kubernetes.io/managed-by": "kaito-ctrl"}
    # A user's pod template: the seed era's ports (Kaito gives template Workspaces the same Service).
    services = render_services(
        ws, labels, selector, headless=False, ports=service_ports(ws, runtime="", seed_era=True)
    )
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
