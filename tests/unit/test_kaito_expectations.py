"""The rendered inference workload against what Kaito's own unit tests expect.

Each case names the Kaito test (kaito-project/kaito, read at v0.12 / Aug 2026) whose expectation it re-types as
data. Kaito's tests use made-up models ("test-model", "test-model-download-a100"); each case here puts a
catalog preset of the same shape (size against the GPUs, download at run time, access secret) in its place and
compares the same things: the command's entry point and its flags (as a set: Kaito builds them from a Go map,
so its order varies), env, probes, resources, volumes, tolerations and image pull secrets. Preset-specific
flags (formats, parsers, chat templates) come from Kaito's generator rules, cited per family.
"""

from __future__ import annotations

import shlex
from typing import Any

import pytest

from kaito_ctrl.api import runtime_args as rt
from kaito_ctrl.api.catalog import catalog
from kaito_ctrl.api.validation import validate_workspace
from kaito_ctrl.controllers.workspace.spec import WorkspaceSpec
from kaito_ctrl.controllers.workspace.workload import render_inference

REGISTRY = "test-registry"
KV_EVENTS = """'{"enable_kv_cache_events":true}'"""
# pkg/workspace/inference/preset_inferences_test.go adds these two to every vLLM expectation.
VLLM_ALWAYS = {"compilation-config.pass_config.fuse_allreduce_rms": "False", "kv-events-config": KV_EVENTS}
FLASHINFER = {"name": "VLLM_USE_FLASHINFER_SAMPLER", "value": "0"}
DEEP_GEMM = {"name": "VLLM_USE_DEEP_GEMM", "value": "0"}
HF_TOKEN = {
    "name": "HF_TOKEN",
    "valueFrom": {"secretKeyRef": {"name": "test-secret", "key": "HF_TOKEN", "optional": True}},
}
POD_INDEX = {
    "name": "POD_INDEX",
    "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}},
}
# Kaito's generator defaults for a catalog model (generator.go FinalizeParams, vllm_model.go).
GENERATED = {"load_format": "auto", "config_format": "auto", "tokenizer_mode": "auto", "trust-remote-code": "",
             "dtype": "bfloat16"}  # fmt: skip


def workspace(
    preset: str,
    instance_type: str,
    *,
    runtime: str | None = None,
    secret: str | None = None,
    adapters: list[dict[str, Any]] | None = None,
    config: str | None = None,
) -> WorkspaceSpec:
    meta: dict[str, Any] = {"name": "testWorkspace", "namespace": "kaito", "uid": "u"}
    if runtime:
        meta["annotations"] = {"kaito.sh/runtime": runtime}
    preset_spec: dict[str, Any] = {"name": preset}
    if secret:
        preset_spec["presetOptions"] = {"modelAccessSecret": secret}
    inference: dict[str, Any] = {"preset": preset_spec}
    if adapters:
        inference["adapters"] = adapters
    if config:
        inference["config"] = config
    return WorkspaceSpec(
        {"apiVersion": "kaito.sh/v1beta1", "kind": "Workspace", "metadata": meta,
         "resource": {"instanceType": instance_type}, "inference": inference}
    )  # fmt: skip


def pod(ws: WorkspaceSpec, nodes: int = 1) -> dict[str, Any]:
    spec: dict[str, Any] = render_inference(ws, nodes=nodes, node_requirements=[], registry=REGISTRY)[-1][
        "spec"
    ]
    return dict(spec["template"]["spec"])


def command_parts(script: str) -> tuple[str, dict[str, str]]:
    """Kaito's toParameterMap: the text before the first flag, and the flags as a map."""
    words = shlex.split(script, posix=False)
    head = " ".join(w for w in words if not w.startswith("--"))
    params: dict[str, str] = {}
    for w in words:
        if w.startswith("--"):
            key, _, value = w[2:].partition("=")
            params[key] = value
    return head, params


ADAPTER = {"source": {"name": "Adapter-1", "image": "fake.kaito.com/kaito-image:0.0.1",
                      "imagePullSecrets": ["fake-secret"]}, "strength": "0.5"}  # fmt: skip


