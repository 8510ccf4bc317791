"""Does throttling cost CPU? (issue 20 item 2; a diagnostic, not part of `make bench`.)

`kaito-ctrl run` as shipped (the P4 command line) brings N BYO Workspaces to their settled state twice per round:
with a client limit that binds (20 qps / burst 30) and one that does not (2000 / 2000). Reported per run: wall time,
the process's CPU per Workspace (user+sys from /proc across the timed round) and the work it did per Workspace:
reconciles and apiserver requests from its own /metrics, and with ``--calls`` (the process run under cProfile,
minus a run that only starts and stops) Python function calls and event-loop wake-ups (``epoll.poll`` calls), so
extra CPU can be told apart from extra work. Under cProfile every call costs more: compare CPU figures only
between runs without ``--calls``.

Last comes the machine's own price of spread-out work: the renderer's YAML for one Workspace (the same code and
data each call) timed back to back and with the process idle 50 ms between calls, as throttled work is. On a
shared VM an idle core loses its caches, so the same instructions cost more CPU time after a pause; that rise is
the floor for any throttled process on the machine.

    .venv/bin/python -m bench.bench_throttle_cpu 150
    .venv/bin/python -m bench.bench_throttle_cpu 150 --calls
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pstats
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench import bench_workspaces as bw
from bench import processes
from kaito_ctrl import logsetup, render
from kaito_ctrl.kube.client import KubeClient
from kaito_ctrl.testing.controlplane import ControlPlane, ControlPlaneOptions

LIMITS = ((20.0, 30), (2000.0, 2000))
# The idle time between two calls of the calibration: about a throttled burst's pauses (the bucket wakes
# callers every 16 / qps seconds and each then waits a few ms for the apiserver).
CALIBRATION_GAP = 0.05


async def counters(url: str) -> tuple[float, float]:
    """(reconciles of the workspace controller, apiserver requests but watches) so far, from /metrics."""
    text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    reconciles = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("controller_runtime_reconcile_total{") and 'controller="workspace"' in line
    )
    return reconciles, float(sum((await processes.request_counts(url)).values()))


def profile_counts(path: Path) -> tuple[int, int]:
    """(Python function calls, event-loop wake-ups) recorded by cProfile in ``path``."""
    stats = pstats.Stats(str(path))
    table: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    poll = "<method 'poll' of 'select.epoll' objects>"
    return int(stats.total_calls), sum(  # type: ignore[attr-defined]
        int(row[1]) for key, row in table.items() if key[2] == poll
    )


async def one(
    kubeconfig: str, qps: float, burst: int, n: int, tag: str, workdir: Path, profile: Path | None
) -> dict[str, Any]:
    """One process, one timed round of ``n`` Workspaces (none when ``n`` is 0: start, settle, stop)."""
    client = await KubeClient.from_kubeconfig(kubeconfig, qps=2000, burst=2000)
    try:
        await bw.prepare_cluster(client)
        ns = await bw.new_namespace(client, f"thr{int(qps)}-{tag}", 0)
        port, probe = processes.free_port(), processes.free_port()
        argv = [*bw.kaito_argv(ns, port, probe), f"--kube-client-qps={qps}", f"--kube-client-burst={burst}"]
        if profile is not None:
            argv = [sys.executable, "-m", "cProfile", "-o", str(profile), *argv]
        log = workdir / f"kaito-{int(qps)}-{tag}.log"
        async with processes.started("kaito-ctrl", argv, bw.kaito_env(kubeconfig), log, workdir) as proc:
            url = f"http://127.0.0.1:{port}/metrics"

            async def up() -> bool:
                try:
                    await counters(url)
                    return True
                except OSError:
                    return False

            await bw.poll_until("kaito-ctrl's metrics endpoint", up, 60, 0.1)
            (r0, q0), c0 = await counters(url), proc.cpu_seconds()
            wall = await bw.timed_round(client, ns, n, alive=proc.exited) if n else 0.0
            c1, (r1, q1) = proc.cpu_seconds(), await counters(url)
        await bw.clear_namespaces(client)
        per = max(n, 1)
        return {
            "qps": qps,
            "wall_s": round(wall, 2),
            "cpu_ms_per_ws": round((c1 - c0) * 1000 / per, 1),
            "reconciles_per_ws": round((r1 - r0) / per, 2),
            "requests_per_ws": round((q1 - q0) / per, 2),
        }
    finally:
        await client.close()


def calibration(calls: int = 40) -> dict[str, Any]:
    """CPU time of one render of a Workspace's Deployment YAML into objects, back to back and after a pause."""
    from kaito_ctrl.controllers.workspace.spec import WorkspaceSpec
    from kaito_ctrl.controllers.workspace.workload import render_inference

    obj = bw.workspace("calibration")
    obj["metadata"].update(namespace="bench", uid="u")
    ws = WorkspaceSpec(obj)

    def cost(gap: float) -> float:
        samples = []
        for _ in range(calls):
            render._memo.clear()  # the work itself every call, not the memo's copy
            t = time.thread_time()
            render_inference(ws, nodes=1, node_requirements=[], registry="mcr.microsoft.com/aks/kaito")
            samples.append(time.thread_time() - t)
            if gap:
                time.sleep(gap)  # the pause is the point: the process idle between two calls
        return statistics.median(samples)

    cost(0)  # templates compiled, code warm
    warm, spread = cost(0), cost(CALIBRATION_GAP)
    return {
        "calibration": "render_inference",
        "back_to_back_us": round(warm * 1e6),
        f"after_{int(CALIBRATION_GAP * 1000)}ms_idle_us": round(spread * 1e6),
        "ratio": round(spread / warm, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench.bench_throttle_cpu")
    parser.add_argument("n", type=int, nargs="?", default=150, help="Workspaces per round")
    parser.add_argument("--calls", action="store_true", help="count Python calls and wake-ups (cProfile)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    logsetup.configure("warning", "json")
    options = ControlPlaneOptions(controller_manager=False, scheduler=False, kwok=True, gpu_nodes=())
    with ControlPlane(options) as cp, tempfile.TemporaryDirectory(prefix="kaito-bench-thr-") as tmp:
        workdir = Path(tmp)
        base = (0, 0)
        if args.calls:  # what starting and stopping costs, subtracted from every profiled round
            startup = workdir / "startup.prof"
            asyncio.run(one(cp.kubeconfig, *LIMITS[1], 0, "startup", workdir, startup))
            base = profile_counts(startup)
        for run in range(args.rounds):  # alternating which limit goes first
            for qps, burst in LIMITS if run % 2 == 0 else LIMITS[::-1]:
                path = workdir / f"{int(qps)}-{run}.prof" if args.calls else None
                row = asyncio.run(one(cp.kubeconfig, qps, burst, args.n, str(run), workdir, path))
                if path is not None:
                    total, wakeups = profile_counts(path)
                    row["python_calls_per_ws"] = round((total - base[0]) / args.n)
                    row["wakeups_per_ws"] = round((wakeups - base[1]) / args.n, 1)
                print(json.dumps(row), flush=True)
    print(json.dumps(calibration()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
