"""The model server a preset's image runs, per runtime: its command line, its probes' paths and timeouts, and
the flags each entry point accepts.

Kaito has two runtimes. ``vllm`` runs ``python3 /workspace/vllm/inference_api.py`` (vLLM's OpenAI server behind
Kaito's wrapper) on the base image and downloads the weights at start. ``transformers`` runs
``accelerate launch ... /workspace/tfs/inference_api.py``: on the base image with the weights downloaded too, or,
for the seed era's presets, on a per-model image whose weights are baked in and whose server answers
``POST /chat``. The flag sets below are the one place both the renderer and the sandbox's entry-point check read,
so a flag the renderer starts emitting is a flag the check accepts, and nothing else is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

from kaito_ctrl.api.catalog import GIB, Preset

VLLM = "vllm"
TRANSFORMERS = "transformers"
RUNTIMES = (VLLM, TRANSFORMERS)

SERVER_PORT = 5000
KV_EVENTS_PORT = 5557
RAY_PORT = 6379
TORCH_PORT = 29500

VLLM_SERVER = "/workspace/vllm/inference_api.py"
TFS_SERVER = "/workspace/tfs/inference_api.py"
LLAMA2_DIR = "/workspace/llama/llama-2"
RAY_SCRIPT = "/workspace/vllm/multi-node-serving.sh"
HEALTH_CHECK_SCRIPT = "/workspace/vllm/multi-node-health-check.py"
WEIGHTS_DIR = "/workspace/weights"  # download target of the base image's servers
SEED_WEIGHTS_DIR = "/workspace/tfs/weights"  # where the seed era's images bake their weights
ADAPTERS_DIR = "/mnt/adapter"
CONFIG_DIR = "/mnt/config"
CONFIG_FILE = "inference_config.yaml"
KV_EVENTS_CONFIG = """'{"enable_kv_cache_events":true}'"""

# GPU memory utilisation handed to vLLM; the 24 GiB A10 needs more headroom (Kaito's per-GPU-model override).
GPU_MEMORY_UTILIZATION = "0.84"
GPU_MEMORY_UTILIZATION_BY_MODEL = {"A10": "0.82"}

# Startup probe budget (Kaito vllm_model.go readinessTimeoutForModelSize): 15 min + 18 s per GiB of weights,
# never below 30 min nor above 180 min, probed every 10 s.
STARTUP_BASE_S = 15 * 60
STARTUP_PER_GIB_S = 18
STARTUP_MIN_S = 30 * 60
STARTUP_MAX_S = 180 * 60
PROBE_PERIOD_S = 10

ACCELERATE_DEFAULTS = {"num_processes": "1", "num_machines": "1", "machine_rank": "0", "gpu_ids": "all"}

# --- flags each entry point accepts ------------------------------------------------------------------------
ACCELERATE_FLAGS = frozenset(
    {"num_processes", "num_machines", "machine_rank", "gpu_ids", "main_process_ip", "main_process_port",
     "mixed_precision", "use_deepspeed"}
)  # fmt: skip
TORCHRUN_FLAGS = frozenset(
    {"nnodes", "nproc_per_node", "node_rank", "master_addr", "master_port", "max_restarts", "rdzv_id",
     "rdzv_backend", "rdzv_endpoint"}
)  # fmt: skip
# The seed-era text-generation server's ModelConfig (Kaito v0.3.2); `pipeline` has no default.
SEED_SERVER_FLAGS = frozenset(
    {"pipeline", "pretrained_model_name_or_path", "combination_type", "cache_dir", "from_tf", "force_download",
     "resume_download", "proxies", "output_loading_info", "allow_remote_files", "revision", "trust_remote_code",
     "load_in_4bit", "load_in_8bit", "torch_dtype", "device_map"}
)  # fmt: skip
# The base image's transformers server (Kaito v0.12 text-generation/inference_api.py).
TRANSFORMERS_SERVER_FLAGS = frozenset(
    {"pipeline", "pretrained_model_name_or_path", "combination_type", "cache_dir", "force_download", "proxies",
     "output_loading_info", "allow_remote_files", "revision", "trust_remote_code", "torch_dtype", "device_map",
     "chat_template", "served_model_name"}
)  # fmt: skip
LLAMA2_SERVER_FLAGS = frozenset({"max_seq_len", "max_batch_size"})
# vLLM's engine flags Kaito's renderer and presets use, plus the wrapper's own (vllm/inference_api.py).
VLLM_SERVER_FLAGS = frozenset(
    {"model", "code-revision", "download-dir", "served-model-name", "max-model-len", "gpu-memory-utilization",
     "kv-events-config", "compilation-config.pass_config.fuse_allreduce_rms", "dtype", "trust-remote-code",
     "load_format", "config_format", "tokenizer_mode", "load-format", "tool-call-parser",
     "enable-auto-tool-choice", "reasoning-parser", "chat-template", "enable-lora", "lora-modules",
     "tensor-parallel-size", "pipeline-parallel-size", "data-parallel-size", "distributed-executor-backend",
     "port", "performance-mode", "allow-remote-files", "kv-cache-dtype", "enable-expert-parallel",
     "kaito-config-file", "kaito-adapters-dir", "kaito-max-probe-steps",
     "kaito-kv-cache-cpu-memory-utilization", "kaito-disable-rate-limit"}
)  # fmt: skip
RAY_LEADER_FLAGS = frozenset({"ray_cluster_size", "ray_port"})
RAY_WORKER_FLAGS = frozenset({"ray_address", "ray_port"})


@cache
def _data() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(
        resources.files("kaito_ctrl.api").joinpath("runtime_args.yaml").read_text()
    )
    return loaded


def runtime_of(annotations: Mapping[str, str], preset: Preset) -> str:
    """The runtime a Workspace runs: its ``kaito.sh/runtime`` annotation, else the preset's default."""
    chosen = annotations.get("kaito.sh/runtime")
    return chosen if chosen in RUNTIMES else preset.runtime