# (case, Kaito TestGeneratePresetInference case, workspace, nodes, expected entry point, flags, env)
GENERATE_PRESET_INFERENCE = [
    (
        "vllm-1gpu",
        "test-model/vllm",
        workspace("phi-4", "Standard_NC24ads_A100_v4"),
        1,
        "python3 /workspace/vllm/inference_api.py",
        {
            **VLLM_ALWAYS,
            **GENERATED,
            "gpu-memory-utilization": "0.84",
            "max-model-len": "auto",
            "tensor-parallel-size": "1",
            "served-model-name": "phi-4",
            "model": "microsoft/phi-4",
            "download-dir": "/workspace/weights",
        },
        [FLASHINFER, DEEP_GEMM],
    ),
    (
        "vllm-user-config",
        "test-model/vllm-with-user-config",
        workspace("phi-4", "Standard_NC24ads_A100_v4", config="my-inference-config"),
        1,
        "python3 /workspace/vllm/inference_api.py",
        {
            **VLLM_ALWAYS,
            **GENERATED,
            "gpu-memory-utilization": "0.84",
            "max-model-len": "auto",
            "tensor-parallel-size": "1",
            "served-model-name": "phi-4",
            "model": "microsoft/phi-4",
            "download-dir": "/workspace/weights",
            "kaito-config-file": "/mnt/config/inference_config.yaml",
        },
        [FLASHINFER, DEEP_GEMM],
    ),
    (
        "vllm-adapters",
        "test-model-with-adapters/vllm",
        workspace("phi-4", "Standard_NC24ads_A100_v4", adapters=[ADAPTER]),
        1,
        "python3 /workspace/vllm/inference_api.py",
        {
            **VLLM_ALWAYS,
            **GENERATED,
            "enable-lora": "",
            "gpu-memory-utilization": "0.84",
            "max-model-len": "auto",
            "tensor-parallel-size": "1",
            "served-model-name": "phi-4",
            "model": "microsoft/phi-4",
            "download-dir": "/workspace/weights",
        },
        [FLASHINFER, DEEP_GEMM, {"name": "Adapter-1", "value": "0.5"}],
    ),
    (
        "transformers-adapters",
        "test-model-with-adapters",
        workspace("phi-4", "Standard_NC24ads_A100_v4", runtime="transformers", adapters=[ADAPTER]),
        1,
        "accelerate launch /workspace/tfs/inference_api.py",
        # transformer_runtime_inference_parameters.go phi family + the download-at-runtime flags.
        {
            "num_processes": "1",
            "num_machines": "1",
            "machine_rank": "0",
            "gpu_ids": "all",
            "torch_dtype": "auto",
            "pipeline": "text-generation",
            "trust_remote_code": "",
            "pretrained_model_name_or_path": "microsoft/phi-4",
            "allow_remote_files": "",
            "served_model_name": "phi-4",
        },
        [{"name": "Adapter-1", "value": "0.5"}],
    ),
    (
        "vllm-download-2gpu-a100",
        "test-model-download-a100/vllm",
        workspace("qwen2.5-coder-32b-instruct", "Standard_NC48ads_A100_v4", secret="test-secret"),
        1,
        "python3 /workspace/vllm/inference_api.py",
        # generator.go: qwen2.5 prefix -> hermes tool parser and chat template.
        {
            **VLLM_ALWAYS,
            **GENERATED,
            "gpu-memory-utilization": "0.84",
            "max-model-len": "auto",
            "tensor-parallel-size": "2",
            "served-model-name": "qwen2.5-coder-32b-instruct",
            "model": "Qwen/Qwen2.5-Coder-32B-Instruct",
            "download-dir": "/workspace/weights",
            "tool-call-parser": "hermes",
            "enable-auto-tool-choice": "",
            "chat-template": "/workspace/chat_templates/tool-chat-hermes.jinja",
        },
        [FLASHINFER, DEEP_GEMM, HF_TOKEN],
    ),
    (
        "transformers-download",
        "test-model-download/transformers",
        workspace("phi-4", "Standard_NC24ads_A100_v4", runtime="transformers", secret="test-secret"),
        1,
        "accelerate launch /workspace/tfs/inference_api.py",
        {
            "num_processes": "1",
            "num_machines": "1",
            "machine_rank": "0",
            "gpu_ids": "all",
            "torch_dtype": "auto",
            "pipeline": "text-generation",
            "trust_remote_code": "",
            "pretrained_model_name_or_path": "microsoft/phi-4",
            "allow_remote_files": "",
            "served_model_name": "phi-4",
        },
        [HF_TOKEN],
    ),
]


@pytest.mark.parametrize(
    ("case", "kaito_case", "ws", "nodes", "entry", "expected", "env"),
    GENERATE_PRESET_INFERENCE,
    ids=[c[0] for c in GENERATE_PRESET_INFERENCE],
)
def test_single_node_matches_kaito_generate_preset_inference(
    case: str, kaito_case: str, ws: WorkspaceSpec, nodes: int, entry: str, expected: dict[str, str], env: Any
) -> None:
    spec = pod(ws, nodes)
    container = spec["containers"][0]
    assert container["command"][:2] == ["/bin/sh", "-c"]
    head, params = command_parts(container["command"][2])
    assert head == entry, kaito_case
    assert params == expected, kaito_case
    assert container["env"] == env, kaito_case
    assert container["image"] == f"{REGISTRY}/kaito-base:0.5.0", "every preset runs on the base image"
    gpus = str(ws.sku.gpu_count) if ws.sku else "1"
    assert container["resources"] == {
        "requests": {"nvidia.com/gpu": gpus},
        "limits": {"nvidia.com/gpu": gpus},
    }
    volumes = [v["name"] for v in spec["volumes"]]
    if "adapters" in (ws.inference or {}):
        # Kaito: the adapter volume, the puller's projected pull secret, and the pod's pull secrets.
        assert "adapter-volume" in volumes and "docker-config-Adapter-1-inference-adapter" in volumes
        assert spec["imagePullSecrets"] == [{"name": "fake-secret"}]
        assert [c["name"] for c in spec["initContainers"]] == ["puller-Adapter-1"]
    if (ws.inference or {}).get("config"):
        assert {"name": "config-volume", "configMap": {"name": "my-inference-config"}} in spec["volumes"]
        assert {"name": "config-volume", "mountPath": "/mnt/config"} in container["volumeMounts"]


