"""P10 ARM requests of the node provisioner: per GPU node lifecycle, and per hour at rest with many pools.

Both are counted at the fake ARM server (``kaito_ctrl.sandbox.fakearm``, its own process, started as P11 starts
it: ``bench_burst_nodeclaims.fake_arm``, pool create 5 s, delete 3 s, ``Retry-After: 1`` on every accepted PUT
and DELETE and on every poll of an operation in progress), by route and method ("PUT pool", "GET operation",
...), through its own counters (``/_fake/requests``); the benchmark itself reads only the fake's admin API while
counting, never an ARM route.

- **a lifecycle** (row P10a): ``kaito-ctrl run --node-provisioner nodeclaim --no-leader-elect --no-webhook``
  (both controllers as shipped, its own process, the fake's Azure environment and no ``KAITO_*`` variable).
  One Workspace (the seed's phi-3 on ``Standard_NC6s_v3`` with a label selector of its own, as in P11) is
  created; the benchmark waits until its NodeClaim is Ready (agent pool created, Node joined, Ready, its GPU
  allocatable), deletes the Workspace and waits until the Workspace, the NodeClaim and the agent pool (the
  fake's admin list) are gone. One warm-up lifecycle, then N counted ones, one after the other; the figure is
  the mean per lifecycle. The garbage collector's LISTs that fall inside are left out of it (they are at-rest
  traffic, P10b) and named in the note.
- **at rest** (row P10b): a second ``kaito-ctrl run`` with the same flags plus ``--gc-interval`` (the
  shipped period, 120 s, would need 4 minutes for two periods; the flag is the one a user has). M Workspaces
  are created at once and left until every one is ready (M pools, M ready NodeClaims); then the window opens
  right after a garbage-collection LIST is seen at the fake and closes right after the second LIST after it
  (or after three periods). Every ARM request inside is counted: requests per hour at that period, LISTs per
  period, and the hourly figure the shipped period gives (LISTs per period x 30 per hour, plus every other
  request per hour as measured).

The baselines are not run (gpu-provisioner needs Go and Karpenter): they are what Azure/gpu-provisioner's
source sends for the same fake timings, stated in ``GPU_PROVISIONER``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import math
import os
import statistics
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog

from bench import processes
from bench.bench_burst_nodeclaims import (
    CREATE_SECONDS,
    DELETE_SECONDS,
    FakeArm,
    clear_system,
    fake_arm,
    kaito_argv,
    prepare_cluster,
    require_kcm,
    wait_ready,
    workspace,
    workspace_ready,
)
from bench.bench_workspaces import create_workspaces, kaito_env, names_for, poll_until
from kaito_ctrl import logsetup
from kaito_ctrl.api import labels as L
from kaito_ctrl.controllers.provisioner.cloud.azure import AzureProvider
from kaito_ctrl.kube import conditions as cond
from kaito_ctrl.kube.client import KubeClient
from kaito_ctrl.kube.resources import NAMESPACES, NODECLAIMS, WORKSPACES
from kaito_ctrl.settings import Settings

RETRY_AFTER = 1  # bench_burst_nodeclaims.fake_arm starts the fake with --retry-after 1
SHIPPED_GC = Settings().gc_interval
LIST = "GET pools"
# Counted by the fake beside the request itself ("DELETE pool" too): not a request of its own.
SUBCOUNTS = frozenset({"DELETE pool ignoring PDBs"})
DRIVER_QPS = 500
LIFECYCLE_TIMEOUT = 120.0
BENCH_LABEL = ("kaito.sh/bench", "arm-calls")

# What the ARM protocol asks for one lifecycle with these timings: PUT, polls of Azure-AsyncOperation every
# Retry-After until Succeeded, the final GET of the pool (the PUT's result); DELETE, polls until Succeeded.
CREATE_POLLS = math.ceil(CREATE_SECONDS / RETRY_AFTER)
DELETE_POLLS = math.ceil(DELETE_SECONDS / RETRY_AFTER)
LRO_MINIMUM = (1 + CREATE_POLLS + 1) + (1 + DELETE_POLLS)
# What kaito-ctrl's safety adds to it: the GET of the pool before its PUT (a pool found after a restart is
# adopted or waited on, never PUT again) and the compute usages of the quota pre-check (the SKU list behind it
# is cached for an hour per process).
KAITO_FLOOR = LRO_MINIMUM + 2

# Azure/gpu-provisioner at c09a56c (Karpenter core v1.7.0, azcore v1.12.0), for the same fake timings.
# pkg/providers/instance/armutils.go: createAgentPool = BeginCreateOrUpdate + PollUntilDone (azcore's poller
# honours Retry-After, first wait included; default frequency 30 s) + the final GET of a PUT (azcore
# internal/pollers/async: "for PATCH and PUT, the final GET is on the original resource URL");
# deleteAgentPool = getAgentPool + BeginDelete + PollUntilDone; Karpenter's nodeclaim lifecycle termination
# (vendor/sigs.k8s.io/karpenter/pkg/controllers/nodeclaim/lifecycle/controller.go) calls Delete again after 5 s
# until it gets NodeClaimNotFound: one more GET (404). No existence check before the PUT, no quota pre-check.
GPU_PROVISIONER_LIFECYCLE = (1 + CREATE_POLLS + 1) + (1 + 1 + DELETE_POLLS) + 1
# At rest: two singletons list every agent pool every 2 min, pkg/controllers/instance/garbagecollection/
# controller.go (RequeueAfter 2 min) and Karpenter core's nodeclaim garbagecollection (RequeueAfter 2 min);
# one page each for up to 100 pools. Nothing else calls ARM while nothing changes.
GPU_PROVISIONER_PERIOD = 120.0
GPU_PROVISIONER_LISTS = 2
GPU_PROVISIONER_PER_HOUR = GPU_PROVISIONER_LISTS * 3600 / GPU_PROVISIONER_PERIOD
GPU_PROVISIONER_SOURCE = (
    "Azure/gpu-provisioner pkg/providers/instance/armutils.go (createAgentPool, deleteAgentPool), "
    "pkg/controllers/instance/garbagecollection/controller.go and vendored Karpenter v1.7.0 "
    "nodeclaim/lifecycle/controller.go and nodeclaim/garbagecollection/controller.go"
)

log = structlog.get_logger("bench.arm_calls")


def requests_between(before: collections.Counter[str], after: collections.Counter[str]) -> dict[str, int]:
    """ARM requests by kind between two readings of the fake's counters."""
    return {k: after[k] - before[k] for k in after if k not in SUBCOUNTS and after[k] > before[k]}