def served_model_name(preset: Preset) -> str:
    """The model name clients send (Kaito: the Hugging Face id's last segment, lowercased)."""
    return preset.model_id.rsplit("/", 1)[-1].lower()


def uses_seed_image(preset: Preset, runtime: str) -> bool:
    """A seed-era preset under transformers runs its own image (weights baked in, ``POST /chat``)."""
    return runtime == TRANSFORMERS and preset.seed_era


SYSTEM_DISK_GIB = 80  # Kaito's generator: node disk = int(weights + 80 GiB) for images and scratch
TUNING_DISK_GIB = 1024  # Kaito's default node disk where no inference preset decides it (tuning included)


def node_disk_gib(preset: Preset | None, runtime: str, tuning: bool = False) -> int:
    """The node disk a Workspace's claim requests, as Kaito decides it: a seed-era image's own requirement
    (v0.3.2), else weights + 80 GiB truncated to whole GiB (v0.12 generator); 1024 GiB for tuning or no preset."""
    if tuning or preset is None:
        return TUNING_DISK_GIB
    if uses_seed_image(preset, runtime):
        seed = _data()["seed"]["disk_gib"].get(preset.name)
        if seed:
            return int(seed)
    return int(preset.weights_gib + SYSTEM_DISK_GIB)


def supports(preset: Preset, runtime: str) -> bool:
    if runtime == VLLM:
        return True  # Kaito generates vLLM parameters for every catalog model
    return (
        preset.name in _data()["transformers"]["presets"]
        or preset.name in _data()["seed"]["presets"]
        or preset.name in _data()["seed"]["torchrun"]
    )