def test_distributed_vllm_matches_kaito_test_model_download_distributed() -> None:
    """preset_inferences_test.go TestGeneratePresetInference "test-model-download-distributed/vllm": four A10
    nodes -> 0.82 memory utilisation, pipeline parallel 4 x tensor parallel 1 over Ray, the leader/worker
    if/else on POD_INDEX, and the POD_INDEX env."""
    ws = workspace("qwen2.5-coder-32b-instruct", "Standard_NV36ads_A10_v5", secret="test-secret")
    container = pod(ws, nodes=4)["containers"][0]
    script = container["command"][2]
    leader = "/workspace/vllm/multi-node-serving.sh leader --ray_cluster_size=4 --ray_port=6379"
    worker = (
        "/workspace/vllm/multi-node-serving.sh worker "
        "--ray_address=testWorkspace-0.testWorkspace-headless.kaito.svc.cluster.local --ray_port=6379"
    )
    assert script.startswith(
        f'if [ "${{POD_INDEX}}" = "0" ]; then {leader}; python3 /workspace/vllm/inference_api.py '
    )
    assert script.endswith(f"; else {worker}; fi")
    server = next(part for part in script.split("; ") if "inference_api.py" in part)
    _, params = command_parts(server)
    assert {k: params[k] for k in ("distributed-executor-backend", "gpu-memory-utilization", "max-model-len",
                                   "kaito-kv-cache-cpu-memory-utilization", "pipeline-parallel-size",
                                   "tensor-parallel-size", "model", "download-dir")} == {
        "distributed-executor-backend": "ray", "gpu-memory-utilization": "0.82", "max-model-len": "auto",
        "kaito-kv-cache-cpu-memory-utilization": "0", "pipeline-parallel-size": "4", "tensor-parallel-size": "1",
        "model": "Qwen/Qwen2.5-Coder-32B-Instruct", "download-dir": "/workspace/weights",
    }  # fmt: skip
    assert "data-parallel-size" not in params
    assert container["env"] == [FLASHINFER, DEEP_GEMM, HF_TOKEN, POD_INDEX]


def test_distributed_probes_match_kaito_get_distributed_inference_probe() -> None:
    """preset_inferences_test.go TestGetDistributedInferenceProbe (Liveness, Readiness) and
    SetDistributedInferenceProbe's timings: liveness waits 60 s, 5 s timeout, one failure, grace 1 s."""
    ws = WorkspaceSpec(
        {"metadata": {"name": "test-workspace", "namespace": "test-ns", "uid": "u"},
         "resource": {"instanceType": "Standard_NC96ads_A100_v4"},
         "inference": {"preset": {"name": "llama-3.3-70b-instruct"}}}
    )  # fmt: skip
    container = pod(ws, nodes=2)["containers"][0]
    leader = "test-workspace-0.test-workspace-headless.test-ns.svc.cluster.local"
    live, ready = container["livenessProbe"], container["readinessProbe"]
    assert live["exec"]["command"] == ["/bin/sh", "-c", "python3 /workspace/vllm/multi-node-health-check.py liveness "
                                       f"--leader-address={leader} --ray-port=6379"]  # fmt: skip
    assert (live["initialDelaySeconds"], live["periodSeconds"], live["timeoutSeconds"]) == (60, 10, 5)
    assert (live["failureThreshold"], live["terminationGracePeriodSeconds"]) == (1, 1)
    assert ready["exec"]["command"] == ["/bin/sh", "-c", "python3 /workspace/vllm/multi-node-health-check.py "
                                        f"readiness --leader-address={leader} --vllm-port=5000"]  # fmt: skip
    assert (ready.get("initialDelaySeconds", 0), ready["periodSeconds"], ready["timeoutSeconds"]) == (
        0,
        10,
        1,
    )
    startup = container["startupProbe"]
    assert startup["exec"] == ready["exec"] and startup["timeoutSeconds"] == 1 and "httpGet" not in startup


@pytest.mark.parametrize(
    ("weights_gib", "minutes"),
    [
        # presets/workspace/models/vllm_model_test.go TestReadinessTimeoutForModelSize
        (641.30, 180),  # "very large model is capped"
        (554.32, 180),  # "large model is capped"
        (150, 60),  # "150GiB model gets one hour"
        (100, 45),  # "medium model scales linearly (integer GiB)"
        (60, 33),  # "small-medium model scales linearly (integer GiB)"
        (7.15, 30),  # "small model is floored"
    ],
)
def test_startup_budget_matches_kaito_readiness_timeout(weights_gib: float, minutes: int) -> None:
    assert rt.startup_timeout_s(weights_gib) == pytest.approx(minutes * 60)


@pytest.mark.parametrize(
    ("weights_gib", "threshold"),
    [
        # preset_inferences_test.go TestBuildStartupProbe: 30 min -> 180, 45 min -> 270, 30 min 5 s -> 181.
        (7.12, 180),
        (100, 270),
        ((1805 - 900) / 18, 181),
    ],
)
def test_startup_threshold_matches_kaito_build_startup_probe(weights_gib: float, threshold: int) -> None:
    assert rt.startup_failure_threshold(weights_gib) == threshold


def test_http_probes_match_kaito_defaults() -> None:
    """preset_inferences.go defaultLivenessProbe / defaultReadinessProbe / buildStartupProbe."""
    container = pod(workspace("phi-4", "Standard_NC24ads_A100_v4"))["containers"][0]
    health = {"path": "/health", "port": 5000}
    assert container["startupProbe"] == {"httpGet": health, "periodSeconds": 10, "failureThreshold": 180}
    assert container["livenessProbe"] == {"httpGet": health, "periodSeconds": 10, "failureThreshold": 3}
    assert container["readinessProbe"] == {"httpGet": health, "initialDelaySeconds": 30, "periodSeconds": 10}
    assert container["ports"] == [
        {"name": "http", "containerPort": 5000},
        {"name": "kv-events", "containerPort": 5557},
    ]


def test_volumes_tolerations_match_kaito() -> None:
    """TestDefaultTolerations (Azure: GPU, sku=gpu, spot) and GenerateInferencePodSpec's volumes: shared
    memory at /dev/shm and the weights emptyDir at /workspace/weights."""
    spec = pod(workspace("phi-4", "Standard_NC24ads_A100_v4"))
    assert spec["tolerations"] == [
        {"effect": "NoSchedule", "operator": "Exists", "key": "nvidia.com/gpu"},
        {"effect": "NoSchedule", "value": "gpu", "key": "sku", "operator": "Equal"},
        {
            "effect": "NoSchedule",
            "key": "kubernetes.azure.com/scalesetpriority",
            "operator": "Equal",
            "value": "spot",
        },
    ]
    # Deliberately different: a size limit on /dev/shm (docs/security.md), otherwise Kaito's volumes.
    assert spec["volumes"] == [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}},
        {"name": "model-weights-volume", "emptyDir": {}},
    ]
    assert spec["containers"][0]["volumeMounts"] == [
        {"name": "model-weights-volume", "mountPath": "/workspace/weights"},
        {"name": "dshm", "mountPath": "/dev/shm"},
    ]


