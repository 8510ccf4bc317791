"""Does throttling cost CPU? (issue 20 item 2; a diagnostic, not part of `make bench`.)

`kaito-ctrl run` as shipped (the P4 command line) brings N BYO Workspaces to their settled state twice per round:
with a client limit that binds (20 qps / burst 30) and one that does not (2000 / 2000). Reported per run: wall time,
the process's CPU per Workspace (user+sys from /proc across the timed round) and its reconciles per Workspace
(from its own /metrics), so extra CPU can be told apart from extra work.

    .venv/bin/python -m bench.bench_throttle_cpu 150
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path

from bench import bench_workspaces as bw
from bench import processes
from kaito_ctrl import logsetup
from kaito_ctrl.kube.client import KubeClient
from kaito_ctrl.testing.controlplane import ControlPlane, ControlPlaneOptions

LIMITS = ((20.0, 30), (2000.0, 2000))


async def reconciles(metrics_url: str) -> float:
    """controller_runtime_reconcile_total of the workspace controller, all results."""
    import urllib.request

    text = await asyncio.to_thread(lambda: urllib.request.urlopen(metrics_url, timeout=5).read().decode())
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("controller_runtime_reconcile_total{") and 'controller="workspace"' in line
    )


async def one(kubeconfig: str, qps: float, burst: int, n: int, run: int, workdir: Path) -> dict[str, float]:
    client = await KubeClient.from_kubeconfig(kubeconfig, qps=2000, burst=2000)
    try:
        await bw.prepare_cluster(client)
        ns = await bw.new_namespace(client, f"thr{int(qps)}", run)
        port, probe = processes.free_port(), processes.free_port()
        argv = [*bw.kaito_argv(ns, port, probe), f"--kube-client-qps={qps}", f"--kube-client-burst={burst}"]
        log = workdir / f"kaito-{int(qps)}-{run}.log"
        async with processes.started("kaito-ctrl", argv, bw.kaito_env(kubeconfig), log, workdir) as proc:
            url = f"http://127.0.0.1:{port}/metrics"

            async def up() -> bool:
                try:
                    await reconciles(url)
                    return True
                except OSError:
                    return False

            await bw.poll_until("kaito-ctrl's metrics endpoint", up, 60, 0.1)
            r0, c0 = await reconciles(url), processes.cpu_seconds(proc.pid)
            wall = await bw.timed_round(client, ns, n, alive=proc.exited)
            c1, r1 = processes.cpu_seconds(proc.pid), await reconciles(url)
        await bw.clear_namespaces(client)
        return {
            "qps": qps,
            "wall_s": round(wall, 2),
            "cpu_ms_per_ws": round((c1 - c0) * 1000 / n, 1),
            "reconciles_per_ws": round((r1 - r0) / n, 2),
        }
    finally:
        await client.close()


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 150
    logsetup.configure("warning", "json")
    options = ControlPlaneOptions(controller_manager=False, scheduler=False, kwok=True, gpu_nodes=())
    with ControlPlane(options) as cp, tempfile.TemporaryDirectory(prefix="kaito-bench-thr-") as tmp:
        for run in range(2):  # alternating which limit goes first
            for qps, burst in LIMITS if run % 2 == 0 else LIMITS[::-1]:
                row = asyncio.run(one(cp.kubeconfig, qps, burst, n, run, Path(tmp)))
                print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
