"""The sandbox's stand-in inference server: it reads what the rendered pod would run and answers that runtime's
API in Kaito's shapes, saying plainly it is a stand-in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from kaito_ctrl.api.runtimes import default_runtime_annotation
from kaito_ctrl.controllers.workspace.spec import WorkspaceSpec
from kaito_ctrl.controllers.workspace.workload import render_inference
from kaito_ctrl.sandbox.standin.entrypoint import Entrypoint, EntrypointError, parse_entrypoint, pod_adapters
from kaito_ctrl.sandbox.standin.manager import inference_container
from kaito_ctrl.sandbox.standin.server import ContainerLog, make_app

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "inference"


def _rendered_pod(example: str, api_version: str | None = None) -> dict[str, Any]:
    """The Deployment's pod template for an example, stored as the webhook would default it."""
    obj = yaml.safe_load((EXAMPLES / example).read_text())
    if api_version:
        obj["apiVersion"] = api_version
    obj["metadata"].update(namespace="default", uid="00000000-0000-0000-0000-000000000001")
    version = obj["apiVersion"].rpartition("/")[2]
    ws = WorkspaceSpec(default_runtime_annotation(obj, {"operation": "CREATE", "kind": {"version": version}}))
    objs = render_inference(ws, nodes=1, node_requirements=[], registry="mcr.microsoft.com/aks/kaito")
    workload = next(o for o in objs if o["kind"] in ("Deployment", "StatefulSet"))
    return dict(workload["spec"]["template"])


def test_seed_example_through_v1alpha1_is_the_transformers_chat_api() -> None:
    pod = _rendered_pod("kaito_workspace_phi_3.yaml")
    name, entry = inference_container(pod) or ("", None)
    assert entry is not None and name == "workspace-phi-3-mini"
    assert (entry.runtime, entry.api, entry.served_model_name, entry.port) == (
        "transformers", "chat", "phi-3-mini-4k-instruct", 5000,
    )  # fmt: skip


def test_the_same_example_through_v1beta1_is_vllm_openai() -> None:
    pod = _rendered_pod("kaito_workspace_phi_3.yaml", "kaito.sh/v1beta1")
    entry = parse_entrypoint(pod["spec"]["containers"][0], pod["metadata"]["annotations"])
    assert (entry.runtime, entry.api, entry.served_model_name) == ("vllm", "openai", "phi-3-mini-4k-instruct")


def test_adapters_come_from_lora_modules_or_the_adapter_init_containers() -> None:
    # vLLM loads every directory under /mnt/adapter (no --lora-modules): the pullers name the adapters.
    pod = _rendered_pod("kaito_workspace_phi_3_with_adapters.yaml", "kaito.sh/v1beta1")
    assert parse_entrypoint(pod["spec"]["containers"][0]).served_model_name == "phi-3-mini-128k-instruct"
    _, entry = inference_container(pod) or ("", None)
    assert entry is not None and entry.adapters == ("phi-3-adapter",)
    alpha = _rendered_pod("kaito_workspace_phi_3_with_adapters.yaml")
    assert pod_adapters(alpha) == ("phi-3-adapter",)
    _, entry = inference_container(alpha) or ("", None)
    assert entry is not None and entry.adapters == ("phi-3-adapter",)


@pytest.mark.parametrize(
    ("container", "message"),
    [
        (
            {"name": "c", "image": "nginx", "command": ["nginx", "-g", "daemon off;"]},
            "no Kaito inference server",
        ),
        (
            {"name": "c", "image": "x", "command": ["/bin/sh", "-c", "python3 '/workspace/vllm"]},
            "does not parse",
        ),
        (
            {
                "name": "c",
                "image": "x",
                "command": ["python3", "/workspace/vllm/inference_api.py", "--port=abc"],
            },
            "no model name",
        ),
        (
            {
                "name": "c",
                "image": "x",
                "command": ["python3", "/workspace/vllm/inference_api.py", "--model=m/n", "--port=x"],
            },
            "--port 'x' is not a number",
        ),
    ],
)
def test_containers_that_run_no_inference_server_are_refused(container: dict[str, Any], message: str) -> None:
    with pytest.raises(EntrypointError, match=message):
        parse_entrypoint(container)


