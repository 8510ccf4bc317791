"""The entry-point check accepts every command line the renderer produces and refuses what the real servers
would: unknown flags, a missing model argument, an adapters directory or config file no volume provides."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kaito_ctrl.api import runtime_args as rt
from kaito_ctrl.api.catalog import catalog
from kaito_ctrl.api.entrypoint_check import EntrypointRefused, check_entrypoint, refusal
from kaito_ctrl.controllers.workspace.spec import WorkspaceSpec
from kaito_ctrl.controllers.workspace.workload import render_inference

ADAPTER = {"source": {"name": "a1", "image": "r.io/a:1"}}


def container(
    preset: str, instance_type: str, runtime: str, nodes: int = 1, **inference: Any
) -> dict[str, Any]:
    ws = WorkspaceSpec(
        {"metadata": {"name": "w", "namespace": "ns", "uid": "u", "annotations": {"kaito.sh/runtime": runtime}},
         "resource": {"instanceType": instance_type},
         "inference": {"preset": {"name": preset}, **inference}}
    )  # fmt: skip
    workload = render_inference(ws, nodes=nodes, node_requirements=[], registry="r.io")[-1]
    return dict(workload["spec"]["template"]["spec"]["containers"][0])


def _rendered_cases() -> list[tuple[str, str, int]]:
    cases = []
    for preset in catalog().presets.values():
        for runtime in rt.RUNTIMES:
            if not rt.supports(preset, runtime):
                continue
            cases.append((preset.name, runtime, 1))
            if runtime == rt.VLLM or preset.name in ("llama-2-70b", "llama-2-13b-chat"):
                cases.append((preset.name, runtime, 2))
    return cases


@pytest.mark.parametrize(("preset", "runtime", "nodes"), _rendered_cases())
def test_every_rendered_command_line_starts(preset: str, runtime: str, nodes: int) -> None:
    for extra in ({}, {"adapters": [ADAPTER], "config": "cfg"}):
        c = container(preset, "Standard_NC24ads_A100_v4", runtime, nodes, **extra)
        assert check_entrypoint(c) == runtime, c["command"][2]


def _with_script(c: dict[str, Any], script: str) -> dict[str, Any]:
    out = copy.deepcopy(c)
    out["command"] = ["/bin/sh", "-c", script]
    return out


def test_unknown_flags_are_refused_for_each_program() -> None:
    vllm = container("phi-4", "Standard_NC24ads_A100_v4", "vllm")
    assert refusal(_with_script(vllm, vllm["command"][2] + " --tensor-paralel-size=2")) == (
        "vLLM server (/workspace/vllm/inference_api.py): unrecognized arguments: --tensor-paralel-size"
    )
    tfs = container("phi-4", "Standard_NC24ads_A100_v4", "transformers")
    bad = tfs["command"][2].replace("accelerate launch ", "accelerate launch --num_gpus=2 ")
    assert refusal(_with_script(tfs, bad)) == "accelerate launch: unrecognized arguments: --num-gpus"
    seed = container("phi-3-mini-4k-instruct", "Standard_NC6s_v3", "transformers")
    # The seed era's server had no --served_model_name (the base image's has).
    reason = refusal(_with_script(seed, seed["command"][2] + " --served_model_name=phi-3"))
    assert reason is not None and "seed-era" in reason and "--served-model-name" in reason
    multi = container("llama-3.3-70b-instruct", "Standard_NC96ads_A100_v4", "vllm", nodes=2)
    bad = multi["command"][2].replace("--ray_port=6379; fi", "--ray_prot=6379; fi")
    assert (
        refusal(_with_script(multi, bad))
        == "multi-node-serving.sh worker: unrecognized arguments: --ray_prot"
    )


def test_a_missing_model_argument_is_refused() -> None:
    vllm = container("phi-4", "Standard_NC24ads_A100_v4", "vllm")
    assert refusal(_with_script(vllm, vllm["command"][2].replace(" --model=microsoft/phi-4", ""))) == (
        "vLLM server (/workspace/vllm/inference_api.py): the following arguments are required: --model"
    )
    tfs = container("phi-4", "Standard_NC24ads_A100_v4", "transformers")
    without = tfs["command"][2].replace(" --pretrained_model_name_or_path=microsoft/phi-4", "")
    reason = refusal(_with_script(tfs, without))
    assert reason is not None and reason.endswith("required: --pretrained_model_name_or_path")
    seed = container("phi-3-mini-4k-instruct", "Standard_NC6s_v3", "transformers")
    reason = refusal(_with_script(seed, seed["command"][2].replace(" --pipeline=text-generation", "")))
    assert reason is not None and reason.endswith("required: --pipeline")
    # A seed image carries its weights: no model path is needed there.
    no_path = seed["command"][2].replace(" --pretrained_model_name_or_path=/workspace/tfs/weights", "")
    assert refusal(_with_script(seed, no_path)) is None


def test_adapters_dir_and_config_file_must_be_mounted() -> None:
    c = container("phi-4", "Standard_NC24ads_A100_v4", "vllm", adapters=[ADAPTER], config="cfg")
    assert refusal(c) is None
    no_adapters = dict(c, volumeMounts=[m for m in c["volumeMounts"] if m["mountPath"] != "/mnt/adapter"])
    assert refusal(no_adapters) == (
        "vLLM server (/workspace/vllm/inference_api.py): --enable-lora but the adapters directory /mnt/adapter "
        "is not there (no volume is mounted at it)"
    )
    no_config = dict(c, volumeMounts=[m for m in c["volumeMounts"] if m["mountPath"] != "/mnt/config"])
    assert refusal(no_config) == (
        "vLLM server (/workspace/vllm/inference_api.py): config file /mnt/config/inference_config.yaml not found "
        "(no volume holds it)"
    )


def test_other_refusals() -> None:
    vllm = container("phi-4", "Standard_NC24ads_A100_v4", "vllm")
    assert (
        refusal(_with_script(vllm, "sleep infinity"))
        == "sleep: not an entry point of Kaito's inference images"
    )
    assert refusal({"command": []}) == "the container has no command"
    assert (
        refusal(_with_script(vllm, 'python3 /workspace/vllm/inference_api.py --model="unclosed')) is not None
    )
    assert refusal(_with_script(vllm, vllm["command"][2] + " --dtype")) == (
        "vLLM server (/workspace/vllm/inference_api.py): expected one argument: --dtype"
    )
    assert refusal(_with_script(vllm, vllm["command"][2] + " stray")) == (
        "vLLM server (/workspace/vllm/inference_api.py): unexpected arguments: stray"
    )
    with pytest.raises(EntrypointRefused):
        check_entrypoint(_with_script(vllm, "cd /workspace"))
