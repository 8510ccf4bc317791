"""P11 a burst of Workspaces that each need a GPU node of their own, through NodeClaims and the fake ARM.

N preset inference Workspaces (phi-3-mini-4k-instruct on ``Standard_NC6s_v3``, the seed's example, each with a
label selector of its own so that it gets its own node) are created at once (16 creates in flight), and the
clock stops at the first LIST poll (with a deadline) that shows every one of them ready. Under each system the
same environment turns NodeClaims into nodes:

- the fake ARM server (``kaito_ctrl.sandbox.fakearm``) as its own process, the simulated AKS the sandbox uses:
  an agent pool create takes ``CREATE_SECONDS``, its Node joins ``JOIN_DELAY`` later (a kwok Node named and
  labelled as AKS does), and its GPUs become allocatable once the NVIDIA device-plugin DaemonSet's pod runs on
  it (``manifests/nvidia-device-plugin.yaml``, scheduled by kube-scheduler, made Running by kwok);
- kube-controller-manager and kube-scheduler (Deployments make pods, pods get nodes) and kwok (pods become
  Ready), so "ready" means what it means on a cluster.

The systems, each in a fresh namespace per round:

- **kaito-ctrl** (the headline): ``kaito-ctrl run --node-provisioner nodeclaim --no-leader-elect --no-webhook``
  as its own process, both controllers as shipped (Workspace and node provisioner), with the fake ARM's Azure
  environment and no ``KAITO_*`` variable (``bench_workspaces.kaito_env``); only its metrics and probe servers
  move to free loopback ports. Ready is the Workspace's WorkspaceSucceeded, ResourceReady and InferenceReady
  all True. Its CPU (user+sys) across the timed round, peak RSS, apiserver requests (its /metrics) and ARM
  requests (the fake's counters) are reported.
- **raw** (the baseline): the floor this environment allows, in the driver's process. For each Workspace as
  its create returns, concurrently (the provisioner too runs every pool operation as a task of its own): the
  NodeClaim kaito-ctrl would write (``claim_manifest``), the agent pool kaito-ctrl's provisioner would ask for
  (``pool_spec``) through the real ``AzureProvider`` (the Azure SDK: its GET, PUT and the long-running
  operation's polls), a wait for the pool's Node to be Ready with a GPU allocatable (one shared LIST poll of
  the fake's Nodes every 0.2 s), then the Service and Deployment kaito-ctrl renders, applied. Ready is every
  Deployment with its pod ready (a LIST poll). It writes no Workspace status and no NodeClaim status, and
  skips the quota pre-check, the Node registration patches and the finalizers.
- **kopf** (the peer): ``bench/peers/kopf_workspace/nodeclaim_operator.py`` as the Workspace controller (its
  own process, from ``bench/peers/.venv``) with ``kaito-ctrl run --controllers provisioner --node-provisioner
  nodeclaim`` as the node provisioner. The provisioner is not what is compared; the kopf process's CPU and RSS
  are reported apart from it.

Each system is warmed up with one Workspace before its clock runs; after its round it deletes its Workspaces
while it still runs, and the benchmark waits until their NodeClaims, agent pools and Nodes are gone (dropping
finalizers only if a deadline passes), so each system meets the same cluster. Rounds alternate the order of
the systems; figures are medians of 3 rounds (1 with ``--quick``).

``python -m bench.bench_burst_nodeclaims [--quick] [N]`` starts its own control plane (with kube-controller-
manager and kube-scheduler) when ``KAITO_BENCH_KUBECONFIG`` is unset and prints the rows as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import copy
import json
import os
import ssl
import statistics
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import structlog
import yaml

from bench import processes
from bench.bench_workspaces import (
    CRD_FILE,
    CREATE_CONCURRENCY,
    KAITO_CTRL,
    KOPF_VERSION,
    PEERS,
    Round,
    create_workspaces,
    ensure_kopf,
    first_mismatch,
    kaito_env,
    names_for,
    poll_until,
)
from kaito_ctrl import logsetup
from kaito_ctrl.api import labels as L
from kaito_ctrl.controllers.provisioner.agentpool import AGENTPOOL_LABEL, is_kaito_pool, pool_spec
from kaito_ctrl.controllers.provisioner.cloud.azure import AzureProvider
from kaito_ctrl.controllers.provisioner.cloud.config import AzureSettings
from kaito_ctrl.controllers.workspace.nodes import (
    claim_manifest,
    claim_node_requirements,
    node_gpus,
    node_is_ready,
    node_object_name,
)
from kaito_ctrl.controllers.workspace.spec import WorkspaceSpec
from kaito_ctrl.controllers.workspace.workload import render_inference
from kaito_ctrl.kube import conditions as cond
from kaito_ctrl.kube.client import KubeClient
from kaito_ctrl.kube.errors import Conflict, NotFound
from kaito_ctrl.kube.resources import (
    CRDS,
    DEPLOYMENTS,
    NAMESPACES,
    NODECLAIMS,
    NODES,
    PODS,
    SERVICES,
    WORKSPACES,
    Resource,
)
from kaito_ctrl.runtime.gctuning import tune_gc
from kaito_ctrl.sandbox.fakearm.joiner import CLUSTER_LABEL, label_value
from kaito_ctrl.sandbox.stack import FakeArmProcess
from kaito_ctrl.settings import Settings

REPO = Path(__file__).resolve().parents[1]
KOPF_OPERATOR = PEERS / "kopf_workspace" / "nodeclaim_operator.py"
NODECLAIM_CRD = REPO / "manifests" / "crds" / "karpenter.sh_nodeclaims.yaml"
DEVICE_PLUGIN = REPO / "manifests" / "nvidia-device-plugin.yaml"
DAEMONSETS = Resource("apps", "v1", "daemonsets", "DaemonSet")

PRESET = "phi-3-mini-4k-instruct"
INSTANCE_TYPE = "Standard_NC6s_v3"  # examples/inference/kaito_workspace_phi_3.yaml
# The fake ARM's timings, the sandbox's (FakeArmProcess defaults): small next to AKS's minutes, but each step
# takes a realistic share of the wait so the controllers' own delays show.
CREATE_SECONDS = 5.0
DELETE_SECONDS = 3.0
JOIN_DELAY = 2.0
CLIENT_QPS = Settings().kube_client_qps
CLIENT_BURST = Settings().kube_client_burst
DRIVER_QPS = 2000
NODE_POLL = 0.2  # the raw baseline's shared LIST of the fake's Nodes
WARMUP = "warmup"
BENCH_LABEL = ("kaito.sh/bench", "burst-nodeclaims")
# Placeholders in the bodies handed to the kopf peer (rendered here by kaito-ctrl's own functions).
PLACEHOLDERS = {
    "name": "@@ws-name@@",
    "namespace": "@@ws-namespace@@",
    "uid": "@@ws-uid@@",
    "claim": "@@claim@@",
}
SYSTEMS = ("kaito", "raw", "kopf")

log = structlog.get_logger("bench.burst_nodeclaims")


# ---------------------------------------------------------------------------- the workload
def workspace(name: str) -> dict[str, Any]:
    """The seed's phi-3 example, with a selector label of its own so that each Workspace gets its own node."""
    return {
        "apiVersion": WORKSPACES.api_version,
        "kind": "Workspace",
        "metadata": {"name": name},
        "resource": {"instanceType": INSTANCE_TYPE, "labelSelector": {"matchLabels": {"apps": name}}},
        "inference": {"preset": {"name": PRESET}},
    }