@pytest.mark.parametrize(
    ("kaito_test", "preset", "instance_type", "nodes", "present", "absent"),
    [
        # pkg/model/interface_test.go
        ("TestGetInferenceCommandVLLMDataParallelism", "phi-3.5-mini-instruct", "Standard_NC96ads_A100_v4", 1,
         {"data-parallel-size": "4", "tensor-parallel-size": "1", "kaito-kv-cache-cpu-memory-utilization": "0"},
         ()),
        ("TestGetInferenceCommandVLLMTensorParallelismWhenModelLarge", "qwen2.5-coder-32b-instruct",
         "Standard_NC96ads_A100_v4", 1, {"tensor-parallel-size": "4"}, ("data-parallel-size",)),
        ("TestGetInferenceCommandVLLMMultiNodePPAndTP", "llama-3.3-70b-instruct", "Standard_NC96ads_A100_v4", 2,
         {"tensor-parallel-size": "4", "pipeline-parallel-size": "2"}, ("data-parallel-size",)),
        ("TestGetInferenceCommandVLLMSmallModelOnMultiNodeUsesTP", "phi-3.5-mini-instruct",
         "Standard_NC96ads_A100_v4", 2, {"tensor-parallel-size": "4", "pipeline-parallel-size": "2"},
         ("data-parallel-size",)),
        ("TestGetInferenceCommandVLLMSingleNode", "gemma-3-27b-instruct", "Standard_NC48ads_A100_v4", 1,
         {"tensor-parallel-size": "2"}, ("data-parallel-size",)),
        ("TestGetInferenceCommandVLLMGpuMemoryUtilization (A10)", "phi-4-mini-instruct", "Standard_NV36ads_A10_v5",
         1, {"gpu-memory-utilization": "0.82"}, ()),
        ("TestGetInferenceCommandVLLMGpuMemoryUtilization (A100)", "phi-4-mini-instruct",
         "Standard_NC24ads_A100_v4", 1, {"gpu-memory-utilization": "0.84"}, ()),
        # presets/workspace/generator/generator_test.go TestLoadFromCatalogMistralFormats
        ("TestLoadFromCatalogMistralFormats", "mistral-7b", "Standard_NC24ads_A100_v4", 1,
         {"load_format": "mistral", "config_format": "mistral", "tokenizer_mode": "mistral",
          "served-model-name": "mistral-7b-v0.3"}, ("reasoning-parser",)),
        # generator_test.go TestGeneratePreset "deepseek-ai/DeepSeek-V3": tokenizer_mode deepseek_v32 for the
        # deepseek-r1/v3 prefixes; generator.go reasoning/tool/chat-template prefix maps for the rest.
        ("TestGeneratePreset (deepseek)", "deepseek-r1-distill-llama-8b", "Standard_NC24ads_A100_v4", 1,
         {"tokenizer_mode": "deepseek_v32", "reasoning-parser": "deepseek_r1", "tool-call-parser": "deepseek_v3",
          "chat-template": "/workspace/chat_templates/tool-chat-deepseekr1.jinja"}, ()),
        ("generator.go prefix maps (gemma-3)", "gemma-3-4b-instruct", "Standard_NC24ads_A100_v4", 1,
         {"tool-call-parser": "functiongemma", "served-model-name": "gemma-3-4b-it", "model": "google/gemma-3-4b-it"},
         ("chat-template", "reasoning-parser")),
        ("generator.go prefix maps (llama-3)", "llama-3.1-8b-instruct", "Standard_NC24ads_A100_v4", 1,
         {"tool-call-parser": "llama3_json", "chat-template": "/workspace/chat_templates/tool-chat-llama3.1-json.jinja"},
         ("reasoning-parser",)),
        ("generator.go prefix maps (phi-3)", "phi-3-mini-4k-instruct", "Standard_NC24ads_A100_v4", 1,
         {"served-model-name": "phi-3-mini-4k-instruct", "dtype": "bfloat16"},
         ("tool-call-parser", "chat-template", "reasoning-parser")),
        # vllm_model.go: quantized weights -> dtype auto; gpt-oss -> LMCache off (isLMCacheDisabled).
        ("vllm_model.go GetInferenceParameters (quantized)", "gpt-oss-20b", "Standard_NC24ads_A100_v4", 1,
         {"dtype": "auto", "kaito-kv-cache-cpu-memory-utilization": "0", "tool-call-parser": "openai"}, ()),
    ],
)  # fmt: skip
def test_vllm_parallelism_and_family_flags_match_kaito(
    kaito_test: str,
    preset: str,
    instance_type: str,
    nodes: int,
    present: dict[str, str],
    absent: tuple[str, ...],
) -> None:
    script = pod(workspace(preset, instance_type), nodes)["containers"][0]["command"][2]
    server = next(part for part in script.split("; ") if "inference_api.py" in part)
    _, params = command_parts(server)
    assert {k: params.get(k) for k in present} == present, kaito_test
    assert not set(absent) & set(params), kaito_test
    if nodes > 1:
        assert "POD_INDEX" in script, kaito_test


