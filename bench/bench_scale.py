"""P7, P8, P9 (issue 14): what kaito-ctrl costs as a cluster grows, against the kopf peer in the same run.

Each system gets a control plane of its own (apiserver, etcd and kwok; no kube-controller-manager or scheduler,
so nothing but the bench and the system under test writes), and `kaito-ctrl run` runs as shipped with both
controllers on (`--node-provisioner byo`, the node provisioner beside it pointed at the fake ARM server, which
the BYO Workspaces never call), cluster-wide, as a platform runs it. BYO phi-3 Workspaces arrive in steps up to
each size of ``SIZES`` (``BENCH_SCALE=large`` goes to 5,000), 500 to a namespace. After a step has settled (the
state P4 checks), the bench stands in for the Deployment controller and creates ``PODS_PER_WORKSPACE`` pods per
new Workspace from its Deployment's pod template, bound to a kwok GPU node that runs them: the pods a
controller caches are the size a real workload's are. Per step it reads the process's CPU (user+sys, /proc)
across the Workspaces' arrival and across the pods', and its resident memory (VmRSS) once its work queue is
empty after each.

- **P7**: CPU per Workspace over the first 1,000 (steps up to 1,000 summed), against kopf's.
- **P8**: resident memory at the largest size, a least-squares line over every reading (MiB per 1,000
  Workspaces and per 1,000 Pods) and from it the figure at 5,000 Workspaces / 20,000 Pods when the run stops
  short of that; kopf's at the same Workspace count (it caches no pods).
- **P9**: at the largest size, ``P9_COUNT`` more Workspaces arrive at ``P9_RATE`` per second; per Workspace the
  latency from the create request to its settled state (both systems make the same writes) and, for
  kaito-ctrl, to WorkspaceReady True, the bench's stand-in Deployment controller starting one pod per Deployment
  and reporting it ready as soon as kwok does.

    .venv/bin/python -m bench.bench_scale [--quick]          # BENCH_SCALE=large for the 5,000 run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from bench import bench_burst_nodeclaims as bnc
from bench import bench_workspaces as bw
from bench import processes
from kaito_ctrl import logsetup
from kaito_ctrl.api import labels as L
from kaito_ctrl.kube import conditions as cond
from kaito_ctrl.kube.client import KubeClient
from kaito_ctrl.kube.errors import Conflict
from kaito_ctrl.kube.informer import SharedInformer
from kaito_ctrl.kube.resources import DEPLOYMENTS, NAMESPACES, PODS, WORKSPACES, Resource
from kaito_ctrl.testing.controlplane import ControlPlane, ControlPlaneOptions

SIZES = {"default": (500, 1000, 2000), "large": (500, 1000, 2000, 5000), "quick": (100, 200)}
P7_AT = 1000  # P7 is CPU per Workspace over the first this many
PODS_PER_WORKSPACE = 4  # 5,000 Workspaces -> 20,000 Pods, P8's size
PER_NAMESPACE = 500
P8_AT = (5000, 20000)
P8_TARGET_MIB = 300.0
SHIPPED_MEMORY = (256, 512)  # MiB: manifests/deployment.yaml and the Helm chart, request and limit
P9_COUNT, P9_RATE, P9_TARGET_S = 200, 5.0, 2.0
POD_CONCURRENCY = 32
WS_NAMESPACE = "scale-{}"
SERVICE_ACCOUNTS = Resource("", "v1", "serviceaccounts", "ServiceAccount")

log = structlog.get_logger("bench.scale")


def scale(quick: bool) -> str:
    return "quick" if quick else ("large" if os.environ.get("BENCH_SCALE") == "large" else "default")


@dataclass
class Reading:
    workspaces: int
    pods: int
    rss_mib: float
    cpu_s: float  # of this phase
    wall_s: float
    phase: str  # "workspaces" or "pods"
    added: int


@dataclass
class SystemRun:
    readings: list[Reading] = field(default_factory=list)
    peak_rss_mib: float = 0.0
    settled_latency: list[float] = field(default_factory=list)
    ready_latency: list[float] = field(default_factory=list)
    error: str = ""


# ---------------------------------------------------------------------------- the cluster side
async def namespace(client: KubeClient, name: str) -> None:
    """A namespace and its default ServiceAccount (no kube-controller-manager here to make it; pods need it)."""
    with contextlib.suppress(Conflict):
        await client.create(NAMESPACES, {"metadata": {"name": name}})
    with contextlib.suppress(Conflict):
        await client.create(SERVICE_ACCOUNTS, {"metadata": {"name": "default"}}, name)


def pod_from(deployment: dict[str, Any], name: str, node: str) -> dict[str, Any]:
    template = deployment["spec"]["template"]
    meta = template.get("metadata") or {}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": meta.get("labels") or {},
            "annotations": meta.get("annotations") or {},
        },
        "spec": {**template["spec"], "nodeName": node},
    }


async def bounded(coros: list[Awaitable[Any]], limit: int) -> None:
    sem = asyncio.Semaphore(limit)

    async def one(c: Awaitable[Any]) -> None:
        async with sem:
            await c

    await asyncio.gather(*(one(c) for c in coros))


async def add_pods(client: KubeClient, ns: str, names: list[str]) -> None:
    """PODS_PER_WORKSPACE pods per Workspace from its Deployment, then wait until kwok runs them all."""
    deployments = {d["metadata"]["name"]: d for d in await client.list_all(DEPLOYMENTS, ns)}
    bodies = [
        pod_from(deployments[n], f"{n}-{j}", bw.NODE_NAMES[(i + j) % len(bw.NODE_NAMES)])
        for i, n in enumerate(names)
        for j in range(PODS_PER_WORKSPACE)
    ]
    await bounded([client.create(PODS, b, ns) for b in bodies], POD_CONCURRENCY)
    want = len(bodies)

    async def running() -> bool:
        pods = await client.list_all(PODS, ns, label_selector=L.LABEL_WORKSPACE)
        return sum((p.get("status") or {}).get("phase") == "Running" for p in pods) >= want

    await bw.poll_until(f"kwok to run {want} pods in {ns}", running, 120 + want / 20, 0.5)


async def queue_empty(metrics_url: str | None) -> bool:
    if metrics_url is None:
        return True
    import urllib.request

    text = await asyncio.to_thread(lambda: urllib.request.urlopen(metrics_url, timeout=5).read().decode())
    depth = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("workqueue_depth{") and 'name="workspace"' in line
    ]
    return len(depth) > 0 and sum(depth) == 0.0


# ---------------------------------------------------------------------------- P9's arrivals
class Arrivals:
    """P9: Workspaces created at a steady rate; the bench watches them (and, for kaito-ctrl, stands in for the
    Deployment controller) with kaito-ctrl's own informer, timing each from its create request."""

    def __init__(self, client: KubeClient, ns: str, stand_in: bool) -> None:
        self.client, self.ns, self.stand_in = client, ns, stand_in
        self.started: dict[str, float] = {}
        self.settled: dict[str, float] = {}
        self.ready: dict[str, float] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.errors: list[str] = []
        self.informers = [SharedInformer(client, WORKSPACES, namespace=ns)]
        self.informers[0].add_event_handler(
            on_add=self.on_workspace, on_update=lambda _o, n: self.on_workspace(n)
        )
        if stand_in:
            deps = SharedInformer(client, DEPLOYMENTS, namespace=ns, label_selector=L.LABEL_WORKSPACE)
            pods = SharedInformer(client, PODS, namespace=ns, label_selector=L.LABEL_WORKSPACE)
            deps.add_event_handler(on_add=self.on_deployment)
            pods.add_event_handler(on_update=lambda _o, n: self.on_pod(n))
            self.informers += [deps, pods]
        self.reported: set[str] = set()

    def spawn(self, coro: Awaitable[Any]) -> None:
        async def run() -> None:
            try:
                await coro
            except Exception as e:
                self.errors.append(repr(e)[:200])

        task = asyncio.create_task(run())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def on_workspace(self, ws: dict[str, Any]) -> None:
        name, now = ws["metadata"]["name"], time.perf_counter()
        if name not in self.started:
            return
        if name not in self.settled and bw._converged_workspace(ws):
            self.settled[name] = now
        if name not in self.ready and cond.is_true(ws, L.COND_WORKSPACE_READY):
            self.ready[name] = now

    def on_deployment(self, dep: dict[str, Any]) -> None:
        name = dep["metadata"]["name"]
        self.spawn(self.client.create(PODS, pod_from(dep, f"{name}-0", bw.NODE_NAMES[0]), self.ns))

    def on_pod(self, pod: dict[str, Any]) -> None:
        owner = (pod["metadata"].get("labels") or {}).get(L.LABEL_WORKSPACE, "")
        if owner in self.reported or not cond.is_true(pod, "Ready"):
            return
        self.reported.add(owner)
        self.spawn(self.report_ready(owner))

    async def report_ready(self, name: str) -> None:
        dep = await self.client.get(DEPLOYMENTS, name, self.ns)
        n = int(dep["spec"].get("replicas") or 1)
        status = {
            "observedGeneration": dep["metadata"]["generation"],
            "replicas": n, "updatedReplicas": n, "readyReplicas": n, "availableReplicas": n,
        }  # fmt: skip
        await self.client.merge_patch(DEPLOYMENTS, name, {"status": status}, self.ns, subresource="status")

    async def run(self, count: int, rate: float, alive: Callable[[], str | None]) -> None:
        for inf in self.informers:
            inf.start()
        try:
            for inf in self.informers:
                await inf.wait_for_sync(60)
            t0 = time.perf_counter()
            creates = []
            for i in range(count):
                delay = t0 + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)  # the arrival schedule, not synchronisation
                name = f"p9-{i:04d}"
                self.started[name] = time.perf_counter()
                creates.append(
                    asyncio.create_task(self.client.create(WORKSPACES, bw.workspace(name), self.ns))
                )
            await asyncio.gather(*creates)
            want = set(self.started)

            async def done() -> bool:
                if alive() or self.errors:
                    raise RuntimeError(alive() or self.errors[0])
                return want <= set(self.settled) and (not self.stand_in or want <= set(self.ready))

            await bw.poll_until(f"{count} arriving Workspaces to settle", done, 60 + count / rate * 3, 0.2)
        finally:
            for inf in self.informers:
                await inf.stop()
            for task in list(self.tasks):
                task.cancel()

    def latencies(self, seen: dict[str, float]) -> list[float]:
        return sorted(seen[n] - self.started[n] for n in self.started if n in seen)