def convergence_timeout(n: int) -> float:
    return 240 + 2.0 * n


def claim_for(ws: dict[str, Any]) -> dict[str, Any]:
    """The NodeClaim kaito-ctrl's Workspace controller writes for a stored Workspace's first node."""
    spec = WorkspaceSpec(copy.deepcopy(ws))
    return claim_manifest("nodeclaim", spec, node_object_name(spec, 0))


def workload_for(ws: dict[str, Any]) -> list[dict[str, Any]]:
    """The Service and Deployment kaito-ctrl renders for a stored Workspace on its claimed node."""
    spec = WorkspaceSpec(copy.deepcopy(ws))
    return render_inference(
        spec, nodes=1, node_requirements=claim_node_requirements(spec), registry=Settings().image_registry
    )


def workspace_ready(ws: dict[str, Any]) -> bool:
    return all(
        cond.is_true(ws, c)
        for c in (L.COND_RESOURCE_READY, L.COND_INFERENCE_READY, L.COND_WORKSPACE_SUCCEEDED)
    )


def deployment_ready(d: dict[str, Any]) -> bool:
    status = d.get("status") or {}
    return int(status.get("readyReplicas") or 0) >= int((d.get("spec") or {}).get("replicas") or 1)


def kaito_argv(*extra: str) -> tuple[list[str], str]:
    """`kaito-ctrl run` serving NodeClaims as shipped (``extra``: the flags a user adds), metrics and probes on
    free loopback ports; the argv and its metrics URL."""
    metrics_port, probe_port = processes.free_port(), processes.free_port()
    argv = [
        str(KAITO_CTRL), "run", *extra, "--node-provisioner", "nodeclaim", "--no-leader-elect", "--no-webhook",
        "--metrics-bind-address", f"127.0.0.1:{metrics_port}",
        "--health-probe-bind-address", f"127.0.0.1:{probe_port}",
    ]  # fmt: skip
    return argv, f"http://127.0.0.1:{metrics_port}/metrics"