def test_runtime_refusals_match_kaito_preset_param_validate() -> None:
    """pkg/model/interface_test.go TestPresetParamValidate: "vllm with adapter strength enabled" and
    "transformers runtime with unsupported model" are refused, on the field to fix."""
    phi4mini = catalog().preset("phi-4-mini-instruct")
    phi4 = catalog().preset("phi-4")
    assert phi4mini is not None and phi4 is not None
    refused = rt.runtime_refusals(phi4, "vllm", {"adapters": [ADAPTER]})
    assert refused == [("inference.adapters[0].strength", refused[0][1])]
    assert "vLLM does not support adapter strength" in refused[0][1]
    assert rt.runtime_refusals(phi4, "vllm", {"adapters": [{"source": ADAPTER["source"]}]}) == []
    assert rt.runtime_refusals(phi4, "transformers", {"adapters": [ADAPTER]}) == []
    unsupported = rt.runtime_refusals(phi4mini, "transformers", {})
    assert unsupported and "does not support inference with the transformers runtime" in unsupported[0][1]
    # The webhook's validation calls it.
    adapter = {
        "source": {"name": "adapter-1", "image": "fake.kaito.com/kaito-image:0.0.1"},
        "strength": "0.5",
    }
    obj = {"apiVersion": "kaito.sh/v1beta1", "kind": "Workspace", "metadata": {"name": "w"},
           "resource": {"instanceType": "Standard_NC24ads_A100_v4",
                        "labelSelector": {"matchLabels": {"apps": "phi-4"}}},
           "inference": {"preset": {"name": "phi-4"}, "adapters": [adapter]}}  # fmt: skip
    assert [e.path for e in validate_workspace(obj)] == ["inference.adapters[0].strength"]
    obj["metadata"]["annotations"] = {"kaito.sh/runtime": "transformers"}  # type: ignore[index]
    assert validate_workspace(obj) == []
    # Without the annotation, the seed's API (v1alpha1) means transformers, where strength is the merge weight.
    seed = {**obj, "apiVersion": "kaito.sh/v1alpha1", "metadata": {"name": "w"}}
    assert validate_workspace(seed) == []


def test_seed_image_transformers_matches_kaito_v0_3_2() -> None:
    """Seed-era presets under transformers run their per-model image as Kaito v0.3.2 did
    (presets/models/phi3/model.go: accelerate launch with DefaultAccelerateParams, phi run params; the server's
    health path was /healthz); the weights path is passed explicitly."""
    ws = workspace("phi-3-mini-4k-instruct", "Standard_NC6s_v3", runtime="transformers")
    container = pod(ws)["containers"][0]
    assert container["image"] == f"{REGISTRY}/kaito-phi-3-mini-4k-instruct:0.0.2"
    head, params = command_parts(container["command"][2])
    assert head == "accelerate launch /workspace/tfs/inference_api.py"
    assert params == {"num_processes": "1", "num_machines": "1", "machine_rank": "0", "gpu_ids": "all",
                      "torch_dtype": "auto", "pipeline": "text-generation", "trust_remote_code": "",
                      "pretrained_model_name_or_path": "/workspace/tfs/weights"}  # fmt: skip
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "model-weights-volume" not in [v["name"] for v in pod(ws)["volumes"]]
    llama = pod(workspace("llama-2-13b-chat", "Standard_NC12s_v3", runtime="transformers"), nodes=2)
    script = llama["containers"][0]["command"][2]
    # v0.3.2 llama2chat/model.go: torchrun with world size 2 over 2 nodes, c10d rendezvous on the leader:29500.
    assert script.startswith("cd /workspace/llama/llama-2 && torchrun ")
    _, torch = command_parts(script.split(" inference_api.py ")[0])
    assert torch["nnodes"] == "2" and torch["nproc_per_node"] == "1" and torch["rdzv_backend"] == "c10d"
    assert torch["rdzv_endpoint"] == "testWorkspace-0.testWorkspace-headless.kaito.svc.cluster.local:29500"
    assert script.endswith("inference_api.py --max_batch_size=8 --max_seq_len=512")


# --- Every catalog preset under both runtimes, against Kaito's own rules re-typed as data. ----------------------
# presets/workspace/generator/generator.go (Aug 2026): the name is the Hugging Face id's last segment, lowercased;
# prefix maps first, then the architecture maps. Only the entries a catalog model can meet are re-typed from the
# architecture maps; the prefix maps are whole, so a new preset whose name matches one is judged too.
KAITO_REASONING_PREFIX = {
    "deepseek-r1": "deepseek_r1", "deepseek-v3": "deepseek_v3", "deepseek-v4": "deepseek_v4", "ernie-4.5": "ernie45",
    "gemma-4": "gemma4", "glm-4.5": "glm45", "granite-3.2": "granite", "holo2": "holo2",
    "hunyuan-a13b": "hunyuan_a13b", "kimi-k2": "kimi_k2", "laguna": "poolside_v1",
    "minimax-m2": "minimax_m2_append_think", "minimax-m3": "minimax_m3", "mimo": "mimo", "mistral": "mistral",
    "olmo-3": "olmo3", "qwen3": "qwen3", "qwq-32b": "deepseek_r1", "step3": "step3",
}  # fmt: skip
KAITO_REASONING_ARCH = {"DeepseekV3ForCausalLM": "deepseek_v3", "MistralForCausalLM": "mistral",
                        "GptOssForCausalLM": "openai_gptoss"}  # fmt: skip
