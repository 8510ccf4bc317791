"""The seed's quickstart typed as the seed prints it (../shared/reference/seed/): its three examples applied as
files, `kubectl get workspace NAME` with the seed's header, `kubectl get svc NAME` with ClusterIP and
80/TCP,29500/TCP, the ClusterIP from jsonpath, `POST /chat` answered through the Service (port-forward stands in
for the seed's in-cluster curl pod), the tuning Job carrying the seed's input, output image and push secret, and
deletion leaving no NodeClaim and no agent pool."""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from e2e.conftest import REPO, Sandbox, wait_for
from kaito_ctrl.testing.controlplane import free_port

INFERENCE = REPO / "examples" / "inference" / "kaito_workspace_phi_3.yaml"
ADAPTERS = REPO / "examples" / "inference" / "kaito_workspace_phi_3_with_adapters.yaml"
TUNING = REPO / "examples" / "fine-tuning" / "kaito_workspace_tuning_phi_3.yaml"
SEED_HEADER = ["NAME", "INSTANCE", "RESOURCEREADY", "INFERENCEREADY", "WORKSPACEREADY", "AGE"]
NAMES = ("workspace-phi-3-mini", "workspace-phi-3-mini-adapter", "workspace-tuning-phi-3-mini")
DATASET = (
    "https://huggingface.co/datasets/philschmid/dolly-15k-oai-style/resolve/main/data/"
    "train-00000-of-00001-54e3756291ca09c6.parquet?download=true"
)


def _row(sandbox: Sandbox, ns: str, name: str) -> tuple[list[str], list[str]]:
    lines = sandbox.kubectl("get", "workspace", name, "-n", ns).splitlines()
    return lines[0].split(), lines[1].split()


def _condition(sandbox: Sandbox, ns: str, name: str, type_: str) -> dict[str, Any]:
    ws = sandbox.get_json("workspace", name, "-n", ns)
    return next((c for c in ws.get("status", {}).get("conditions", []) if c["type"] == type_), {})


def _post(url: str, body: bytes) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(json.loads(r.read()))
    except urllib.error.HTTPError as e:
        return e.code, dict(json.loads(e.read()))