# ---------------------------------------------------------------------------- the fake ARM process
@dataclass
class FakeArm:
    """The fake ARM server's process, its Azure environment and what the benchmark asks it."""

    env: dict[str, str]
    url: str
    ca_file: str
    cluster_label: str  # the value of kubernetes.azure.com/cluster on the Nodes it joins

    def provider(self) -> AzureProvider:
        """The provider kaito-ctrl builds from the same environment (AzureSettings.from_env)."""
        return AzureProvider(AzureSettings.from_env(self.env))

    async def admin(self, path: str) -> Any:
        """The fake's admin API (``/_fake/...``; not an ARM route, so not counted), as JSON."""
        ctx = ssl.create_default_context(cafile=self.ca_file)
        timeout = aiohttp.ClientTimeout(total=10)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(self.url + path, ssl=ctx) as resp,
        ):
            resp.raise_for_status()
            return await resp.json()

    async def request_counts(self) -> collections.Counter[str]:
        """ARM requests served so far by kind ("PUT pool", "GET operation", ...), the fake's own counters."""
        body = await self.admin("/_fake/requests")
        return collections.Counter({str(k): int(v) for k, v in body["counts"].items()})


@contextlib.asynccontextmanager
async def fake_arm(kubeconfig: str, workdir: Path) -> AsyncIterator[FakeArm]:
    """The fake ARM server started as the sandbox starts it (FakeArmProcess's flags and Azure environment), but
    through processes.started so that it dies with the benchmark."""
    state = workdir / "fake-arm"
    state.mkdir()
    spec = FakeArmProcess(
        state, kubeconfig, create_seconds=CREATE_SECONDS, delete_seconds=DELETE_SECONDS, join_delay=JOIN_DELAY
    )
    argv = [
        sys.executable, "-m", "kaito_ctrl.sandbox.fakearm", "--state-dir", str(state), "--kubeconfig", kubeconfig,
        "--create-seconds", str(CREATE_SECONDS), "--delete-seconds", str(DELETE_SECONDS),
        "--join-delay", str(JOIN_DELAY), "--retry-after", "1",
    ]  # fmt: skip
    ready_file = state / "ready.json"
    async with processes.started("fake-arm", argv, dict(os.environ), spec.log_path, workdir) as proc:

        async def listening() -> bool:
            if proc.exited():
                raise RuntimeError(proc.exited())
            return ready_file.exists()

        await poll_until("the fake ARM server to listen", listening, 60, 0.2)
        spec.ready = json.loads(ready_file.read_text())
        yield FakeArm(
            spec.azure_env(),
            spec.ready["url"],
            spec.ready["ca_file"],
            label_value(spec.ready["node_resource_group"]),
        )


# ---------------------------------------------------------------------------- cluster preparation
async def prepare_cluster(client: KubeClient) -> None:
    """The Workspace and NodeClaim CRDs and the NVIDIA device plugin DaemonSet (as tests/integration's rig
    installs them); each a no-op when done before."""
    for path in (CRD_FILE, NODECLAIM_CRD):
        crd = yaml.safe_load(path.read_text())
        await client.apply(CRDS, crd, field_manager="kaito-bench")

        async def established(name: str = crd["metadata"]["name"]) -> bool:
            return cond.is_true(await client.get(CRDS, name), "Established")

        await poll_until(f"the CRD {crd['metadata']['name']} to be established", established, 60, 0.2)
    await client.apply(DAEMONSETS, yaml.safe_load(DEVICE_PLUGIN.read_text()), field_manager="kaito-bench")
    with contextlib.suppress(Conflict):  # kaito-ctrl's own namespace (--namespace's default)
        await client.create(NAMESPACES, {"metadata": {"name": Settings().namespace}})


async def require_kcm(client: KubeClient) -> None:
    """Fail early when no kube-controller-manager runs (no Deployment would get a pod): its DaemonSet
    controller writes the device plugin DaemonSet's status."""

    async def observed() -> bool:
        ds = await client.get(DAEMONSETS, "nvidia-device-plugin", "kube-system")
        return int((ds.get("status") or {}).get("observedGeneration") or 0) >= int(
            ds["metadata"]["generation"]
        )

    try:
        await poll_until("kube-controller-manager", observed, 30, 0.5)
    except TimeoutError:
        raise RuntimeError(
            "no kube-controller-manager runs on this control plane: no pod would run"
        ) from None