KAITO_NON_REASONING = {"mistral-7b-v0.3", "mistral-7b-instruct-v0.3"}
KAITO_TOOL_PREFIX = {
    "hermes-2": "hermes", "hermes-3": "hermes", "mistral": "mistral", "meta-llama-3": "llama3_json",
    "meta-llama-4": "llama4_pythonic", "granite-3": "granite", "granite-4": "granite4", "internlm": "internlm",
    "ai21-jamba": "jamba", "llama-xlama": "xlam", "xlam": "xlam", "qwq-32b": "hermes", "qwen2.5": "hermes",
    "laguna": "poolside_v1", "minimax-m2": "minimax_m2", "minimax-m3": "minimax_m3", "mimo": "mimo", "lfm2": "lfm2",
    "apertus": "apertus", "deepseek-r1": "deepseek_v3", "deepseek-v3": "deepseek_v3", "deepseek-v3.1": "deepseek_v31",
    "deepseek-v3.2": "deepseek_v32", "deepseek-v4": "deepseek_v4", "kimi_k2": "kimi_k2", "hunyuan-a13b": "hunyuan_a13b",
    "longcat": "longcat", "glm-4": "glm45", "glm-4.7": "glm47", "qwen3": "hermes", "qwen3-coder": "qwen3_xml",
    "qwen3.5": "qwen3_coder", "qwen3.6": "qwen3_coder", "qwen3.8": "qwen3_coder", "olmo-3": "olmo3",
    "gigachat3": "gigachat3", "ernie-4.5": "ernie45", "phi4-mini": "phi4_mini_json", "step3p5": "step3p5",
    "step3": "step3", "seed-oss": "seed_oss", "gemma-3": "functiongemma", "gemma-4": "gemma4",
}  # fmt: skip
KAITO_TOOL_ARCH = {"MistralForCausalLM": "mistral", "LlamaForCausalLM": "llama3_json", "Qwen2ForCausalLM": "hermes",
                   "DeepseekV3ForCausalLM": "deepseek_v3", "GptOssForCausalLM": "openai",
                   "Gemma3ForCausalLM": "functiongemma", "Phi4MiniForCausalLM": "phi4_mini_json"}  # fmt: skip
KAITO_CHAT_TEMPLATE_PREFIX = {
    "deepseek-r1": "tool-chat-deepseekr1.jinja", "deepseek-v3": "tool-chat-deepseekv3.jinja",
    "gemma-4": "tool-chat-gemma4.jinja", "llama-3": "tool-chat-llama3.1-json.jinja",
    "phi-4-mini": "tool-chat-phi4-mini.jinja", "qwen2.5": "tool-chat-hermes.jinja",
}  # fmt: skip
KAITO_TOKENIZER_PREFIX = {
    "deepseek-r1": "deepseek_v32",
    "deepseek-v3": "deepseek_v32",
    "deepseek-v4": "deepseek_v4",
}
# config.json `architectures` of each catalog model on Hugging Face (what the generator reads).
HF_ARCHITECTURE = {
    "phi-3": "Phi3ForCausalLM", "phi-4": "Phi3ForCausalLM", "falcon": "FalconForCausalLM",
    "llama-2": "LlamaForCausalLM", "llama-3": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
    "qwen": "Qwen2ForCausalLM", "gemma": "Gemma3ForConditionalGeneration", "gpt-oss": "GptOssForCausalLM",
    "phi-2": "PhiForCausalLM",
}  # fmt: skip
HF_ARCHITECTURE_BY_PRESET = {"deepseek-r1-distill-llama-8b": "LlamaForCausalLM",
                             "deepseek-r1-distill-qwen-14b": "Qwen2ForCausalLM",
                             "deepseek-r1-0528": "DeepseekV3ForCausalLM"}  # fmt: skip
# Deliberate differences (docs/architecture.md): Llama-2 was never trained on Llama-3's JSON tool-call format, so it
# gets no tool-call parser where Kaito's generator would attach llama3_json by architecture.
NO_TOOL_PARSER = {"llama-2"}

# presets/workspace/models/transformer_runtime_inference_parameters.go: ModelRunParams by generator name.
_PHI = {"torch_dtype": "auto", "pipeline": "text-generation", "trust_remote_code": ""}
_MISTRAL = {"torch_dtype": "bfloat16", "pipeline": "text-generation",
            "chat_template": "/workspace/chat_templates/mistral-instruct.jinja", "allow_remote_files": ""}  # fmt: skip
_GEMMA3 = {"torch_dtype": "auto", "pipeline": "text-generation", "allow_remote_files": ""}
_QWEN = {"torch_dtype": "bfloat16", "pipeline": "text-generation"}
_LLAMA = {"torch_dtype": "bfloat16", "pipeline": "text-generation",
          "chat_template": "/workspace/chat_templates/llama-3-instruct.jinja", "allow_remote_files": ""}  # fmt: skip
_GPT = {"torch_dtype": "auto", "pipeline": "text-generation", "allow_remote_files": ""}
_DISTILL = {"torch_dtype": "bfloat16", "pipeline": "text-generation"}
_DEEPSEEK_LARGE = {"torch_dtype": "bfloat16", "pipeline": "text-generation", "allow_remote_files": ""}
KAITO_TRANSFORMERS_RUN_PARAMS = {
    "phi-4": _PHI, "phi-3-mini-4k-instruct": _PHI, "phi-3-mini-128k-instruct": _PHI,
    "phi-3-medium-4k-instruct": _PHI, "phi-3-medium-128k-instruct": _PHI, "phi-3.5-mini-instruct": _PHI,
    "mistral-7b-v0.3": _MISTRAL, "mistral-7b-instruct-v0.3": _MISTRAL, "mistral-large-3-675b-instruct": _MISTRAL,
    "gemma-3-4b-it": _GEMMA3, "gemma-3-27b-it": _GEMMA3, "qwen2.5-coder-7b-instruct": _QWEN,
    "qwen2.5-coder-32b-instruct": _QWEN, "llama-3.1-8b-instruct": _LLAMA, "llama-3.3-70b-instruct": _LLAMA,
    "gpt-oss-20b": _GPT, "gpt-oss-120b": _GPT, "deepseek-r1-distill-llama-8b": _DISTILL,
    "deepseek-r1-distill-qwen-14b": _DISTILL, "deepseek-r1-0528": _DEEPSEEK_LARGE, "deepseek-v3-0324": _DEEPSEEK_LARGE,
}  # fmt: skip
ACCELERATE = {"num_processes": "1", "num_machines": "1", "machine_rank": "0", "gpu_ids": "all"}
# Kaito v0.3.2 presets/models/{phi3,falcon,mistral,phi2}/model.go: the run params of the seed era's images.
KAITO_V032_RUN_PARAMS = {"phi-3": _PHI, "falcon": _QWEN, "mistral": _QWEN,
                         "phi-2": {"torch_dtype": "float16", "pipeline": "text-generation"}}  # fmt: skip