def runtime_refusals(preset: Preset, runtime: str, inference: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What the chosen runtime cannot run, as (field, message): vLLM takes no adapter strength (it loads every
    adapter unweighted) and transformers runs only the presets Kaito gives transformers parameters."""
    problems: list[tuple[str, str]] = []
    if runtime == VLLM:
        for i, adapter in enumerate(inference.get("adapters") or []):
            if isinstance(adapter, Mapping) and adapter.get("strength") is not None:
                problems.append(
                    (
                        f"inference.adapters[{i}].strength",
                        "vLLM does not support adapter strength: remove it, or set the annotation "
                        "kaito.sh/runtime: transformers",
                    )
                )
    elif not supports(preset, runtime):
        problems.append(
            (
                "metadata.annotations[kaito.sh/runtime]",
                f"model {preset.name} does not support inference with the transformers runtime; use vllm",
            )
        )
    return problems


@dataclass(frozen=True)
class ServerContext:
    """Where the server runs: what the command line and probes depend on besides the preset."""

    runtime: str
    nodes: int
    gpus: int  # per node
    gpu_memory_gib: float  # per node, all GPUs
    gpu_model: str
    name: str
    namespace: str
    adapters: bool = False
    config_file: bool = False

    @property
    def leader_host(self) -> str:
        return f"{self.name}-0.{self.name}-headless.{self.namespace}.svc.cluster.local"


def distributed(ctx: ServerContext) -> bool:
    """vLLM spans nodes with Ray; transformers never does (the seed's llama-2 torchrun aside)."""
    return ctx.runtime == VLLM and ctx.nodes > 1


def flags(params: Mapping[str, str]) -> str:
    """``--key=value`` (``--key`` for an empty value), sorted so the command is stable. Kaito builds the same
    flags from a Go map, whose order varies between runs; order means nothing to the servers."""
    return " ".join(f"--{k}" if v == "" else f"--{k}={v}" for k, v in sorted(params.items()))


def vllm_params(preset: Preset, ctx: ServerContext) -> dict[str, str]:
    data = _data()["vllm"]
    params: dict[str, str] = {**data["defaults"], **(data["presets"].get(preset.name) or {})}
    params.update(
        {
            "model": preset.model_id,
            "download-dir": WEIGHTS_DIR,
            "served-model-name": served_model_name(preset),
            "max-model-len": "auto",
            "gpu-memory-utilization": GPU_MEMORY_UTILIZATION_BY_MODEL.get(
                ctx.gpu_model, GPU_MEMORY_UTILIZATION
            ),
            "kv-events-config": KV_EVENTS_CONFIG,
            "compilation-config.pass_config.fuse_allreduce_rms": "False",
        }
    )
    if ctx.adapters:
        params["enable-lora"] = ""
    if ctx.config_file:
        params["kaito-config-file"] = f"{CONFIG_DIR}/{CONFIG_FILE}"
    # Parallelism: weights under half of one GPU -> one replica per GPU (data parallel); otherwise shard across
    # the node's GPUs (tensor parallel), and across nodes in pipeline stages over Ray. LMCache's CPU offload
    # does not work with data or pipeline parallelism.
    fits_half_gpu = ctx.gpus > 1 and preset.weights_gib * GIB * ctx.gpus * 2 < ctx.gpu_memory_gib * GIB
    if not distributed(ctx) and fits_half_gpu:
        params.update(
            {"data-parallel-size": str(ctx.gpus), "tensor-parallel-size": "1",
             "kaito-kv-cache-cpu-memory-utilization": "0"}
        )  # fmt: skip
        return params
    params["tensor-parallel-size"] = str(ctx.gpus)
    if distributed(ctx):
        params.update(
            {"pipeline-parallel-size": str(ctx.nodes), "distributed-executor-backend": "ray",
             "kaito-kv-cache-cpu-memory-utilization": "0"}
        )  # fmt: skip
    return params


def vllm_command(preset: Preset, ctx: ServerContext) -> str:
    server = f"python3 {VLLM_SERVER} {flags(vllm_params(preset, ctx))}"
    if not distributed(ctx):
        return server
    leader = f"{RAY_SCRIPT} leader {flags({'ray_cluster_size': str(ctx.nodes), 'ray_port': str(RAY_PORT)})}"
    worker = f"{RAY_SCRIPT} worker {flags({'ray_address': ctx.leader_host, 'ray_port': str(RAY_PORT)})}"
    return f'if [ "${{POD_INDEX}}" = "0" ]; then {leader}; {server}; else {worker}; fi'


def transformers_params(preset: Preset, ctx: ServerContext) -> dict[str, str]:
    if uses_seed_image(preset, ctx.runtime):
        params = dict(_data()["seed"]["presets"][preset.name])
        params["pretrained_model_name_or_path"] = SEED_WEIGHTS_DIR
        return params
    params = dict(_data()["transformers"]["presets"][preset.name])
    params.update(
        {"pretrained_model_name_or_path": preset.model_id, "allow_remote_files": "",
         "served_model_name": served_model_name(preset)}
    )  # fmt: skip
    return params


def torchrun_command(preset: Preset, ctx: ServerContext) -> str:
    """The seed era's llama-2 images: Meta's server under torchrun, one process per GPU of the model."""
    spec = _data()["seed"]["torchrun"][preset.name]
    multi = ctx.nodes > 1
    torch = {
        "nnodes": str(ctx.nodes),
        "nproc_per_node": str(max(int(spec["world_size"]) // ctx.nodes, 1)),
        "node_rank": "$(echo $HOSTNAME | grep -o '[^-]*$')" if multi else "0",
        "master_addr": ctx.leader_host if multi else "localhost",
        "master_port": str(TORCH_PORT),
        "max_restarts": "3",
        "rdzv_id": "job",
        "rdzv_backend": "c10d",
        "rdzv_endpoint": f"{ctx.leader_host}:{TORCH_PORT}",
    }
    return f"cd {LLAMA2_DIR} && torchrun {flags(torch)} inference_api.py {flags(spec['params'])}"


def transformers_command(preset: Preset, ctx: ServerContext) -> str:
    if uses_seed_image(preset, ctx.runtime) and preset.name in _data()["seed"]["torchrun"]:
        return torchrun_command(preset, ctx)
    return f"accelerate launch {flags(ACCELERATE_DEFAULTS)} {TFS_SERVER} {flags(transformers_params(preset, ctx))}"


def server_command(preset: Preset, ctx: ServerContext) -> str:
    """The shell command the main container runs (``/bin/sh -c``). Only catalog values and the Workspace's
    validated name and namespace reach it; nothing a user types freely."""
    if ctx.runtime == TRANSFORMERS:
        return transformers_command(preset, ctx)
    return vllm_command(preset, ctx)


def health_path(preset: Preset, runtime: str) -> str:
    """The seed era's server answers ``/healthz``; every later one ``/health``."""
    return "/healthz" if uses_seed_image(preset, runtime) else "/health"


def startup_timeout_s(weights_gib: float) -> float:
    return min(max(STARTUP_BASE_S + weights_gib * STARTUP_PER_GIB_S, STARTUP_MIN_S), STARTUP_MAX_S)


def startup_failure_threshold(weights_gib: float) -> int:
    """Startup probe failures allowed: the whole loading budget, in probe periods (rounded up)."""
    return math.ceil(startup_timeout_s(weights_gib) / PROBE_PERIOD_S)


def health_check_command(kind: str, ctx: ServerContext) -> list[str]:
    """Multi-node probes: only the leader serves HTTP, so every pod asks Ray (liveness) or the leader's server
    (readiness) through Kaito's health-check script."""
    port = {"liveness": {"ray-port": str(RAY_PORT)}, "readiness": {"vllm-port": str(SERVER_PORT)}}[kind]
    args = flags({"leader-address": ctx.leader_host, **port})
    return ["/bin/sh", "-c", f"python3 {HEALTH_CHECK_SCRIPT} {kind} {args}"]