async def new_namespace(client: KubeClient, system: str, run: int) -> str:
    ns = f"bench-burst-{system}-{run}-{uuid.uuid4().hex[:6]}"
    await client.create(NAMESPACES, {"metadata": {"name": ns, "labels": dict([BENCH_LABEL])}})
    return ns


# ---------------------------------------------------------------------------- driving and timing
async def wait_ready(
    client: KubeClient,
    namespace: str,
    names: set[str],
    timeout: float,
    resource: Resource,
    ready: Callable[[dict[str, Any]], bool],
    alive: Callable[[], str | None],
) -> float:
    """Poll with LIST calls until every named object of ``resource`` is ready; the perf_counter time of the
    LIST that showed it."""
    deadline = time.monotonic() + timeout
    while True:
        items = await client.list_all(resource, namespace)
        seen = time.perf_counter()
        done = {o["metadata"]["name"] for o in items if ready(o)} & names
        if done == names:
            return seen
        problem = alive()
        if problem:
            raise RuntimeError(problem)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(done)}/{len(names)} ready in {namespace} after {timeout:.0f} s")
        await asyncio.sleep(0.5)  # polling interval of a deadline-bounded wait


@dataclass
class Driven:
    """How a system's round is driven: what is ready, and what runs on each create (raw only)."""

    resource: Resource = WORKSPACES
    ready: Callable[[dict[str, Any]], bool] = workspace_ready
    on_created: Callable[[dict[str, Any]], Awaitable[None]] | None = None
    alive: Callable[[], str | None] = lambda: None


async def timed_round(client: KubeClient, ns: str, names: list[str], how: Driven) -> float:
    """Create ``names`` at once; seconds from the first create to the LIST that showed them all ready."""
    t0 = time.perf_counter()
    creating = asyncio.create_task(create_workspaces(client, ns, names, how.on_created, body=workspace))

    def problem() -> str | None:
        if creating.done() and not creating.cancelled() and creating.exception() is not None:
            return f"creating failed: {creating.exception()!r}"
        return how.alive()

    try:
        seen = await wait_ready(
            client, ns, set(names), convergence_timeout(len(names)), how.resource, how.ready, problem
        )
    finally:
        if not creating.done():
            creating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await creating
    return seen - t0


async def warm_up(client: KubeClient, ns: str, how: Driven) -> None:
    """One Workspace through the system before the clock runs: caches synced, connections open, code warm."""
    await create_workspaces(client, ns, [WARMUP], how.on_created, retry_for=30, body=workspace)
    await wait_ready(client, ns, {WARMUP}, 240, how.resource, how.ready, how.alive)


# ---------------------------------------------------------------------------- cleaning up between systems
async def _drop_finalizers(client: KubeClient, res: Resource, items: list[dict[str, Any]]) -> None:
    for obj in items:
        if obj["metadata"].get("finalizers"):
            with contextlib.suppress(NotFound):
                await client.merge_patch(
                    res,
                    obj["metadata"]["name"],
                    {"metadata": {"finalizers": None}},
                    obj["metadata"].get("namespace"),
                )


async def _gone(
    what: str, listing: Callable[[], Awaitable[list[dict[str, Any]]]], timeout: float
) -> list[dict[str, Any]]:
    """Wait until ``listing`` is empty; what is left when the deadline passes (logged), else []."""
    left: list[dict[str, Any]] = []

    async def empty() -> bool:
        nonlocal left
        left = await listing()
        return not left

    with contextlib.suppress(TimeoutError):
        await poll_until(what, empty, timeout, 0.5)
    if left:
        log.warning("left behind after the deadline; finalizers dropped", what=what, count=len(left))
    return left