def _prefix_match(name: str, table: dict[str, str], longest_first: bool = False) -> str | None:
    keys = sorted(table, reverse=True) if longest_first else list(table)
    matches = [k for k in keys if name.startswith(k)]
    if not longest_first:  # Go map order is random: Kaito relies on at most one prefix matching
        assert len(matches) <= 1, (name, matches)
    return table[matches[0]] if matches else None


def kaito_vllm_family_flags(preset_name: str) -> dict[str, str]:
    """generator.go's per-model vLLM flags (vllm_model.go turns them into flags)."""
    p = catalog().preset(preset_name)
    assert p is not None
    name = p.model_id.rsplit("/", 1)[-1].lower()
    arch = HF_ARCHITECTURE_BY_PRESET.get(preset_name) or HF_ARCHITECTURE[p.family]
    flags: dict[str, str] = {}
    if name not in KAITO_NON_REASONING:
        reasoning = _prefix_match(name, KAITO_REASONING_PREFIX) or KAITO_REASONING_ARCH.get(arch)
        if reasoning:
            flags["reasoning-parser"] = reasoning
    tool = _prefix_match(name, KAITO_TOOL_PREFIX, longest_first=True) or KAITO_TOOL_ARCH.get(arch)
    if tool and p.family not in NO_TOOL_PARSER:
        flags |= {"tool-call-parser": tool, "enable-auto-tool-choice": ""}
    template = _prefix_match(name, KAITO_CHAT_TEMPLATE_PREFIX)
    if template:
        flags["chat-template"] = f"/workspace/chat_templates/{template}"
    tokenizer = _prefix_match(name, KAITO_TOKENIZER_PREFIX)
    if tokenizer:
        flags["tokenizer_mode"] = tokenizer
    if (
        arch == "MistralForCausalLM"
    ):  # generator_test.go TestLoadFromCatalogMistralFormats: consolidated weights
        flags |= {"load_format": "mistral", "config_format": "mistral", "tokenizer_mode": "mistral"}
    if arch == "GptOssForCausalLM" or preset_name == "deepseek-r1-0528":  # quantized weights: dtype auto
        flags["dtype"] = "auto"
    return flags


ALL_PRESETS = [n for n, p in catalog().presets.items() if not p.deprecated]


@pytest.mark.parametrize("preset_name", ALL_PRESETS)
def test_every_preset_under_vllm_matches_kaito_generator(preset_name: str) -> None:
    """Every catalog preset's vLLM command: Kaito's fixed flags, the generator defaults overridden by its
    per-model rules, the model and its served name."""
    preset = catalog().preset(preset_name)
    assert preset is not None
    container = pod(workspace(preset_name, "Standard_NC96ads_A100_v4", runtime="vllm", secret="test-secret"))[
        "containers"
    ][0]
    assert container["image"] == f"{REGISTRY}/kaito-base:0.5.0"
    server = next(part for part in container["command"][2].split("; ") if "inference_api.py" in part)
    head, params = command_parts(server)
    assert head == "python3 /workspace/vllm/inference_api.py"
    name = preset.model_id.rsplit("/", 1)[-1].lower()
    expected = {**VLLM_ALWAYS, **GENERATED, **kaito_vllm_family_flags(preset_name), "model": preset.model_id,
                "served-model-name": name, "download-dir": "/workspace/weights", "max-model-len": "auto",
                "gpu-memory-utilization": "0.84"}  # fmt: skip
    parallelism = {"tensor-parallel-size", "data-parallel-size", "pipeline-parallel-size",
                   "distributed-executor-backend", "kaito-kv-cache-cpu-memory-utilization"}  # fmt: skip
    assert {k: v for k, v in params.items() if k not in parallelism} == expected
    assert HF_TOKEN in container["env"]


@pytest.mark.parametrize("preset_name", ALL_PRESETS)
def test_every_preset_under_transformers_matches_kaito(preset_name: str) -> None:
    """Every catalog preset under transformers: a seed-era preset runs its own image with the v0.3.2 run params;
    any other runs the base image with Kaito v0.12's TransformerInferenceParameters and the download flags, or is
    refused when Kaito has no transformers parameters for it."""
    preset = catalog().preset(preset_name)
    assert preset is not None
    name = preset.model_id.rsplit("/", 1)[-1].lower()
    if preset.family == "llama-2":
        return  # Meta's torchrun server: test_seed_image_transformers_matches_kaito_v0_3_2
    if not preset.seed_era and name not in KAITO_TRANSFORMERS_RUN_PARAMS:
        refused = rt.runtime_refusals(preset, "transformers", {})
        assert refused and "does not support inference with the transformers runtime" in refused[0][1]
        return
    container = pod(
        workspace(preset_name, "Standard_NC96ads_A100_v4", runtime="transformers", secret="test-secret")
    )["containers"][0]
    head, params = command_parts(container["command"][2])
    assert head == "accelerate launch /workspace/tfs/inference_api.py"
    if preset.seed_era:
        assert container["image"] == f"{REGISTRY}/kaito-{preset_name}:{preset.image_tag}"
        expected = {**ACCELERATE, **KAITO_V032_RUN_PARAMS[preset.family],
                    "pretrained_model_name_or_path": "/workspace/tfs/weights"}  # fmt: skip
    else:
        assert container["image"] == f"{REGISTRY}/kaito-base:0.5.0"
        expected = {**ACCELERATE, **KAITO_TRANSFORMERS_RUN_PARAMS[name], "pretrained_model_name_or_path":
                    preset.model_id, "allow_remote_files": "", "served_model_name": name}  # fmt: skip
        assert HF_TOKEN in container["env"]
    assert params == expected


