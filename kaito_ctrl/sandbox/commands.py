"""``kaito-ctrl sandbox up|down|status``: a local Kaito playground on one machine."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from kaito_ctrl.sandbox import paths
from kaito_ctrl.sandbox.progress import Progress
from kaito_ctrl.testing.binaries import ensure_binaries, ensure_karpenter, repo_root


def _running_pid() -> int | None:
    try:
        pid = int(paths.pid_file().read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def up(args: argparse.Namespace) -> int:
    root = paths.sandbox_dir()
    root.mkdir(parents=True, exist_ok=True)
    if _running_pid() and paths.ready_file().exists():
        _say("sandbox already running")
        return _print_usage()
    progress = Progress()
    _say("==> control-plane binaries (built once, then reused from the cache)")
    with progress.during(
        "control-plane binaries: building or checking the cache (the first build takes 8-15 min)"
    ):
        bin_dir = ensure_binaries()
    extra: dict[str, str] = {}
    if args.node_provisioner == "karpenter":
        _say("==> Karpenter's kwok provider (built once from sigs.k8s.io/karpenter, then reused)")
        with progress.during("Karpenter: building or checking the cache (the first build takes 3-5 min)"):
            extra["KAITO_CTRL_KARPENTER_DIR"] = str(ensure_karpenter())
    _say(f"==> starting the sandbox (logs: {paths.supervisor_log()})")
    paths.ready_file().unlink(missing_ok=True)
    paths.stage_file().unlink(missing_ok=True)
    env = dict(
        os.environ,
        KAITO_CTRL_BIN_DIR=str(bin_dir),
        KAITO_NODE_PROVISIONER=args.node_provisioner,
        KAITO_SANDBOX_REPLICAS=str(args.replicas),
        **extra,
    )
    with paths.supervisor_log().open("ab") as logf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kaito_ctrl.sandbox.supervisor"],
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # survives the shell (and make) that started it
            env=env,
        )
    paths.pid_file().write_text(str(proc.pid))
    deadline = time.monotonic() + float(args.timeout)
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            progress.update("waiting for: " + paths.stage_file().read_text().strip())
        if paths.ready_file().exists():
            if not args.no_example:
                _apply_example()
            return _print_usage()
        if proc.poll() is not None:
            _say(f"sandbox supervisor exited with {proc.returncode}; last log lines:")
            _say("\n".join(paths.supervisor_log().read_text(errors="replace").splitlines()[-20:]))
            return 1
        time.sleep(0.5)  # polling interval of a deadline-bounded wait
    _say("sandbox did not become ready in time")
    return 1


def _apply_example() -> None:
    """Apply the seed's Phi-3 quickstart Workspace, verbatim, and show it as the seed's `kubectl get` does."""
    info = json.loads(paths.ready_file().read_text())
    kubectl = [str(Path(info["bin_dir"]) / "kubectl"), "--kubeconfig", info["kubeconfig"]]
    example = repo_root() / "examples" / "inference" / "kaito_workspace_phi_3.yaml"
    _say(f"==> kubectl apply -f examples/inference/{example.name} (the seed's Phi-3 quickstart, verbatim)")
    deadline = time.monotonic() + 60
    while True:
        res = subprocess.run([*kubectl, "apply", "-f", str(example)], capture_output=True, text=True)
        # The apiserver needs a moment to start calling a freshly registered webhook.
        if res.returncode == 0 or time.monotonic() > deadline or "failed calling webhook" not in res.stderr:
            break
        time.sleep(0.5)  # polling interval of a deadline-bounded wait
    _say((res.stdout + res.stderr).strip())
    _say("==> waiting for the workspace to be ready (kubectl get workspace workspace-phi-3-mini)")
    get = [*kubectl, "get", "workspace", "workspace-phi-3-mini"]
    deadline = time.monotonic() + 180
    out = ""
    while time.monotonic() < deadline:
        out = subprocess.run(get, capture_output=True, text=True).stdout.rstrip()
        if out.count("True") >= 3:
            break
        time.sleep(1)  # polling interval of a deadline-bounded wait
    _say(out)


def _print_usage() -> int:
    info = json.loads(paths.ready_file().read_text())
    kubeconfig = info["kubeconfig"]
    kubectl = Path(info["bin_dir"]) / "kubectl"
    print(
        "\nThe kaito-ctrl sandbox is up: a real kube-apiserver, etcd, controller-manager, scheduler,\n"
        "kwok GPU nodes, the kaito-ctrl CRDs and RBAC, and kaito-ctrl itself running as its ServiceAccount\n"
        f"(metrics {info['controller']['metrics']}, log {info['controller']['log']}).\n"
        f"\n    export KUBECONFIG={kubeconfig}\n"
        f"    export PATH={kubectl.parent}:$PATH   # kubectl {info['versions'].get('kubernetes', '')}\n"
        "\nThen try the seed's steps:\n"
        "    kubectl apply -f examples/inference/kaito_workspace_phi_3.yaml\n"
        "    kubectl get workspace workspace-phi-3-mini\n"
        "    kubectl get svc workspace-phi-3-mini\n"
        "    # the seed's in-cluster curl pod, done from here (a local stand-in answers for the model):\n"
        "    kubectl port-forward svc/workspace-phi-3-mini 8080:80 &\n"
        '    curl -X POST http://127.0.0.1:8080/chat -H "Content-Type: application/json" '
        '-d \'{"prompt":"YOUR QUESTION HERE"}\'\n'
        "    kubectl logs deploy/workspace-phi-3-mini\n"
        "    kubectl get nodes -L node.kubernetes.io/instance-type,nvidia.com/gpu.count\n"
        "\nStop it with `kaito-ctrl sandbox down` (or `make down`).",
        flush=True,
    )
    karp = info.get("karpenter")
    if karp:
        print(
            f"\nNode provisioner: Karpenter {karp['versions'].get('karpenter', '')} (kwok provider, log {karp['log']}).\n"
            f"kaito-ctrl's NodeClaims reference the {karp['node_class']} node class and NodePool {karp['nodepool']};\n"
            f"the instance types Karpenter offers are in {karp['instance_types']}.\n"
            "    kubectl get nodeclaims,nodepools,kwoknodeclasses",
            flush=True,
        )
    arm = info.get("fake_arm")
    if arm:
        print(
            f"\nNode provisioner: {info['controller']['node_provisioner']}. GPU nodes are AKS agent pools on the fake ARM\n"
            f"server ({arm['url']}); see them, or make the next create fail with a quota error:\n"
            f"    kubectl get nodeclaims && curl -s --cacert {arm['ca_file']} {arm['admin']}/pools\n"
            f'    curl -s --cacert {arm["ca_file"]} -X POST {arm["admin"]}/faults -d \'{{"kind": "quota", "times": 1}}\'',
            flush=True,
        )
    return 0


def down(args: argparse.Namespace) -> int:
    pid = _running_pid()
    if pid is None:
        _say("sandbox is not running")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _running_pid() is not None:
        time.sleep(0.2)  # polling interval of a deadline-bounded wait
    if _running_pid() is not None:
        os.kill(pid, signal.SIGKILL)
    paths.pid_file().unlink(missing_ok=True)
    _say("sandbox stopped")
    return 0


def status(args: argparse.Namespace) -> int:
    pid = _running_pid()
    if pid is None or not paths.ready_file().exists():
        print("sandbox: not running")
        return 1
    print(paths.ready_file().read_text())
    return 0


SANDBOX_EXAMPLES = {
    "up": "examples:\n  kaito-ctrl sandbox up                          # nodeclaim mode, applies the seed's Phi-3 example\n"
    "  kaito-ctrl sandbox up --node-provisioner byo --no-example\n"
    "  kaito-ctrl sandbox up --node-provisioner karpenter   # nodes launched by the real Karpenter\n"
    "  KAITO_SANDBOX_DIR=/tmp/sb2 kaito-ctrl sandbox up --replicas 2   # a second sandbox, two replicas\n",
    "down": "examples:\n  kaito-ctrl sandbox down\n  KAITO_SANDBOX_DIR=/tmp/sb2 kaito-ctrl sandbox down\n",
    "status": "examples:\n  kaito-ctrl sandbox status && echo running\n",
}


def _sub(
    ssub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_: str
) -> argparse.ArgumentParser:
    return ssub.add_parser(
        name, help=help_, epilog=SANDBOX_EXAMPLES[name], formatter_class=argparse.RawDescriptionHelpFormatter
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "sandbox", help="run a local Kaito sandbox (control plane, kwok GPU nodes, controllers)"
    )
    ssub = p.add_subparsers(dest="sandbox_cmd", required=True)
    u = _sub(ssub, "up", "start the sandbox in the background and print how to use it")
    u.add_argument("--timeout", default=900, help="seconds to wait for readiness (first build excluded)")
    # nodeclaim: GPU nodes are AKS agent pools on the fake ARM server; byo: two kwok GPU nodes up front.
    # karpenter: the real Karpenter (kwok provider) launches the nodes for kaito-ctrl's NodeClaims.
    u.add_argument(
        "--node-provisioner", choices=["nodeclaim", "machine", "byo", "karpenter"], default="nodeclaim"
    )
    u.add_argument("--no-example", action="store_true", help="do not apply the Phi-3 quickstart example")
    u.add_argument("--replicas", type=int, default=1, help="kaito-ctrl replicas (leader election picks one)")
    u.set_defaults(func=up)
    _sub(ssub, "down", "stop the sandbox").set_defaults(func=down)
    _sub(ssub, "status", "show whether the sandbox is running").set_defaults(func=status)