async def clear_system(client: KubeClient, arm: FakeArm, provider: AzureProvider, ns: str) -> None:
    """Delete what a system made, while it still runs: its Workspaces (its controller releases them), their
    NodeClaims (the provisioner deletes their agent pools), leftover Kaito pools (the raw baseline's), then wait
    for the joined Nodes to go and empty the namespace. Only what outlives a deadline loses its finalizers."""
    selector = f"{L.LABEL_WORKSPACE_NAMESPACE}={ns}"
    await client.request("DELETE", WORKSPACES.path(ns))
    left = await _gone(f"Workspaces in {ns}", lambda: client.list_all(WORKSPACES, ns), 120)
    await _drop_finalizers(client, WORKSPACES, left)
    for claim in await client.list_all(NODECLAIMS, label_selector=selector):
        with contextlib.suppress(NotFound):
            await client.delete(NODECLAIMS, claim["metadata"]["name"])
    left = await _gone(
        f"NodeClaims of {ns}", lambda: client.list_all(NODECLAIMS, label_selector=selector), 120
    )
    await _drop_finalizers(client, NODECLAIMS, left)
    pools = [p.name for p in await provider.list_pools() if is_kaito_pool(p) and not p.deleting]
    await asyncio.gather(*(provider.delete_pool(p) for p in pools))
    fake_nodes = f"{CLUSTER_LABEL}={arm.cluster_label}"
    left = await _gone("the fake's Nodes", lambda: client.list_all(NODES, label_selector=fake_nodes), 120)
    await _drop_finalizers(client, NODES, left)
    # Pods whose Node is gone are never confirmed deleted by a kubelet: force them out, then the namespace.
    await client.request("DELETE", DEPLOYMENTS.path(ns))
    await client.request("DELETE", PODS.path(ns), params={"gracePeriodSeconds": "0"})
    with contextlib.suppress(NotFound):
        await client.delete(NAMESPACES, ns)


# ---------------------------------------------------------------------------- the systems
@dataclass
class Templates:
    """kaito-ctrl's bodies for one Workspace with placeholders, for the kopf peer (which has no kaito_ctrl), and
    the status a ready Workspace carries (from kaito-ctrl's warm-up Workspace)."""

    claim_json: str
    objects_json: str
    status: dict[str, Any]

    def dump(self, path: Path) -> None:
        path.write_text(
            json.dumps(
                {
                    "placeholders": PLACEHOLDERS,
                    "claim_json": self.claim_json,
                    "objects_json": self.objects_json,
                    "status": self.status,
                }
            )
        )


def templates_from(live: dict[str, Any]) -> Templates:
    stored = copy.deepcopy(live)
    stored.pop("status", None)
    stored["metadata"].update(
        name=PLACEHOLDERS["name"], namespace=PLACEHOLDERS["namespace"], uid=PLACEHOLDERS["uid"]
    )
    stored["resource"]["labelSelector"] = {"matchLabels": {"apps": PLACEHOLDERS["name"]}}
    claim = claim_for(stored)
    claim["metadata"]["name"] = PLACEHOLDERS["claim"]
    status = copy.deepcopy(live["status"])
    for c in status.get("conditions") or []:
        c.pop("lastTransitionTime", None)
        c.pop("observedGeneration", None)
    status.pop("observedGeneration", None)
    return Templates(orjson.dumps(claim).decode(), orjson.dumps(workload_for(stored)).decode(), status)