async def fake_pools(arm: FakeArm) -> list[dict[str, Any]]:
    """The fake's agent pools through its admin API (not an ARM route, so not counted)."""
    pools: list[dict[str, Any]] = await arm.admin("/_fake/pools")
    return pools


async def new_namespace(client: KubeClient, what: str) -> str:
    ns = f"bench-arm-{what}-{uuid.uuid4().hex[:6]}"
    await client.create(NAMESPACES, {"metadata": {"name": ns, "labels": dict([BENCH_LABEL])}})
    return ns


def claim_selector(ns: str, name: str) -> str:
    return f"{L.LABEL_WORKSPACE}={name},{L.LABEL_WORKSPACE_NAMESPACE}={ns}"


async def lifecycle(
    client: KubeClient, arm: FakeArm, ns: str, name: str, alive: Callable[[], str | None]
) -> dict[str, int]:
    """One Workspace from create to its agent pool gone; the ARM requests the fake served meanwhile."""
    before = await arm.request_counts()
    await create_workspaces(client, ns, [name], retry_for=30, body=workspace)
    claims: list[dict[str, Any]] = []

    async def claim_ready() -> bool:
        nonlocal claims
        problem = alive()
        if problem:
            raise RuntimeError(problem)
        claims = await client.list_all(NODECLAIMS, label_selector=claim_selector(ns, name))
        return len(claims) == 1 and cond.is_true(claims[0], "Ready")

    await poll_until(f"the NodeClaim of {ns}/{name} to be Ready", claim_ready, LIFECYCLE_TIMEOUT, 0.2)
    pool = claims[0]["metadata"]["name"]
    await client.delete(WORKSPACES, name, ns)

    async def all_gone() -> bool:
        problem = alive()
        if problem:
            raise RuntimeError(problem)
        if await client.list_all(NODECLAIMS, label_selector=claim_selector(ns, name)):
            return False
        if any(w["metadata"]["name"] == name for w in await client.list_all(WORKSPACES, ns)):
            return False
        return all(p.get("name") != pool for p in await fake_pools(arm))

    await poll_until(
        f"{ns}/{name}, its NodeClaim and pool {pool} to be gone", all_gone, LIFECYCLE_TIMEOUT, 0.2
    )
    return requests_between(before, await arm.request_counts())