# ---------------------------------------------------------------------------- one system
async def grow(
    client: KubeClient,
    pid: int,
    metrics_url: str | None,
    sizes: tuple[int, ...],
    with_pods: bool,
    alive: Callable[[], str | None],
    out: SystemRun,
) -> None:
    total = pods = 0
    for size in sizes:
        names = [f"ws-{i:05d}" for i in range(total, size)]
        by_ns: dict[str, list[str]] = {}
        for i, name in enumerate(names, start=total):
            by_ns.setdefault(WS_NAMESPACE.format(i // PER_NAMESPACE), []).append(name)
        for ns in by_ns:
            await namespace(client, ns)
        cpu0, t0 = processes.cpu_seconds(pid), time.perf_counter()
        await asyncio.gather(*(bw.create_workspaces(client, ns, ns_names) for ns, ns_names in by_ns.items()))
        for ns, ns_names in by_ns.items():
            await bw.wait_converged(client, ns, set(ns_names), bw.convergence_timeout(len(ns_names)), alive)
        await bw.poll_until("the work queue to empty", lambda: queue_empty(metrics_url), 120, 0.5)
        total = size
        out.readings.append(
            Reading(total, pods, processes.current_rss(pid) / 2**20, processes.cpu_seconds(pid) - cpu0,
                    time.perf_counter() - t0, "workspaces", len(names))
        )  # fmt: skip
        log.info("scale step", **vars(out.readings[-1]))
        if not with_pods:
            continue
        cpu0, t0 = processes.cpu_seconds(pid), time.perf_counter()
        for ns, ns_names in by_ns.items():
            await add_pods(client, ns, ns_names)
        await bw.poll_until("the work queue to empty", lambda: queue_empty(metrics_url), 120, 0.5)
        pods += len(names) * PODS_PER_WORKSPACE
        out.readings.append(
            Reading(total, pods, processes.current_rss(pid) / 2**20, processes.cpu_seconds(pid) - cpu0,
                    time.perf_counter() - t0, "pods", len(names) * PODS_PER_WORKSPACE)
        )  # fmt: skip
        log.info("scale step", **vars(out.readings[-1]))


async def run_kaito(kubeconfig: str, sizes: tuple[int, ...], p9: int, workdir: Path) -> tuple[SystemRun, Any]:
    out = SystemRun()
    client = await KubeClient.from_kubeconfig(kubeconfig, qps=bw.DRIVER_QPS, burst=bw.DRIVER_QPS)
    templates = None
    try:
        await bw.prepare_cluster(client)
        await bnc.prepare_cluster(client)
        async with bnc.fake_arm(kubeconfig, workdir) as arm:
            metrics_port, probe_port = processes.free_port(), processes.free_port()
            argv = [
                str(bw.KAITO_CTRL), "run", "--node-provisioner", "byo", "--no-leader-elect", "--no-webhook",
                "--metrics-bind-address", f"127.0.0.1:{metrics_port}",
                "--health-probe-bind-address", f"127.0.0.1:{probe_port}",
            ]  # fmt: skip
            metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
            env = {**bw.kaito_env(kubeconfig), **arm.env}
            async with processes.started(
                "kaito-ctrl", argv, env, workdir / "kaito-ctrl.log", workdir
            ) as proc:
                await namespace(client, "warmup")
                await bw.warm_up(client, "warmup", alive=proc.exited)
                bench = bw.Bench(kubeconfig, client, 1)
                await bench.capture_templates("warmup", argv)
                templates = bench.templates
                await grow(client, proc.pid, metrics_url, sizes, True, proc.exited, out)
                await namespace(client, "p9")
                arrivals = Arrivals(client, "p9", stand_in=True)
                await arrivals.run(p9, P9_RATE, proc.exited)
                out.settled_latency = arrivals.latencies(arrivals.settled)
                out.ready_latency = arrivals.latencies(arrivals.ready)
                out.peak_rss_mib = proc.peak_rss() / 2**20
    finally:
        await client.close()
    return out, templates


async def run_kopf(
    kubeconfig: str, sizes: tuple[int, ...], p9: int, workdir: Path, templates: Any
) -> SystemRun:
    out = SystemRun()
    client = await KubeClient.from_kubeconfig(kubeconfig, qps=bw.DRIVER_QPS, burst=bw.DRIVER_QPS)
    try:
        await bw.prepare_cluster(client)
        templates_file = workdir / "templates.json"
        templates.dump(templates_file)
        env = {**os.environ, "KUBECONFIG": kubeconfig, "KAITO_BENCH_TEMPLATES": str(templates_file)}
        env.pop("PYTHONPATH", None)
        argv = [
            str(bw.PEERS / ".venv" / "bin" / "python"), "-m", "kopf", "run", "--standalone", "--all-namespaces",
            str(bw.KOPF_OPERATOR),
        ]  # fmt: skip
        async with processes.started("kopf", argv, env, workdir / "kopf.log", workdir) as proc:
            await namespace(client, "warmup")
            await bw.warm_up(client, "warmup", alive=proc.exited)
            await grow(client, proc.pid, None, sizes, False, proc.exited, out)
            await namespace(client, "p9")
            arrivals = Arrivals(client, "p9", stand_in=False)
            await arrivals.run(p9, P9_RATE, proc.exited)
            out.settled_latency = arrivals.latencies(arrivals.settled)
            out.peak_rss_mib = proc.peak_rss() / 2**20
    finally:
        await client.close()
    return out


def on_own_cluster(work: Callable[[str], Coroutine[Any, Any, Any]]) -> Any:
    options = ControlPlaneOptions(controller_manager=False, scheduler=False, kwok=True, gpu_nodes=())
    with ControlPlane(options) as cp:
        return asyncio.run(work(cp.kubeconfig))


# ---------------------------------------------------------------------------- figures
def cpu_per_workspace(run: SystemRun, upto: int) -> float | None:
    """Milliseconds of CPU per Workspace over the Workspace steps up to ``upto`` Workspaces."""
    steps = [r for r in run.readings if r.phase == "workspaces" and r.workspaces <= upto]
    count = sum(r.added for r in steps)
    return sum(r.cpu_s for r in steps) * 1000 / count if count else None


def memory_line(run: SystemRun) -> tuple[float, float, float] | None:
    """Least squares rss = a + b * workspaces/1000 + c * pods/1000 over the readings; (a, b, c) in MiB."""
    rows = [(1.0, r.workspaces / 1000, r.pods / 1000, r.rss_mib) for r in run.readings]
    if len(rows) < 3:
        return None
    cols = 3 if any(r[2] for r in rows) else 2
    # Normal equations, solved by Gaussian elimination (3 unknowns at most).
    m = [
        [sum(r[i] * r[j] for r in rows) for j in range(cols)] + [sum(r[i] * r[3] for r in rows)]
        for i in range(cols)
    ]
    for i in range(cols):
        pivot = max(range(i, cols), key=lambda k: abs(m[k][i]))
        m[i], m[pivot] = m[pivot], m[i]
        if abs(m[i][i]) < 1e-12:
            return None
        for k in range(cols):
            if k != i:
                f = m[k][i] / m[i][i]
                m[k] = [a - f * b for a, b in zip(m[k], m[i], strict=True)]
    coef = [m[i][cols] / m[i][i] for i in range(cols)]
    return coef[0], coef[1], coef[2] if cols == 3 else 0.0


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def steps_text(run: SystemRun) -> str:
    return "; ".join(
        f"{r.workspaces} WS/{r.pods} pods: {r.rss_mib:.0f} MiB"
        + (
            f", {r.cpu_s * 1000 / r.added:.1f} ms CPU per {'Workspace' if r.phase == 'workspaces' else 'pod'}"
            if r.added
            else ""
        )
        for r in run.readings
    )


def rows_from(
    sizes: tuple[int, ...], kaito: SystemRun, kopf: SystemRun | None, label: str
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    base = f"scale {label}, sizes {'/'.join(map(str, sizes))} Workspaces, {PODS_PER_WORKSPACE} pods each"
    p7_at = min(P7_AT, sizes[-1])
    k7 = cpu_per_workspace(kaito, p7_at)
    o7 = cpu_per_workspace(kopf, p7_at) if kopf else None
    rows.append({
        "id": "P7", "name": f"CPU per Workspace brought to its settled state, first {p7_at} BYO Workspaces "
        "(`kaito-ctrl run` as shipped, both controllers)",
        "value": round(k7, 2) if k7 is not None else None, "unit": "ms CPU/Workspace",
        "baseline_name": "kopf peer, same writes", "baseline_value": round(o7, 2) if o7 else None,
        "ratio": round(k7 / o7, 2) if k7 and o7 else None, "target": "<= 0.33x kopf",
        "met": bool(k7 and o7 and k7 / o7 <= 1 / 3),
        "note": f"{base}. kaito-ctrl per step: {steps_text(kaito)}."
        + (f" kopf per step: {steps_text(kopf)}." if kopf else "") + " One run per system (steps listed).",
    })  # fmt: skip
    line = memory_line(kaito)
    at_w, at_p = P8_AT
    measured_at_target = kaito.readings and kaito.readings[-1].workspaces >= at_w
    last = kaito.readings[-1] if kaito.readings else None
    if measured_at_target and last is not None:
        p8 = last.rss_mib
        how = f"measured at {last.workspaces} Workspaces / {last.pods} Pods"
    elif line is not None:
        p8 = line[0] + line[1] * at_w / 1000 + line[2] * at_p / 1000
        how = f"from the line (the run stopped at {last.workspaces if last else 0} Workspaces; BENCH_SCALE=large measures it)"
    else:
        p8, how = None, "no line"
    kopf_rss = next((r.rss_mib for r in reversed(kopf.readings)), None) if kopf and kopf.readings else None
    line_text = (
        f"RSS = {line[0]:.0f} MiB + {line[1]:.1f} MiB per 1,000 Workspaces + {line[2]:.1f} MiB per 1,000 Pods"
        if line
        else "too few readings for a line"
    )
    rows.append({
        "id": "P8", "name": f"Resident memory of `kaito-ctrl run` (both controllers) at {at_w} Workspaces and {at_p} Pods",
        "value": round(p8, 1) if p8 is not None else None, "unit": "MiB",
        "baseline_name": f"kopf peer at {kopf.readings[-1].workspaces if kopf and kopf.readings else '?'} Workspaces",
        "baseline_value": round(kopf_rss, 1) if kopf_rss else None,
        "ratio": round(p8 / kopf_rss, 2) if p8 and kopf_rss else None,
        "target": f"<= {P8_TARGET_MIB:.0f} MiB, inside the shipped {SHIPPED_MEMORY[1]}Mi limit",
        "met": bool(p8 is not None and p8 <= P8_TARGET_MIB),
        "note": f"{how}. {line_text}; peak RSS {kaito.peak_rss_mib:.0f} MiB over the run"
        + (f" (kopf {kopf.peak_rss_mib:.0f} MiB, caching no pods)" if kopf else "")
        + f". Readings: {steps_text(kaito)}.",
    })  # fmt: skip
    k50, k99 = percentile(kaito.settled_latency, 0.5), percentile(kaito.settled_latency, 0.99)
    o50, o99 = (
        (percentile(kopf.settled_latency, 0.5), percentile(kopf.settled_latency, 0.99))
        if kopf
        else (None, None)
    )
    r50, r99 = percentile(kaito.ready_latency, 0.5), percentile(kaito.ready_latency, 0.99)
    rows.append({
        "id": "P9", "name": f"Latency from create to settled, p99, {len(kaito.settled_latency)} Workspaces arriving at "
        f"{P9_RATE:g}/s with {sizes[-1]} in the cache",
        "value": round(k99, 3) if k99 is not None else None, "unit": "s",
        "baseline_name": "kopf peer, same writes", "baseline_value": round(o99, 3) if o99 is not None else None,
        "ratio": round(k99 / o99, 2) if k99 and o99 else None, "target": f"p99 <= {P9_TARGET_S:g} s and below kopf",
        "met": bool(k99 is not None and k99 <= P9_TARGET_S and (o99 is None or k99 <= o99)),
        "note": f"p50 kaito-ctrl {k50 and round(k50, 3)} s, kopf {o50 and round(o50, 3)} s. To WorkspaceReady True "
        f"(kaito-ctrl; the bench's stand-in Deployment controller starts one pod per Deployment and reports it "
        f"ready when kwok does): p50 {r50 and round(r50, 3)} s, p99 {r99 and round(r99, 3)} s.",
    })  # fmt: skip
    return rows


def run(quick: bool = False) -> list[dict[str, Any]]:
    label = scale(quick)
    sizes = SIZES[label]
    p9 = 40 if quick else P9_COUNT
    kopf_problem = bw.ensure_kopf()
    with tempfile.TemporaryDirectory(prefix="kaito-bench-scale-") as tmp:
        kaito, templates = on_own_cluster(lambda kc: run_kaito(kc, sizes, p9, Path(tmp)))
        kopf = None
        if kopf_problem is None and templates is not None:
            kopf_dir = Path(tmp) / "kopf"
            kopf_dir.mkdir()
            kopf = on_own_cluster(lambda kc: run_kopf(kc, sizes, p9, kopf_dir, templates))
    rows = rows_from(sizes, kaito, kopf, label)
    if kopf_problem:
        for row in rows:
            row["note"] += f" kopf unavailable: {kopf_problem}"
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    logsetup.configure("info", "json")
    for row in run(quick=args.quick):
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