@dataclass
class Bench:
    kubeconfig: str
    client: KubeClient
    arm: FakeArm
    provider: AzureProvider  # the driver's own: raw baseline and cleanup
    n: int
    workdir: Path
    templates: Templates | None = None
    # Per run of a system: requests per Workspace while the clock ran, by kind.
    kaito_requests: list[dict[str, float]] = field(default_factory=list)
    arm_requests: dict[str, list[dict[str, float]]] = field(
        default_factory=lambda: collections.defaultdict(list)
    )
    # CPU seconds across each timed round and peak RSS of each process measured, by process name.
    cpu: dict[str, list[float]] = field(default_factory=lambda: collections.defaultdict(list))
    rss: dict[str, list[int]] = field(default_factory=lambda: collections.defaultdict(list))

    async def measured(
        self,
        system: str,
        ns: str,
        how: Driven,
        procs: dict[str, processes.ControllerProcess],
        metrics: str = "",
    ) -> float:
        """Warm up, then one timed round with CPU, RSS and request counts read around it."""
        await warm_up(self.client, ns, how)
        if system == "kaito" and self.templates is None:
            await self.capture_templates(ns)
        arm0 = await self.arm.request_counts()
        kube0 = await processes.request_counts(metrics) if metrics else None
        cpu0 = {name: p.cpu_seconds() for name, p in procs.items()}
        wall = await timed_round(self.client, ns, names_for(self.n), how)
        for name, p in procs.items():
            self.cpu[name].append(p.cpu_seconds() - cpu0[name])
            self.rss[name].append(p.peak_rss())
        arm1 = await self.arm.request_counts()
        self.arm_requests[system].append({k: (arm1[k] - arm0[k]) / self.n for k in arm1 if arm1[k] > arm0[k]})
        if kube0 is not None:
            kube1 = await processes.request_counts(metrics)
            self.kaito_requests.append(
                {m: (kube1[m] - kube0[m]) / self.n for m in kube1 if kube1[m] > kube0[m]}
            )
        return wall

    def _kaito_argv(self, *extra: str) -> tuple[list[str], str]:
        return kaito_argv(*extra)

    def _kaito_env(self) -> dict[str, str]:
        return {**kaito_env(self.kubeconfig), **self.arm.env}

    async def run_kaito(self, run: int) -> Round:
        """`kaito-ctrl run` with both controllers, as shipped, as its own process."""
        ns = await new_namespace(self.client, "kaito", run)
        argv, metrics = self._kaito_argv()
        log_path = self.workdir / f"kaito-ctrl-{run}.log"
        async with processes.started("kaito-ctrl", argv, self._kaito_env(), log_path, self.workdir) as proc:
            how = Driven(alive=proc.exited)
            try:
                wall = await self.measured("kaito", ns, how, {"kaito-ctrl": proc}, metrics)
            finally:
                await clear_system(self.client, self.arm, self.provider, ns)
        return Round(wall, self.cpu["kaito-ctrl"][-1], self.rss["kaito-ctrl"][-1])

    async def capture_templates(self, ns: str) -> None:
        """The kopf peer's bodies, rendered here by kaito-ctrl's functions and checked against what the
        kaito-ctrl process wrote for its warm-up Workspace."""
        live = await self.client.get(WORKSPACES, WARMUP, ns)
        claim = claim_for(live)
        got = await self.client.get(NODECLAIMS, claim["metadata"]["name"])
        checks = [(claim, got)]
        for obj in workload_for(live):
            res = SERVICES if obj["kind"] == "Service" else DEPLOYMENTS
            checks.append((obj, await self.client.get(res, WARMUP, ns)))
        for want, have in checks:
            where = first_mismatch({k: want[k] for k in ("metadata", "spec")}, have)
            if where:
                raise AssertionError(f"rendered {want['kind']} differs from kaito-ctrl's at {where}")
        self.templates = templates_from(live)

    async def run_raw(self, run: int) -> Round:
        ns = await new_namespace(self.client, "raw", run)
        kube = await KubeClient.from_kubeconfig(self.kubeconfig, qps=CLIENT_QPS, burst=CLIENT_BURST)
        provider = self.arm.provider()
        ready_pools: set[str] = set()
        poller = asyncio.create_task(self._poll_fake_nodes(kube, ready_pools))

        async def chain(ws: dict[str, Any]) -> None:
            claim = await kube.create(NODECLAIMS, claim_for(ws))
            name = claim["metadata"]["name"]
            await provider.create_pool(pool_spec(claim, time.time()))

            async def node_ready() -> bool:
                return name in ready_pools

            await poll_until(f"the Node of pool {name}", node_ready, 120, NODE_POLL / 2)
            for obj in workload_for(ws):
                await kube.apply(SERVICES if obj["kind"] == "Service" else DEPLOYMENTS, obj)

        def alive() -> str | None:
            if poller.done():
                return f"node poller ended: {poller.exception() if not poller.cancelled() else 'cancelled'}"
            return None

        how = Driven(DEPLOYMENTS, deployment_ready, chain, alive)
        try:
            wall = await self.measured("raw", ns, how, {})
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
            try:
                await clear_system(self.client, self.arm, self.provider, ns)
            finally:
                await provider.close()
                await kube.close()
        return Round(wall)

    async def _poll_fake_nodes(self, kube: KubeClient, ready_pools: set[str]) -> None:
        """One LIST of the fake's Nodes every NODE_POLL seconds for all of the raw baseline's waits: the pools
        whose Node is Ready with a GPU allocatable (what kaito-ctrl's Workspace controller waits for)."""
        selector = f"{CLUSTER_LABEL}={self.arm.cluster_label}"
        while True:
            for node in await kube.list_all(NODES, label_selector=selector):
                if node_is_ready(node) and node_gpus(node) > 0:
                    ready_pools.add((node["metadata"].get("labels") or {}).get(AGENTPOOL_LABEL, ""))
            await asyncio.sleep(NODE_POLL)  # the polling interval; the loop runs until cancelled

    async def run_kopf(self, run: int) -> Round:
        """The kopf peer as the Workspace controller, `kaito-ctrl run --controllers provisioner` beside it."""
        assert self.templates is not None, "kaito-ctrl runs first in the first round"
        ns = await new_namespace(self.client, "kopf", run)
        templates_file = self.workdir / "burst-templates.json"
        self.templates.dump(templates_file)
        env = {**os.environ, "KUBECONFIG": self.kubeconfig, "KAITO_BENCH_TEMPLATES": str(templates_file)}
        env.pop("PYTHONPATH", None)
        kopf_argv = [
            str(PEERS / ".venv" / "bin" / "python"), "-m", "kopf", "run", "--standalone", "--namespace", ns,
            str(KOPF_OPERATOR),
        ]  # fmt: skip
        argv, _ = self._kaito_argv("--controllers", "provisioner")
        prov_log = self.workdir / f"provisioner-{run}.log"
        async with (
            processes.started("provisioner", argv, self._kaito_env(), prov_log, self.workdir) as prov,
            processes.started("kopf", kopf_argv, env, self.workdir / f"kopf-{run}.log", self.workdir) as kopf,
        ):
            how = Driven(alive=lambda: kopf.exited() or prov.exited())
            try:
                wall = await self.measured("kopf", ns, how, {"kopf": kopf, "provisioner": prov})
            finally:
                await clear_system(self.client, self.arm, self.provider, ns)
        return Round(wall, self.cpu["kopf"][-1], self.rss["kopf"][-1])