def test_tuning_pods_get_no_stand_in() -> None:
    pod = _rendered_pod("kaito_workspace_phi_3.yaml")
    pod["metadata"]["ownerReferences"] = [{"kind": "Job", "name": "tune"}]
    assert inference_container(pod) is None


@pytest.fixture
async def chat_client(tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    entry = Entrypoint(
        "transformers", "chat", "phi-3-mini-4k-instruct", image="r/kaito-phi-3-mini-4k-instruct:0.0.2"
    )
    async with TestClient(TestServer(make_app(entry))) as client:
        yield client


@pytest.fixture
async def openai_client() -> AsyncIterator[TestClient[Any, Any]]:
    entry = Entrypoint("vllm", "openai", "phi-3-mini-128k-instruct", adapters=("phi-3-adapter",))
    async with TestClient(TestServer(make_app(entry))) as client:
        yield client


async def test_chat_answers_the_seed_curl_and_says_it_is_a_stand_in(
    chat_client: TestClient[Any, Any],
) -> None:
    r = await chat_client.post("/chat", json={"prompt": "YOUR QUESTION HERE"})
    assert r.status == 200
    body = await r.json()
    assert set(body) == {"Result"}
    assert "stand-in for preset phi-3-mini-4k-instruct" in body["Result"] and "no GPU" in body["Result"]
    assert (await (await chat_client.get("/health")).json()) == {"status": "Healthy"}
    assert (await (await chat_client.get("/")).json()) == {"message": "Server is running"}


async def test_chat_refuses_malformed_requests_as_the_runtime_does(chat_client: TestClient[Any, Any]) -> None:
    r = await chat_client.post("/chat", json={"return_full_text": True})
    assert (r.status, await r.json()) == (400, {"detail": "Text generation parameter prompt required"})
    r = await chat_client.post("/chat", data=b"not json", headers={"Content-Type": "application/json"})
    assert r.status == 422 and (await r.json())["detail"][0]["loc"] == ["body"]
    r = await chat_client.post("/chat", json={"prompt": 42})
    assert r.status == 422
    r = await chat_client.post("/v1/chat/completions", json={"messages": []})
    assert (r.status, await r.json()) == (404, {"detail": "Not Found"}), (
        "the seed-era image has no OpenAI API"
    )


async def test_openai_models_lists_the_preset_and_its_adapters(openai_client: TestClient[Any, Any]) -> None:
    data = (await (await openai_client.get("/v1/models")).json())["data"]
    assert [(m["id"], m["parent"]) for m in data] == [
        ("phi-3-mini-128k-instruct", None), ("phi-3-adapter", "phi-3-mini-128k-instruct"),
    ]  # fmt: skip
    assert (await openai_client.get("/health")).status == 200


async def test_openai_chat_completions_and_its_errors(openai_client: TestClient[Any, Any]) -> None:
    r = await openai_client.post(
        "/v1/chat/completions",
        json={"model": "phi-3-adapter", "messages": [{"role": "user", "content": "hi"}]},
    )
    body = await r.json()
    assert r.status == 200 and body["object"] == "chat.completion" and body["model"] == "phi-3-adapter"
    assert "stand-in" in body["choices"][0]["message"]["content"]
    r = await openai_client.post("/v1/chat/completions", json={"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]})  # fmt: skip
    assert r.status == 404 and (await r.json())["error"]["param"] == "model"
    r = await openai_client.post("/v1/chat/completions", json={"model": "phi-3-mini-128k-instruct"})
    assert r.status == 400 and (await r.json())["error"]["type"] == "BadRequestError"
    r = await openai_client.post("/chat", json={"prompt": "x"})
    assert r.status == 404


def test_container_log_is_in_the_cri_format_kubectl_logs_reads(tmp_path: Path) -> None:
    log = ContainerLog(tmp_path / "c.log")
    log.say("hello")
    stamp, stream, tag, rest = (tmp_path / "c.log").read_text().rstrip("\n").split(" ", 3)
    assert (stream, tag, rest) == ("stdout", "F", "hello") and stamp.endswith("Z") and "T" in stamp