async def measure_lifecycles(
    kubeconfig: str, client: KubeClient, arm: FakeArm, provider: AzureProvider, workdir: Path, n: int
) -> dict[str, Any]:
    argv, _ = kaito_argv()
    env = {**kaito_env(kubeconfig), **arm.env}
    ns = await new_namespace(client, "lifecycle")
    got: dict[str, Any] = {"argv": argv}
    async with processes.started("kaito-ctrl", argv, env, workdir / "kaito-lifecycle.log", workdir) as proc:
        try:
            got["warmup"] = await lifecycle(client, arm, ns, "warmup", proc.exited)
            got["lifecycles"] = []
            got["seconds"] = []
            for i in range(n):
                t0 = time.monotonic()
                got["lifecycles"].append(await lifecycle(client, arm, ns, f"lc{i}", proc.exited))
                got["seconds"].append(time.monotonic() - t0)
        finally:
            await clear_system(client, arm, provider, ns)
    return got


async def measure_at_rest(
    kubeconfig: str,
    client: KubeClient,
    arm: FakeArm,
    provider: AzureProvider,
    workdir: Path,
    pools: int,
    gc_interval: float,
) -> dict[str, Any]:
    argv, _ = kaito_argv("--gc-interval", f"{gc_interval:g}")
    env = {**kaito_env(kubeconfig), **arm.env}
    ns = await new_namespace(client, "rest")
    names = names_for(pools)
    got: dict[str, Any] = {"argv": argv, "pools": pools, "gc_interval": gc_interval}
    async with processes.started("kaito-ctrl", argv, env, workdir / "kaito-rest.log", workdir) as proc:
        try:
            await create_workspaces(client, ns, names, retry_for=30, body=workspace)
            await wait_ready(
                client, ns, set(names), 180 + 2.0 * pools, WORKSPACES, workspace_ready, proc.exited
            )
            settled = [
                p
                for p in await fake_pools(arm)
                if p.get("properties", {}).get("provisioningState") == "Succeeded"
            ]
            got["pools_seen"] = len(settled)
            # Open the window right after a garbage-collection LIST.
            latest = first = await arm.request_counts()

            async def listed(base: collections.Counter[str], more: int) -> bool:
                nonlocal latest
                problem = proc.exited()
                if problem:
                    raise RuntimeError(problem)
                latest = await arm.request_counts()
                return latest[LIST] >= base[LIST] + more

            await poll_until("a garbage-collection LIST", lambda: listed(first, 1), 2 * gc_interval + 30, 0.1)
            start, t0 = latest, time.monotonic()
            # Fewer LISTs than periods: the window is three periods long.
            with contextlib.suppress(TimeoutError):
                await poll_until("two more LISTs", lambda: listed(start, 2), 3 * gc_interval, 0.1)
            got["window"] = time.monotonic() - t0
            got["requests"] = requests_between(start, latest)
        finally:
            await clear_system(client, arm, provider, ns)
    return got


async def measure(kubeconfig: str, n: int, pools: int, gc_interval: float) -> dict[str, Any]:
    client = await KubeClient.from_kubeconfig(kubeconfig, qps=DRIVER_QPS, burst=DRIVER_QPS)
    got: dict[str, Any] = {"errors": []}

    async def attempt(part: str, work: Awaitable[dict[str, Any]]) -> None:
        """One part; a failure goes to the row's note and the other part still runs."""
        try:
            got[part] = await work
        except Exception as e:
            log.warning("arm bench part failed", part=part, error=traceback.format_exc(limit=4))
            got["errors"].append(f"{part}: {type(e).__name__}: {str(e)[:300]}")

    try:
        await prepare_cluster(client)
        await require_kcm(client)
        with tempfile.TemporaryDirectory(prefix="kaito-bench-arm-") as tmp:
            workdir = Path(tmp)
            async with fake_arm(kubeconfig, workdir) as arm:
                provider = arm.provider()  # the driver's own, for cleaning up only (outside the counts)
                try:
                    await attempt(
                        "lifecycle", measure_lifecycles(kubeconfig, client, arm, provider, workdir, n)
                    )
                    await attempt(
                        "rest",
                        measure_at_rest(kubeconfig, client, arm, provider, workdir, pools, gc_interval),
                    )
                finally:
                    await provider.close()
    finally:
        await client.close()
    return got