def _chat_through_service(sandbox: Sandbox, ns: str) -> tuple[int, dict[str, Any], int, dict[str, Any]]:
    """`kubectl port-forward svc/workspace-phi-3-mini LOCAL:80`, then the seed's curl (and a malformed one)."""
    local = free_port()
    pf = subprocess.Popen(
        [sandbox.kubectl_bin, "--kubeconfig", sandbox.kubeconfig, "-n", ns, "port-forward",
         "svc/workspace-phi-3-mini", f"{local}:80"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{local}/chat"

        def answered() -> tuple[int, dict[str, Any]] | None:
            try:
                return _post(url, b'{"prompt":"YOUR QUESTION HERE"}')
            except (OSError, ValueError):
                return None

        status, body = wait_for(answered, 60, "POST /chat through the Service")
        bad_status, bad_body = _post(url, b'{"return_full_text": true}')
        return status, body, bad_status, bad_body
    finally:
        pf.terminate()
        pf.wait(timeout=10)


def test_the_seed_journey_as_typed(sandbox: Sandbox, e2e_namespace: str) -> None:
    ns = e2e_namespace
    outputs = {}
    for path in (INFERENCE, ADAPTERS, TUNING):

        def applied(p: Path = path) -> str | None:
            out = sandbox.kubectl("apply", "-n", ns, "-f", str(p), check=False)
            return out if "created" in out or "configured" in out or "unchanged" in out else None

        outputs[path.name] = wait_for(applied, 60, f"kubectl apply -f {path.name}")
    # Placeholders are admitted, with a warning naming the field and why it will not pull or push.
    assert "Warning: inference.adapters[0].source.image" in outputs[ADAPTERS.name]
    assert "InvalidImageName" in outputs[ADAPTERS.name]
    assert "Warning: tuning.output.image" in outputs[TUNING.name]
    assert "Warning" not in outputs[INFERENCE.name]

    # kubectl get workspace NAME: the seed's header, and WORKSPACEREADY True once the model is served.
    def ready() -> list[str] | None:
        header, row = _row(sandbox, ns, "workspace-phi-3-mini")
        return row if header == SEED_HEADER and row[2:5] == ["True", "True", "True"] else None

    row = wait_for(ready, 240, "workspace-phi-3-mini ready with the seed's columns")
    assert row[:2] == ["workspace-phi-3-mini", "Standard_NC6s_v3"]
    ws = sandbox.get_json("workspace", "workspace-phi-3-mini", "-n", ns)
    assert ws["metadata"]["annotations"]["kaito.sh/runtime"] == "transformers", "created through v1alpha1"
    # As the seed's Kaito writes it (v0.3.2 pkg/controllers/workspace_controller.go, ensureNodePlugins).
    claim_ready = _condition(sandbox, ns, "workspace-phi-3-mini", "NodeClaimReady")
    assert (claim_ready["status"], claim_ready["reason"], claim_ready["message"]) == (
        "True",
        "installNodePluginsSuccess",
        "nodeClaim plugins have been installed successfully",
    )

    # The adapter placeholder: the pod never runs, and the Workspace says why.
    adapter_cond = wait_for(
        lambda: (
            (c := _condition(sandbox, ns, "workspace-phi-3-mini-adapter", "InferenceReady")).get("reason")
            == "InvalidImageName"
            and c
        ),
        240,
        "the adapter Workspace to report InvalidImageName",
    )
    assert adapter_cond["status"] == "False" and "ADAPTER_HERE" in adapter_cond["message"]
    assert _row(sandbox, ns, "workspace-phi-3-mini-adapter")[0] == SEED_HEADER

    # The tuning Workspace: WorkspaceReady is the real summary, True once the Job succeeded.
    wait_for(
        lambda: (
            _condition(sandbox, ns, "workspace-tuning-phi-3-mini", "WorkspaceReady").get("status") == "True"
        ),
        240,
        "the tuning Job to succeed",
    )
    header, row = _row(sandbox, ns, "workspace-tuning-phi-3-mini")
    assert header == SEED_HEADER and row[-2] == "True", row  # INFERENCEREADY is blank for tuning
    # The seed's Kaito set the same node-plugins reason before branching into inference or tuning.
    tuning_claim = _condition(sandbox, ns, "workspace-tuning-phi-3-mini", "NodeClaimReady")
    assert (tuning_claim["status"], tuning_claim["reason"]) == ("True", "installNodePluginsSuccess"), (
        tuning_claim
    )
    job = next(
        j
        for j in sandbox.get_json("jobs", "-n", ns)["items"]
        if j["metadata"]["labels"].get("kaito.sh/workspace") == "workspace-tuning-phi-3-mini"
    )
    pod_spec = job["spec"]["template"]["spec"]
    text = json.dumps(pod_spec)
    assert DATASET in text, "the seed's input URL"
    assert "ACR_REPO_HERE.azurecr.io/IMAGE_NAME_HERE:0.0.1" in text, "the seed's output image"
    secrets = {s["name"] for s in pod_spec.get("imagePullSecrets", [])} | {
        v["secret"]["secretName"] for v in pod_spec.get("volumes", []) if "secret" in v
    }
    assert "ACR_REGISTRY_SECRET_HERE" in secrets, "the seed's push secret"

    # kubectl get svc NAME: ClusterIP and the seed's ports; the ClusterIP as the seed reads it.
    svc_lines = sandbox.kubectl("get", "svc", "workspace-phi-3-mini", "-n", ns).splitlines()
    assert svc_lines[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    name, type_, cluster_ip, external, ports, _age = svc_lines[1].split()
    assert (name, type_, external, ports) == (
        "workspace-phi-3-mini",
        "ClusterIP",
        "<none>",
        "80/TCP,29500/TCP",
    )
    jsonpath = sandbox.kubectl(
        "get", "svc", "workspace-phi-3-mini", "-n", ns, "-o", "jsonpath={.spec.clusterIPs[0]}"
    )
    assert jsonpath == cluster_ip and ipaddress.ip_address(jsonpath)

    # The seed's curl, through the Service: the transformers runtime's /chat, answered by the stand-in.
    status, body, bad_status, bad_body = _chat_through_service(sandbox, ns)
    assert status == 200 and set(body) == {"Result"}, body
    assert "stand-in" in body["Result"] and "phi-3-mini-4k-instruct" in body["Result"]
    assert "YOUR QUESTION HERE" in body["Result"]
    assert (bad_status, bad_body) == (400, {"detail": "Text generation parameter prompt required"})

    # kubectl logs shows the stand-in's log, requests included.
    pod = next(
        p["metadata"]["name"]
        for p in sandbox.get_json("pods", "-n", ns, "-l", "kaito.sh/workspace=workspace-phi-3-mini")["items"]
    )
    logs = wait_for(
        lambda: (out := sandbox.kubectl("logs", pod, "-n", ns, check=False)) and '"POST /chat' in out and out,
        30,
        "the stand-in's log",
    )
    assert "stand-in for preset phi-3-mini-4k-instruct" in logs

    # Deleting the Workspaces leaves no NodeClaim, no agent pool and no stand-in behind.
    claims = {
        c["metadata"]["name"]
        for c in sandbox.get_json("nodeclaims")["items"]
        if c["metadata"]["labels"].get("kaito.sh/workspacenamespace") == ns
    }
    assert len(claims) == 3, claims
    sandbox.kubectl("delete", "workspace", *NAMES, "-n", ns, "--wait=false")

    def gone() -> bool:
        left = [
            c
            for c in sandbox.get_json("nodeclaims")["items"]
            if c["metadata"]["labels"].get("kaito.sh/workspacenamespace") == ns
        ]
        return not left and not sandbox.get_json("workspaces", "-n", ns)["items"]

    wait_for(gone, 240, "the Workspaces and their NodeClaims to be gone")
    if not sandbox.external:
        wait_for(
            lambda: not sandbox.get_json("portforwards.kwok.x-k8s.io", "-n", ns)["items"],
            60,
            "stand-ins gone",
        )
        wait_for(
            lambda: not claims & {p["name"] for p in sandbox.fake_arm("/pools")},
            240,
            "the agent pools to be deleted",
        )
    assert not re.search(r"workspace-phi-3-mini\b", sandbox.kubectl("get", "svc", "-n", ns, check=False))
