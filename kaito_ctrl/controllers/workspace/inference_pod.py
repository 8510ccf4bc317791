"""The preset inference pod's pieces, as Kaito renders them (pkg/workspace/inference/preset_inferences.go):
env, volumes and mounts, ports, probes, tolerations and the adapter puller init containers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kaito_ctrl.api import runtime_args as rt
from kaito_ctrl.api.catalog import Preset
from kaito_ctrl.controllers.workspace.hardening import DSHM_SIZE, HELPER_SECURITY_CONTEXT

PULLER_IMAGE = "mcr.microsoft.com/aks/skopeo:1.14.4-6"
PULLER_AUTH_DIR = "/root/.docker/config.d"

# Copies an adapter image's /data into a directory without running the image (adapter images hold data only):
# skopeo fetches the layers (trying each mounted registry credential, then none), tar unpacks them, and /data is
# moved into place. The image and the target arrive as positional arguments ($1, $2), never inside the script,
# so no user string is parsed by the shell.
PULLER_SCRIPT = r"""set -eu
work="$(mktemp -d)"
pulled=no
for auth in none $(find -L "$3" -type f 2>/dev/null || true); do
  opt=""
  [ "$auth" = none ] || opt="--authfile=$auth"
  if skopeo copy --dest-decompress $opt "docker://$1" "dir:$work/layout"; then pulled=yes; break; fi
done
[ "$pulled" = yes ] || { echo "cannot pull adapter image $1" >&2; exit 1; }
mkdir -p "$work/rootfs"
for digest in $(skopeo inspect --format '{{ range .Layers }}{{ slice . 7 }} {{ end }}' "dir:$work/layout"); do
  tar -x -f "$work/layout/$digest" -C "$work/rootfs"