def test_every_family_and_runtime_is_covered() -> None:
    """The two tests above judge every family under both runtimes (the deprecated phi-2 is refused)."""
    families = {catalog().preset(n).family for n in ALL_PRESETS}  # type: ignore[union-attr]
    assert families >= {"phi-3", "phi-4", "falcon", "llama-2", "llama-3", "mistral", "qwen", "deepseek", "gemma",
                        "gpt-oss"}  # fmt: skip
    phi2 = catalog().preset("phi-2")
    assert phi2 is not None and phi2.deprecated


@pytest.mark.parametrize(
    ("preset", "runtime", "tuning", "gib"),
    [
        # Kaito v0.3.2 presets/models/*/model.go DiskStorageRequirement, for the seed era's images.
        ("phi-3-mini-4k-instruct", "transformers", False, 50),
        ("mistral-7b", "transformers", False, 100),
        ("llama-2-70b-chat", "transformers", False, 158),
        ("falcon-40b", "transformers", False, 400),  # "400" without a unit in Kaito: read as GiB
        # v0.12 generator.go calculateStorageSize: int(modelFileSize + 80) on the base image.
        ("phi-3-mini-4k-instruct", "vllm", False, 87),
        ("phi-4", "vllm", False, 107),
        ("llama-3.3-70b-instruct", "vllm", False, 211),
        # node_claim.go determineNodeOSDiskSize: no inference preset (tuning) -> 1024Gi.
        ("phi-3-mini-4k-instruct", "transformers", True, 1024),
    ],
)
def test_node_disk_matches_kaito(preset: str, runtime: str, tuning: bool, gib: int) -> None:
    assert rt.node_disk_gib(catalog().preset(preset), runtime, tuning=tuning) == gib


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # pkg/workspace/tuning/preset_tuning.go PrepareOutputDir: default, relative under /mnt, cleaned.
        ("", "/mnt/output"),
        ("checkpoints", "/mnt/checkpoints"),
        ("/mnt/out/", "/mnt/out"),
        ("/mnt/a/../b", "/mnt/b"),
        # Not a directory under /mnt: refused, naming the field.
        ("/mnt", None),
        ("../etc", None),
        ("/mnt/../etc", None),
        ("/etc", None),
        ("/mnt/config", None),  # kaito-ctrl: would hide the config it reads
    ],
)
def test_tuning_output_dir_matches_kaito_prepare_output_dir(value: str, expected: str | None) -> None:
    from kaito_ctrl.controllers.workspace.tuning import InvalidTuningConfig, output_dir

    body = (
        f"training_config:\n  TrainingArguments:\n    output_dir: {value!r}\n"
        if value
        else "training_config: {}\n"
    )
    cm = {"metadata": {"name": "c"}, "data": {"training_config.yaml": body}}
    if expected is None:
        with pytest.raises(InvalidTuningConfig, match="output_dir"):
            output_dir(cm)
    else:
        assert output_dir(cm) == expected
    with pytest.raises(InvalidTuningConfig, match=r"no training_config\.yaml"):
        output_dir({"metadata": {"name": "c"}, "data": {}})


# pkg/workspace/tuning/preset_tuning.go (v0.12) and v0.3.2 pkg/tuning/preset-tuning.go, re-typed: every tuning Job
# gets PYTORCH_CUDA_ALLOC_CONF; a preset whose name starts with "phi-3" also gets DEFAULT_TARGET_MODULES.
KAITO_PHI3_TARGET_MODULES = "k_proj,q_proj,v_proj,o_proj,gate_proj,down_proj,up_proj"


def kaito_tuning_env(preset_name: str) -> dict[str, str]:
    env = {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}
    if preset_name.lower().startswith("phi-3"):
        env["DEFAULT_TARGET_MODULES"] = KAITO_PHI3_TARGET_MODULES
    return env


@pytest.mark.parametrize("preset_name", sorted(p.name for p in catalog().presets.values() if p.tuning))
def test_tuning_env_matches_kaito_preset_tuning(preset_name: str) -> None:
    from kaito_ctrl.controllers.workspace.tuning import render_tuning

    ws = {
        "apiVersion": "kaito.sh/v1beta1", "kind": "Workspace",
        "metadata": {"name": "tune", "namespace": "ns", "uid": "u-1"},
        "resource": {"instanceType": "Standard_NC24ads_A100_v4", "labelSelector": {"matchLabels": {"a": "b"}}},
        "tuning": {"preset": {"name": preset_name}, "method": "qlora",
                   "input": {"urls": ["https://example.com/d.parquet"]}, "output": {"image": "r.io/o:1"}},
    }  # fmt: skip
    objs = render_tuning(WorkspaceSpec(ws), node_requirements=[], registry="r.io")
    job = next(o for o in objs if o["kind"] == "Job")
    trainer = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in trainer.get("env") or []}
    wanted = kaito_tuning_env(preset_name)
    assert {
        k: env.get(k)
        for k in ("PYTORCH_CUDA_ALLOC_CONF", "DEFAULT_TARGET_MODULES")
        if k in env or k in wanted
    } == wanted