# ---------------------------------------------------------------------------- reporting
def shown(argv: list[str]) -> str:
    """The command line as a user types it: the free loopback ports of metrics and probes left out."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--metrics-bind-address", "--health-probe-bind-address"):
            skip = True
        else:
            out.append(arg)
    return "`kaito-ctrl " + " ".join(out[1:]) + "`"


def _kinds(runs: list[dict[str, int]]) -> str:
    kinds = sorted({k for r in runs for k in r})
    return ", ".join(f"{k} {statistics.mean(r.get(k, 0) for r in runs):.1f}" for k in kinds)


def lifecycle_row(got: dict[str, Any], n: int, errors: list[str]) -> dict[str, Any]:
    part = got.get("lifecycle") or {}
    runs: list[dict[str, int]] = part.get("lifecycles") or []
    counted = [{k: v for k, v in r.items() if k != LIST} for r in runs]
    value = statistics.mean(sum(r.values()) for r in counted) if counted else None
    notes = [
        f"{shown(part.get('argv') or kaito_argv()[0])} as shipped, its own process (metrics and probes on free "
        "loopback ports); fake ARM "
        f"its own process (pool create {CREATE_SECONDS:.0f} s, delete {DELETE_SECONDS:.0f} s, Retry-After "
        f"{RETRY_AFTER} s); one Workspace (phi-3, its own NodeClaim) from create to NodeClaim Ready to Workspace "
        f"deleted to agent pool gone, {n} lifecycles after a warm-up, mean per lifecycle",
    ]
    if counted:
        totals = ", ".join(str(sum(r.values())) for r in counted)
        seconds = ", ".join(f"{s:.1f}" for s in part.get("seconds") or [])
        notes.append(f"by kind: {_kinds(counted)} (lifecycles: {totals} requests; {seconds} s)")
    lists = sum(r.get(LIST, 0) for r in runs)
    notes.append(
        f"garbage-collection LISTs inside the lifecycles, not counted (at-rest traffic, P10b): {lists}"
    )
    if part.get("warmup"):
        notes.append(f"warm-up lifecycle (SKU list, cached 1 h per process): {_kinds([part['warmup']])}")
    notes.append(
        f"LRO minimum {LRO_MINIMUM} (PUT + {CREATE_POLLS} polls of Azure-AsyncOperation at Retry-After until "
        f"Succeeded + the final GET of the pool; DELETE + {DELETE_POLLS} polls); target {KAITO_FLOOR} = that + "
        "the GET before the PUT (a pool found after a restart is adopted or waited on, never PUT twice) + the "
        "usages of the quota pre-check"
    )
    notes.append(
        f"baseline gpu-provisioner from its source, not run: PUT + {CREATE_POLLS} polls + final GET, then GET + "
        f"DELETE + {DELETE_POLLS} polls, and one GET (404) when Karpenter's termination calls Delete again 5 s "
        f"later = {GPU_PROVISIONER_LIFECYCLE}, with no existence check before the PUT and no quota pre-check "
        f"({GPU_PROVISIONER_SOURCE})"
    )
    notes += [f"failed: {e}" for e in errors if e.startswith("lifecycle")]
    return {
        "id": "P10a",
        "name": "ARM requests per GPU node lifecycle (create to delete), counted at the fake ARM, "
        "`kaito-ctrl run` as shipped",
        "value": value,
        "unit": "requests",
        "baseline_name": "gpu-provisioner (its source)",
        "baseline_value": GPU_PROVISIONER_LIFECYCLE,
        "ratio": value / GPU_PROVISIONER_LIFECYCLE if value is not None else None,
        "target": f"<= {KAITO_FLOOR}",
        "met": value is not None and value <= KAITO_FLOOR,
        "note": "; ".join(notes),
    }


def rest_row(got: dict[str, Any], pools: int, gc_interval: float, errors: list[str]) -> dict[str, Any]:
    part = got.get("rest") or {}
    requests: dict[str, int] | None = part.get("requests")
    window: float = part.get("window") or 0.0
    value = per_period = None
    notes = [
        f"{shown(part.get('argv') or kaito_argv('--gc-interval', f'{gc_interval:g}')[0])} "
        f"(the shipped {SHIPPED_GC:.0f} s GC period would take {2 * SHIPPED_GC / 60:.0f} min for two periods; "
        f"--gc-interval {gc_interval:g} is the user's flag), its own process; {pools} Workspaces each with its "
        "own NodeClaim and agent pool, all ready, then a window from just after a garbage-collection LIST to just "
        "after the second LIST after it (at most three periods)",
    ]
    if requests is not None and window > 0:
        lists = requests.get(LIST, 0)
        others = sum(v for k, v in requests.items() if k != LIST)
        # The window runs from one LIST to the second after it (or three periods): whole periods, read to within
        # the 0.1 s polling of its ends, which must not turn 2 LISTs in 2 periods into 1.0003 per period.
        per_period = lists / max(1, round(window / gc_interval))
        value = per_period * 3600 / SHIPPED_GC + others * 3600 / window
        notes.append(
            f"window {window:.1f} s: {sum(requests.values())} requests ({_kinds([requests]) or 'none'}), "
            f"{sum(requests.values()) * 3600 / window:.0f} per hour at --gc-interval {gc_interval:g}; "
            f"{per_period:.2f} LISTs per GC period; pools ready at the fake: {part.get('pools_seen')}"
        )
        notes.append(
            f"value: per hour at the shipped {SHIPPED_GC:.0f} s period = LISTs per period x "
            f"{3600 / SHIPPED_GC:.0f} + other requests per hour as measured ({others})"
        )
    notes.append(
        f"baseline gpu-provisioner from its source, not run: {GPU_PROVISIONER_LISTS} LISTs every "
        f"{GPU_PROVISIONER_PERIOD:.0f} s (its instance garbage collection and Karpenter's nodeclaim garbage "
        f"collection, RequeueAfter 2 min each; one page up to 100 pools), nothing else at rest ("
        f"{GPU_PROVISIONER_SOURCE})"
    )
    notes += [f"failed: {e}" for e in errors if e.startswith("rest")]
    return {
        "id": "P10b",
        "name": f"ARM requests per hour at rest with {pools} pools (ready NodeClaims), counted at the fake ARM",
        "value": value,
        "unit": "requests/h",
        "baseline_name": "gpu-provisioner (its source)",
        "baseline_value": GPU_PROVISIONER_PER_HOUR,
        "ratio": value / GPU_PROVISIONER_PER_HOUR if value is not None else None,
        "target": f"<= {3600 / SHIPPED_GC:.0f} (one LIST per GC period)",
        "met": value is not None
        and per_period is not None
        and per_period <= 1.0
        and value <= 3600 / SHIPPED_GC,
        "note": "; ".join(notes),
    }


def run(quick: bool = False) -> list[dict[str, Any]]:
    kubeconfig = os.environ.get("KAITO_BENCH_KUBECONFIG")
    if not kubeconfig:
        return []  # needs a cluster: run_all or __main__ provides one
    if not structlog.is_configured():
        logsetup.configure("info", "json")
    n, pools, gc_interval = (2, 10, 10.0) if quick else (5, 50, 20.0)
    try:
        got = asyncio.run(measure(kubeconfig, n, pools, gc_interval))
    except Exception as e:  # the setup failed: rows saying so, never a crash of run_all
        log.warning("arm bench failed", error=traceback.format_exc(limit=4))
        got = {"errors": [f"lifecycle: setup: {type(e).__name__}: {str(e)[:300]}", "rest: setup failed"]}
    errors: list[str] = got["errors"]
    return [lifecycle_row(got, n, errors), rest_row(got, pools, gc_interval, errors)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="2 lifecycles, 10 pools at rest, GC every 10 s")
    args = parser.parse_args()
    from kaito_ctrl.testing.controlplane import ControlPlaneOptions

    options = ControlPlaneOptions(controller_manager=True, scheduler=True, kwok=True, gpu_nodes=())
    t0 = time.monotonic()
    rows = processes.on_bench_cluster(options, lambda: run(quick=args.quick))
    print(json.dumps(rows, indent=1))
    print(f"took {time.monotonic() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