# ---------------------------------------------------------------------------- measuring and reporting
async def measure(kubeconfig: str, n: int, runs: int) -> dict[str, Any]:
    client = await KubeClient.from_kubeconfig(kubeconfig, qps=DRIVER_QPS, burst=DRIVER_QPS)
    kopf_problem = await asyncio.to_thread(ensure_kopf)
    walls: dict[str, list[float]] = {s: [] for s in SYSTEMS}
    errors: dict[str, list[str]] = {s: [] for s in SYSTEMS}
    try:
        await prepare_cluster(client)
        await require_kcm(client)
        with tempfile.TemporaryDirectory(prefix="kaito-bench-burst-") as tmp:
            workdir = Path(tmp)
            async with fake_arm(kubeconfig, workdir) as arm:
                provider = arm.provider()
                bench = Bench(kubeconfig, client, arm, provider, n, workdir)
                # kaito first in the first round: its warm-up Workspace gives the kopf peer its bodies.
                systems = ["kaito", "raw"] + (["kopf"] if kopf_problem is None else [])
                try:
                    for run in range(runs):
                        for system in systems[run % len(systems) :] + systems[: run % len(systems)]:
                            await run_system(bench, system, run, walls, errors)
                        log.info("burst bench run", run=run, **{k: v[-1] for k, v in walls.items() if v})
                finally:
                    await provider.close()
    finally:
        await client.close()
    return {
        "walls": walls,
        "errors": errors,
        "kopf_problem": kopf_problem,
        "cpu": dict(bench.cpu),
        "rss": dict(bench.rss),
        "kaito_requests": bench.kaito_requests,
        "arm_requests": dict(bench.arm_requests),
    }


async def run_system(
    bench: Bench, system: str, run: int, walls: dict[str, list[float]], errors: dict[str, list[str]]
) -> None:
    """One system's round; a failure is recorded for the note (and the next system goes on)."""
    runner = {"kaito": bench.run_kaito, "raw": bench.run_raw, "kopf": bench.run_kopf}[system]
    try:
        walls[system].append((await runner(run)).wall)
    except Exception as e:  # reported in the row's note, never a crash of run_all
        log.warning("burst bench round failed", system=system, run=run, error=traceback.format_exc(limit=4))
        errors[system].append(f"{type(e).__name__}: {str(e)[:300]}")


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _usage(got: dict[str, Any], proc: str, n: int) -> str:
    cpu, rss = got["cpu"].get(proc) or [], got["rss"].get(proc) or []
    if not cpu or not rss:
        return ""
    runs = ", ".join(f"{c / n * 1000:.1f}" for c in cpu)
    return (
        f"{proc} CPU {statistics.median(cpu) / n * 1000:.1f} ms per Workspace (runs {runs}), "
        f"peak RSS {statistics.median(rss) / 2**20:.0f} MiB"
    )


def _requests(runs: list[dict[str, float]]) -> str:
    kinds = sorted({k for r in runs for k in r})
    total = statistics.median(sum(r.values()) for r in runs)
    parts = ", ".join(f"{k} {statistics.median(r.get(k, 0.0) for r in runs):.1f}" for k in kinds)
    return f"{total:.1f} ({parts})"