done
[ -d "$work/rootfs/data" ] || { echo "adapter image $1 has no /data" >&2; exit 1; }
mv -f "$work/rootfs/data" "$2"
"""

ADAPTER_VOLUME = {"name": "adapter-volume", "emptyDir": {}}
ADAPTER_MOUNT = {"name": "adapter-volume", "mountPath": rt.ADAPTERS_DIR}


PULLER_ARGV0 = "puller"  # $0 of the script; the adapter image is $1, the argv element after it


def puller_image(container: Mapping[str, Any]) -> str | None:
    """The adapter image an adapter puller init container pulls (its argv ``$1``), or None for any other
    container."""
    command = container.get("command") or []
    if len(command) > 4 and command[3] == PULLER_ARGV0:
        return str(command[4])
    return None


def tolerations() -> list[dict[str, Any]]:
    return [
        {"effect": "NoSchedule", "operator": "Exists", "key": "nvidia.com/gpu"},
        {"effect": "NoSchedule", "value": "gpu", "key": "sku", "operator": "Equal"},
        {"effect": "NoSchedule", "key": "kubernetes.azure.com/scalesetpriority", "operator": "Equal",
         "value": "spot"},
    ]  # fmt: skip


def ports(runtime: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"name": "http", "containerPort": rt.SERVER_PORT}]
    if runtime == rt.VLLM:
        out.append({"name": "kv-events", "containerPort": rt.KV_EVENTS_PORT})
    return out


def _http(path: str) -> dict[str, Any]:
    return {"path": path, "port": rt.SERVER_PORT}


def probes(preset: Preset, ctx: rt.ServerContext) -> dict[str, dict[str, Any]]:
    """A startup probe that waits as long as the weights need to load (so liveness never kills a slow first
    load), then liveness every 10 s from the start and readiness after 30 s."""
    threshold = rt.startup_failure_threshold(preset.weights_gib)
    if rt.distributed(ctx):
        readiness = rt.health_check_command("readiness", ctx)
        return {
            "startup": {"exec": {"command": readiness}, "periodSeconds": 10, "timeoutSeconds": 1,
                        "failureThreshold": threshold},
            "liveness": {"exec": {"command": rt.health_check_command("liveness", ctx)},
                         "initialDelaySeconds": 60, "periodSeconds": 10, "timeoutSeconds": 5,
                         "failureThreshold": 1, "terminationGracePeriodSeconds": 1},
            "readiness": {"exec": {"command": readiness}, "periodSeconds": 10, "timeoutSeconds": 1,
                          "failureThreshold": 1},
        }  # fmt: skip
    path = rt.health_path(preset, ctx.runtime)
    return {
        "startup": {"httpGet": _http(path), "periodSeconds": 10, "failureThreshold": threshold},
        "liveness": {"httpGet": _http(path), "periodSeconds": 10, "failureThreshold": 3},
        "readiness": {"httpGet": _http(path), "initialDelaySeconds": 30, "periodSeconds": 10},
    }


def _adapters(inference: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        a
        for a in inference.get("adapters") or []
        if isinstance(a, dict) and (a.get("source") or {}).get("name")
    ]


def adapter_pieces(inference: Mapping[str, Any]) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
    """(init containers, volumes, main-container mounts, env) for the Workspace's adapters.

    Image adapters: an emptyDir at /mnt/adapter and one ``puller-<name>`` init container each, filling
    /mnt/adapter/<name>; the adapter's imagePullSecrets are projected for the puller only. Volume adapters are
    mounted at /mnt/adapter/<name> directly. A strength becomes env ``<name>=<strength>`` on the main container
    (the transformers server weights the merge with it; vLLM loads every subdirectory unweighted)."""
    inits: list[Any] = []
    volumes: list[Any] = []
    mounts: list[Any] = []
    env: list[Any] = []
    image_adapters = [a for a in _adapters(inference) if not a["source"].get("volumeSource")]
    volume_adapters = [a for a in _adapters(inference) if a["source"].get("volumeSource")]
    if image_adapters:
        volumes.append(ADAPTER_VOLUME)
        mounts.append(ADAPTER_MOUNT)
    for adapter in image_adapters:
        source = adapter["source"]
        name = str(source["name"])
        puller_mounts: list[Any] = [ADAPTER_MOUNT]
        secrets = [str(s) for s in source.get("imagePullSecrets") or []]
        if secrets:
            suffix = f"{name}-inference-adapter"
            volumes.append(
                {
                    "name": f"docker-config-{suffix}",
                    "projected": {
                        "sources": [
                            {
                                "secret": {
                                    "name": s,
                                    "items": [{"key": ".dockerconfigjson", "path": f"{s}.json"}],
                                }
                            }
                            for s in secrets
                        ]
                    },
                }
            )
            puller_mounts.append(
                {"name": f"docker-config-{suffix}", "mountPath": f"{PULLER_AUTH_DIR}/{suffix}"}
            )
        inits.append(
            {
                "name": f"puller-{name}",
                "image": PULLER_IMAGE,
                "command": ["/bin/sh", "-c", PULLER_SCRIPT, PULLER_ARGV0, str(source.get("image") or ""),
                            f"{rt.ADAPTERS_DIR}/{name}", PULLER_AUTH_DIR],
                "securityContext": HELPER_SECURITY_CONTEXT,
                # The script's last words ("cannot pull adapter image ...") become the container's termination
                # message, so `kubectl describe` and the Workspace condition can say why it failed.
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "volumeMounts": puller_mounts,
            }
        )  # fmt: skip
        if adapter.get("strength") is not None:
            env.append({"name": name, "value": str(adapter["strength"])})
    for adapter in volume_adapters:
        source = adapter["source"]
        name = str(source["name"])
        volumes.append({"name": f"adapter-volume-{name}", **source["volumeSource"]})
        mounts.append({"name": f"adapter-volume-{name}", "mountPath": f"{rt.ADAPTERS_DIR}/{name}"})
        if adapter.get("strength") is not None:
            env.append({"name": name, "value": str(adapter["strength"])})
    return inits, volumes, mounts, env


def pod_pieces(
    preset: Preset, ctx: rt.ServerContext, inference: Mapping[str, Any], *, access_secret: str | None
) -> dict[str, Any]:
    """Everything of the pod besides identity and scheduling, in Kaito's order (volumes: config, shared
    memory, adapters, weights; mounts: config, weights, shared memory, adapters)."""
    seed_image = rt.uses_seed_image(preset, ctx.runtime)
    volumes: list[Any] = []
    mounts: list[Any] = []
    config = inference.get("config")
    if config:
        volumes.append({"name": "config-volume", "configMap": {"name": str(config)}})
        mounts.append({"name": "config-volume", "mountPath": rt.CONFIG_DIR})
    if not seed_image:  # the base image downloads the weights here; seed images carry them
        mounts.append({"name": "model-weights-volume", "mountPath": rt.WEIGHTS_DIR})
    volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": DSHM_SIZE}})
    mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    env: list[Any] = []
    if ctx.runtime == rt.VLLM:
        # The base image ships no nvcc: keep vLLM off its JIT-compiled FlashInfer sampler and DeepGEMM kernels.
        env += [
            {"name": "VLLM_USE_FLASHINFER_SAMPLER", "value": "0"},
            {"name": "VLLM_USE_DEEP_GEMM", "value": "0"},
        ]
    if access_secret:
        env.append(
            {"name": "HF_TOKEN",
             "valueFrom": {"secretKeyRef": {"name": access_secret, "key": "HF_TOKEN", "optional": True}}}
        )  # fmt: skip
    inits, adapter_volumes, adapter_mounts, adapter_env = adapter_pieces(inference)
    volumes += adapter_volumes
    mounts += adapter_mounts
    env += adapter_env
    if not seed_image:
        volumes.append({"name": "model-weights-volume", "emptyDir": {}})
    if rt.distributed(ctx):
        env.append(
            {"name": "POD_INDEX",
             "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}}}
        )  # fmt: skip
    return {
        "command": rt.server_command(preset, ctx),
        "env": env,
        "ports": ports(ctx.runtime),
        "probes": probes(preset, ctx),
        "init_containers": inits,
        "volumes": volumes,
        "volume_mounts": mounts,
        "tolerations": tolerations(),
    }
