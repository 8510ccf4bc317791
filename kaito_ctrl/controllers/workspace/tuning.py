"""The tuning Job: rendering per the reference shape, and reading its outcome for status."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

import yaml

from kaito_ctrl.api import labels as L
from kaito_ctrl.api.catalog import catalog
from kaito_ctrl.api.netcheck import download_names, egress_deny
from kaito_ctrl.controllers.workspace.hardening import hardening_values
from kaito_ctrl.controllers.workspace.inference_pod import (
    PULLER_ARGV0,
    PULLER_AUTH_DIR,
    PULLER_IMAGE,
    PULLER_SCRIPT,
)
from kaito_ctrl.controllers.workspace.spec import WorkspaceSpec
from kaito_ctrl.render import environment, render


def _replace_all(text: str, *pairs: tuple[str, str]) -> str:
    for old, new in pairs:
        if old not in text:
            raise AssertionError(f"puller script changed: {old!r} not found")
        text = text.replace(old, new)
    return text


# A tuning input image is data, as Kaito 0.12 specifies its images (any OCI image with /data, FROM scratch
# included: pkg/workspace/image/README.md): its layers are fetched and unpacked by the adapter puller's script,
# never run, so an image without a shell works; the seed era's images (a shell image with /data) work the same.
# Only the last step differs: /mnt/data is the data volume's mount point, so /data's contents are copied in.
DATA_PULLER_SCRIPT = _replace_all(
    PULLER_SCRIPT,
    ("cannot pull adapter image", "cannot pull tuning input image"),
    ("adapter image $1 has no /data", "tuning input image $1 has no /data"),
    ('mv -f "$work/rootfs/data" "$2"', 'cp -R "$work/rootfs/data/." "$2/"'),
)
PHI3_TARGET_MODULES = "k_proj,q_proj,v_proj,o_proj,gate_proj,down_proj,up_proj"
# Where training writes its results and the pusher reads them: the config's TrainingArguments.output_dir, under
# /mnt, default /mnt/output (Kaito's PrepareOutputDir, both eras).
OUTPUT_BASE_DIR = "/mnt"
DEFAULT_OUTPUT_DIR = "/mnt/output"


class InvalidTuningConfig(ValueError):
    """The Workspace's tuning config cannot be used as it is; the message says what to fix."""

    reason = "InvalidTuningConfig"


def output_dir(configmap: dict[str, Any]) -> str:
    """The results directory a tuning config asks for (``training_config.yaml`` -> ``training_config`` ->
    ``TrainingArguments`` -> ``output_dir``), as Kaito resolves it: relative paths are under /mnt, and it must be a
    directory below /mnt."""
    name = (configmap.get("metadata") or {}).get("name", "")
    raw = (configmap.get("data") or {}).get("training_config.yaml")
    if raw is None:
        raise InvalidTuningConfig(f"ConfigMap {name} has no training_config.yaml")
    try:
        doc = yaml.safe_load(raw) or {}
    except yaml.YAMLError as e:
        raise InvalidTuningConfig(f"ConfigMap {name}: training_config.yaml is not valid YAML: {e}") from None
    args = ((doc.get("training_config") or {}) if isinstance(doc, dict) else {}).get(
        "TrainingArguments"
    ) or {}
    value = args.get("output_dir", "") if isinstance(args, dict) else ""
    if not isinstance(value, str):
        raise InvalidTuningConfig(f"ConfigMap {name}: TrainingArguments.output_dir must be a string")
    if not value:
        return DEFAULT_OUTPUT_DIR
    path = posixpath.normpath(
        value if value.startswith(OUTPUT_BASE_DIR) else posixpath.join(OUTPUT_BASE_DIR, value)
    )
    if (
        path == OUTPUT_BASE_DIR
        or not path.startswith(OUTPUT_BASE_DIR + "/")
        or path in ("/mnt/config", "/mnt/data")
    ):
        raise InvalidTuningConfig(
            f"ConfigMap {name}: TrainingArguments.output_dir {value[:64]!r} must be a directory under /mnt "
            "(other than /mnt/config and /mnt/data), e.g. /mnt/output"
        )
    return path