def rows_from(n: int, runs: int, got: dict[str, Any]) -> list[dict[str, Any]]:
    walls: dict[str, list[float]] = got["walls"]
    kaito, raw, kopf = (_median(walls[s]) for s in SYSTEMS)
    ratio = kaito / raw if kaito is not None and raw is not None else None
    notes = [
        f"{n} Workspaces created at once ({CREATE_CONCURRENCY} in flight), each {PRESET} on its own "
        f"{INSTANCE_TYPE} NodeClaim; fake ARM as its own process: pool create {CREATE_SECONDS:.0f} s, Node joins "
        f"{JOIN_DELAY:.0f} s after, GPU allocatable once the device-plugin pod runs; median of {runs}",
        "runs: "
        + (
            "; ".join(f"{s} {', '.join(f'{w:.1f}' for w in walls[s])} s" for s in SYSTEMS if walls[s])
            or "none"
        ),
        "kaito-ctrl: `kaito-ctrl run --node-provisioner nodeclaim --no-leader-elect --no-webhook` as shipped "
        "(both controllers, own process), ready = WorkspaceSucceeded, ResourceReady and InferenceReady True",
        "raw: in the driver's process, per Workspace as its create returns and all concurrently: the same "
        "NodeClaim, the same agent pool through the real AzureProvider (GET, PUT, operation polls), a shared LIST "
        f"of Nodes every {NODE_POLL} s until its Node is Ready with a GPU, the same Service and Deployment; ready = "
        "every Deployment's pod ready; no Workspace or NodeClaim status, quota check or Node registration",
    ]
    if kopf is not None and kaito is not None:
        notes.append(
            f"kopf {KOPF_VERSION} peer (bench/peers/kopf_workspace/nodeclaim_operator.py, polls every 1 s) as the "
            f"Workspace controller with `kaito-ctrl run --controllers provisioner` as provisioner (not compared): "
            f"median {kopf:.1f} s, kaito/kopf {kaito / kopf:.2f}x"
        )
    elif got["kopf_problem"] or got["errors"]["kopf"]:
        notes.append(f"kopf not measured: {got['kopf_problem'] or got['errors']['kopf'][0]}")
    usage = [u for u in (_usage(got, p, n) for p in ("kaito-ctrl", "kopf", "provisioner")) if u]
    if usage:
        notes.append(
            "; ".join(usage) + " (user+sys across the timed round; raw runs in the driver, unmeasured)"
        )
    if got["kaito_requests"]:
        notes.append(f"kaito-ctrl apiserver requests per Workspace {_requests(got['kaito_requests'])}")
    arm = [f"{s} {_requests(got['arm_requests'][s])}" for s in SYSTEMS if got["arm_requests"].get(s)]
    if arm:
        notes.append("ARM requests per Workspace: " + "; ".join(arm))
    failed = [f"{s}: {len(e)} failed ({e[0]})" for s, e in got["errors"].items() if e and s != "kopf"]
    if failed:
        notes.append("rounds failed: " + "; ".join(failed))
    return [
        {
            "id": "P11",
            "name": f"Burst of {n} Workspaces each with its own NodeClaim (node provisioner + fake ARM) to "
            "ready, `kaito-ctrl run` as shipped",
            "value": kaito,
            "unit": "s",
            "baseline_name": "raw: same NodeClaims, pools and workloads, no controller",
            "baseline_value": raw,
            "ratio": ratio,
            "target": "<= 1.3x",
            "met": ratio is not None and ratio <= 1.3,
            "note": "; ".join(notes),
        }
    ]


def run(quick: bool = False, n: int | None = None) -> list[dict[str, Any]]:
    kubeconfig = os.environ.get("KAITO_BENCH_KUBECONFIG")
    if not kubeconfig:
        return []  # needs a cluster: run_all or __main__ provides one
    tune_gc()  # for the raw baseline in this process, as `kaito-ctrl run` does
    if not structlog.is_configured():
        logsetup.configure("info", "json")
    runs = 1 if quick else 3
    n = n or (10 if quick else 50)
    try:
        got = asyncio.run(measure(kubeconfig, n, runs))
    except Exception as e:  # the setup failed: a row saying so, never a crash of run_all
        log.warning("burst bench failed", error=traceback.format_exc(limit=4))
        got = {"walls": {s: [] for s in SYSTEMS}, "errors": {s: [] for s in SYSTEMS}, "kopf_problem": None,
               "cpu": {}, "rss": {}, "kaito_requests": [], "arm_requests": {}}  # fmt: skip
        got["errors"]["kaito"].append(f"setup: {type(e).__name__}: {str(e)[:300]}")
    return rows_from(n, runs, got)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="10 Workspaces, one round")
    parser.add_argument("n", nargs="?", type=int, help="Workspaces per round (default 50; 10 with --quick)")
    args = parser.parse_args()
    from kaito_ctrl.testing.controlplane import ControlPlaneOptions

    options = ControlPlaneOptions(controller_manager=True, scheduler=True, kwok=True, gpu_nodes=())
    rows = processes.on_bench_cluster(options, lambda: run(quick=args.quick, n=args.n))
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