def render_tuning(
    ws: WorkspaceSpec,
    *,
    node_requirements: list[dict[str, Any]],
    registry: str,
    cluster_cidrs: str = "",
    results_dir: str = DEFAULT_OUTPUT_DIR,
) -> list[dict[str, Any]]:
    """``results_dir``: the output directory of the Workspace's own tuning config (``output_dir``); the default
    config's is /mnt/output."""
    tuning = ws.tuning or {}
    preset = ws.preset
    assert preset is not None
    method = str(tuning.get("method") or "qlora").lower()
    sku = ws.sku
    gpus = sku.gpu_count if sku else 1
    source = tuning.get("input") or {}
    dest = tuning.get("output") or {}
    params_configmap = None if tuning.get("config") else f"{ws.name}-{method}-params"
    env = [{"name": "PYTORCH_CUDA_ALLOC_CONF", "value": "expandable_segments:True"}]
    if preset.family == "phi-3":
        env.append({"name": "DEFAULT_TARGET_MODULES", "value": PHI3_TARGET_MODULES})
    push_secret = dest.get("imagePushSecret")
    pull = sorted(set(source.get("imagePullSecrets") or []) | ({push_secret} if push_secret else set()))
    selector = {L.LABEL_WORKSPACE: ws.name}
    urls = [str(u) for u in source.get("urls") or []]
    deny_v4, deny_v6 = egress_deny(cluster_cidrs)
    values = {
        "name": ws.name,
        "namespace": ws.namespace,
        "labels": {**selector, "app.kubernetes.io/managed-by": "kaito-ctrl"},
        "selector": selector,
        "owner": ws.owner_reference,
        "revision": ws.revision,
        "node_requirements": node_requirements,
        "pull_secrets": [{"name": s} for s in pull],
        "weights_image": f"{registry}/kaito-{preset.name}:{preset.image_tag}" if preset.seed_era else None,
        "data_urls": urls,
        "data_outputs": [arg for name in download_names(urls) for arg in ("-o", name)],
        "egress": {
            "name": f"{ws.name}-egress",
            "deny_v4": deny_v4,
            "deny_v6": deny_v6,
        },
        **hardening_values(),
        "data_image": source.get("image"),
        "data_puller": data_puller(source),
        "data_volume": source.get("volumeSource"),
        "results_volume": dest.get("volumeSource"),
        "output_dir": results_dir,
        "push_image": dest.get("image"),
        "push_secret": push_secret,
        "preset": preset.name,
        "image": f"{registry}/{catalog().base_image[0]}:{catalog().base_image[1]}",
        "command": (
            "cd /workspace/tfs/ && python3 metrics_server.py & "
            f"accelerate launch --num_processes={gpus} /workspace/tfs/fine_tuning.py"
        ),
        "env": env,
        "gpus": str(gpus),
        "config_name": tuning.get("config") or params_configmap,
        "params_configmap": params_configmap,
        "training_config": environment().get_template("training-config.yaml.j2").render(method=method),
    }
    return render("tuning-job.yaml.j2", **values)


def data_puller(source: dict[str, Any]) -> dict[str, Any] | None:
    """The init container and credentials volume that put an input image's /data into /mnt/data, or None."""
    image = source.get("image")
    if not image:
        return None
    mounts: list[dict[str, Any]] = [{"name": "data", "mountPath": "/mnt/data"}]
    secrets = [str(s) for s in source.get("imagePullSecrets") or []]
    volume = None
    if secrets:
        # Each secret's .dockerconfigjson as a file the script tries in turn (then no credentials).
        volume = {
            "name": "docker-config-tuning-input",
            "projected": {
                "sources": [
                    {"secret": {"name": s, "items": [{"key": ".dockerconfigjson", "path": f"{s}.json"}]}}
                    for s in secrets
                ]
            },
        }
        mounts.append(
            {"name": volume["name"], "mountPath": f"{PULLER_AUTH_DIR}/tuning-input", "readOnly": True}
        )
    container = {
        "name": "data-puller",
        "image": PULLER_IMAGE,
        "command": [
            "/bin/sh",
            "-c",
            DATA_PULLER_SCRIPT,
            PULLER_ARGV0,
            str(image),
            "/mnt/data",
            PULLER_AUTH_DIR,
        ],
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": mounts,
    }
    return {"container": container, "volume": volume}


JOB_STARTED = "WorkspaceTuningJobStatusStarted"
JOB_PENDING = "WorkspaceTuningJobStatusPending"


@dataclass(frozen=True)
class JobOutcome:
    state: str  # Pending, Running, Succeeded, Failed
    reason: str
    message: str


def job_outcome(job: dict[str, Any] | None) -> JobOutcome:
    if job is None:
        return JobOutcome("Pending", JOB_PENDING, "the tuning job is being created")
    status = job.get("status") or {}
    for c in status.get("conditions") or []:
        if c.get("status") != "True":
            continue
        if c.get("type") in ("Complete", "SuccessCriteriaMet"):
            return JobOutcome("Succeeded", "workspaceSucceeded", "the tuning job completed")
        if c.get("type") in ("Failed", "FailureTarget"):
            detail = f"{c.get('reason', '')}: {c.get('message', '')}".strip(": ")
            return JobOutcome(
                "Failed", "workspaceFailed", f"tuning job failed: {detail or 'see the job pods'}"
            )
    if status.get("active") or status.get("ready"):
        return JobOutcome("Running", JOB_STARTED, "the tuning job is running")
    return JobOutcome("Pending", JOB_PENDING, "the tuning job is waiting for its pod")
