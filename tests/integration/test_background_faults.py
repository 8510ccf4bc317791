"""Background work survives real network faults and resumes. Garbage collection, node sync (registering the
Node that joins from a claim's agent pool) and the webhook's start each have the link that matters put through
Toxiproxy (kaito_ctrl/testing/toxiproxy.py), reset (``reset_peer``) or black-holed (``timeout`` 0: data dropped,
connections held open); when the fault clears, the work must resume with nothing lost or duplicated.

- GC: its apiserver link, and its ARM link (the fake ARM is HTTPS; Toxiproxy is plain TCP, so TLS passes
  through, and the certificate's 127.0.0.1 SAN still matches). During the fault the loop survives its failed
  passes (it catches the client's ``TransportError`` and the provider's ``CloudError``) and deletes nothing it
  could not confirm; afterwards an orphan pool is deleted and a pool with a live claim is left alone.
- Node sync: a claim being provisioned while the provisioner's apiserver link is faulty ends Registered,
  Initialized and Ready, its Node carries the claim's labels, and there is one pool and one PUT for it.
- Webhook: its start (certificate Secret, configurations) black-holed; readiness stays false, each failure is
  logged with its cause and restarted by the supervisor, and it registers once the link is back. (The reset case
  is ``test_leader_faults.py::test_the_webhook_keeps_retrying_through_a_reset_link_and_registers_once_it_clears``.)

The clients behind the proxy have short request timeouts (the Kubernetes client's default is 30 s, the Azure
SDK's 300 s per attempt): a black-holed request ends with the timeout, so the tests would only be slower with
the defaults. ``test_seeded_fault_cycles_lose_no_task_and_duplicate_nothing`` is the long variant: a few seeded
runs in ``make test``, many in ``make chaos`` (``--chaos-full``), one JSON line per run in ``$KAITO_CHAOS_REPORT``
(``hack/chaos_summary.py`` summarises them).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import structlog
from structlog.testing import capture_logs

from kaito_ctrl import metrics
from kaito_ctrl.controllers.provisioner.cloud.azure import AzureProvider
from kaito_ctrl.controllers.provisioner.cloud.base import AgentPoolSpec
from kaito_ctrl.controllers.provisioner.setup import setup
from kaito_ctrl.kube import conditions as cond
from kaito_ctrl.kube import config as kconfig
from kaito_ctrl.kube.client import KubeClient
from kaito_ctrl.kube.errors import Conflict, NotFound
from kaito_ctrl.kube.resources import NAMESPACES, NODES, VALIDATING_WEBHOOKS
from kaito_ctrl.runtime.manager import Manager
from kaito_ctrl.settings import Settings
from kaito_ctrl.testing.controlplane import ControlPlane
from kaito_ctrl.testing.toxiproxy import Toxiproxy
from kaito_ctrl.webhook.registration import VALIDATING_NAME
from kaito_ctrl.webhook.server import WebhookServer
from tests.integration.provisioning import GPU, TEST_LABEL, Rig, arm_settings, eventually, new_name, rig
from tests.integration.webhooks import delete_configurations, runner_for

# A black-holed request ends after this (the client's own deadline), and so does each failed pass.
PROXIED_TIMEOUT = 2.0
# Both directions: a reset answers the first byte with RST; a black hole swallows everything and holds the
# connection open (timeout 0), so only the client's deadline ends a request.
FAULTS: dict[str, tuple[str, dict[str, Any]]] = {
    "reset": ("reset_peer", {"timeout": 0}),
    "black-hole": ("timeout", {"timeout": 0}),
}
GC_TASK = "garbage-collector"
GC_FAILED = "garbage collection incomplete; next pass will retry"
OLD = "2020-01-01T00-00-00Z"  # a pool creation timestamp far beyond any grace period
CHAOS_SEEDS_QUICK = 2
CHAOS_SEEDS_FULL = 20


# ---------------------------------------------------------------------------------------------------- helpers
@dataclasses.dataclass
class Link:
    """A Toxiproxy proxy in front of ``upstream``; faults are added to both directions, off the event loop
    (Toxiproxy's API is blocking HTTP and can take seconds while a toxic holds data)."""

    toxiproxy: Toxiproxy
    name: str
    listen: str
    faults: int = 0

    @classmethod
    def to(cls, toxiproxy: Toxiproxy, upstream: str, what: str) -> Link:
        name = f"{what}-{uuid.uuid4().hex[:8]}"
        return cls(toxiproxy, name, toxiproxy.proxy(name, upstream))

    async def fault(self, kind: str) -> None:
        toxic, attributes = FAULTS[kind]
        for stream in ("downstream", "upstream"):
            await asyncio.to_thread(self.toxiproxy.add_toxic, self.name, toxic, stream=stream, **attributes)
        self.faults += 1

    async def clear(self) -> None:
        await asyncio.to_thread(self.toxiproxy.clear, self.name)


@contextlib.asynccontextmanager
async def proxied_kube(
    control_plane: ControlPlane, toxiproxy: Toxiproxy
) -> AsyncIterator[tuple[KubeClient, Link]]:
    """A client to the real apiserver through a proxy (same certificate and credentials)."""
    conn = await kconfig.from_kubeconfig(control_plane.kubeconfig)
    link = Link.to(toxiproxy, urlsplit(conn.server).netloc, "apiserver")
    kube = KubeClient(
        dataclasses.replace(conn, server=f"https://{link.listen}"),
        qps=100,
        burst=100,
        timeout=PROXIED_TIMEOUT,
    )
    try:
        yield kube, link
    finally:
        await link.clear()
        await kube.close()


def arm_link(r: Rig, toxiproxy: Toxiproxy) -> Link:
    return Link.to(toxiproxy, urlsplit(r.fake.url).netloc, "arm")


def provider(r: Rig, arm: Link | None) -> AzureProvider:
    """The real Azure provider, to the fake ARM directly or through ``arm``, with short SDK timeouts."""
    endpoint = f"https://{arm.listen}" if arm is not None else r.fake.url
    return AzureProvider(
        arm_settings(r.fake, arm_endpoint=endpoint, retry_total=0),
        connection_timeout=PROXIED_TIMEOUT,
        read_timeout=PROXIED_TIMEOUT,
    )


async def start_provisioner(r: Rig, kube: KubeClient, cloud: AzureProvider, **settings: Any) -> Manager:
    """The provisioner as ``Rig.start`` runs it, but on ``kube`` and ``cloud`` (either may be proxied). The rig
    stops it and deletes its claims (the provisioner still running) when the test ends."""
    values: dict[str, Any] = {
        "node_provisioner": "nodeclaim",
        "claim_selector": f"{TEST_LABEL}={r.selector_value}",
        "cloud_backoff_base": 0.2,
        "cloud_backoff_cap": 2.0,
        "gc_interval": 3600.0,
        **settings,
    }
    manager = Manager(kube, sync_timeout=30)
    setup(manager, kube, Settings(**values), cloud=cloud)
    r.manager, r.task = manager, asyncio.create_task(manager.run())
    await until(manager.informers.has_synced, 30, "the provisioner's caches to sync")
    return manager


async def until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)  # polling interval of a deadline-bounded wait


def restarts(task: str) -> float:
    return metrics.REGISTRY.get_sample_value("kaito_ctrl_task_restarts_total", {"task": task}) or 0.0


def transport_errors(kube: KubeClient) -> float:
    host = urlsplit(kube.host).netloc
    return sum(
        metrics.REGISTRY.get_sample_value(
            "rest_client_requests_total", {"code": "<error>", "method": m, "host": host}
        )
        or 0.0
        for m in ("GET", "POST", "PATCH", "PUT", "DELETE", "WATCH")
    )


def running_tasks(manager: Manager) -> tuple[list[str], list[str]]:
    """(names of the manager's supervised tasks still running, names of those that ended)."""
    tasks = [*manager._tasks, *manager._leader_tasks]
    return [t.get_name() for t in tasks if not t.done()], [t.get_name() for t in tasks if t.done()]


async def assert_alive(manager: Manager, task: asyncio.Task[bool] | None) -> None:
    """Nothing lost: the manager runs, every supervised task runs, and /healthz is all true."""
    assert task is not None and not task.done(), f"the manager ended: {task}"
    _, ended = running_tasks(manager)
    assert not ended, f"background tasks ended: {ended}"
    health = await manager.healthz.run()
    assert all(health.values()), health


async def orphan_pool(r: Rig) -> str:
    """A Kaito pool whose claim never existed, older than any grace period, created at the fake ARM directly."""
    name = "o" + uuid.uuid4().hex[:10]
    labels = {
        "kaito.sh/workspace": "gone",
        "karpenter.sh/nodepool": "kaito",
        "kaito.sh/creation-timestamp": OLD,
    }
    async with provider(r, None) as cloud:
        await cloud.create_pool(AgentPoolSpec(name, GPU, labels=labels))
    return name


async def ready_claim(r: Rig, name: str) -> dict[str, Any] | None:
    obj: dict[str, Any] = await r.api.get(name)
    return obj if cond.is_true(obj, "Ready") else None


async def check_registered(r: Rig, name: str) -> dict[str, Any]:
    """Registered, Initialized and Ready, its Node carrying the claim's labels and owned by it, and the only
    Node of its pool: returns the claim."""
    obj = await r.api.get(name)
    for type_ in ("Launched", "Registered", "Initialized", "Ready"):
        assert cond.is_true(obj, type_), (type_, obj.get("status"))
    node = await r.kube.get(NODES, obj["status"]["nodeName"])
    labels = node["metadata"]["labels"]
    wanted = r.claim(name)["metadata"]["labels"]
    assert {k: labels.get(k) for k in wanted} == wanted, labels
    assert labels["karpenter.sh/registered"] == "true" and labels["karpenter.sh/initialized"] == "true"
    assert [o["uid"] for o in node["metadata"]["ownerReferences"]] == [obj["metadata"]["uid"]]
    nodes = await r.kube.list_all(NODES, label_selector=f"kubernetes.azure.com/agentpool={name}")
    assert [n["metadata"]["name"] for n in nodes] == [node["metadata"]["name"]], "one Node for the pool"
    return obj


def kaito_pools(r: Rig) -> list[str]:
    return sorted(p for p in r.pools() if p.startswith(("p", "o")))


# ---------------------------------------------------------------------------------------------------- GC
@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("link", ["apiserver", "arm"])
async def test_gc_survives_a_fault_on_its_link_and_collects_once_it_clears(
    control_plane: ControlPlane, toxiproxy: Toxiproxy, link: str, fault: str
) -> None:
    # The proxied client outlives the rig: the rig deletes its claims while the provisioner still runs.
    async with (
        proxied_kube(control_plane, toxiproxy) as (through, api_link),
        rig(control_plane, "nodeclaim") as r,
    ):
        arm = arm_link(r, toxiproxy) if link == "arm" else None
        faulty = api_link if link == "apiserver" else arm
        assert faulty is not None
        kube = through if link == "apiserver" else r.kube
        with capture_logs(processors=[structlog.processors.format_exc_info]) as logs:
            manager = await start_provisioner(
                r, kube, provider(r, arm), gc_interval=0.3, gc_grace_period=600.0
            )
            live = new_name()
            await r.api.create(r.claim(live))
            await eventually(lambda: ready_claim(r, live), 60, "the live claim Ready")
            before = restarts(GC_TASK)
            try:
                await faulty.fault(fault)
                orphan = await orphan_pool(r)
                failed_before = sum(e["event"] == GC_FAILED for e in logs)

                def failed_passes() -> int:
                    return sum(e["event"] == GC_FAILED for e in logs) - failed_before

                # Passes fail at the wire (the live GET that must confirm the claim is gone, or the pool list),
                # and are logged with the cause; the loop goes on by itself, so its task is never restarted.
                await until(
                    lambda: failed_passes() >= 2 or restarts(GC_TASK) > before,
                    60,
                    "garbage collection passes to fail at the wire",
                )
                assert restarts(GC_TASK) == before, "the GC loop survives its failed pass by itself"
                # The cause is the wire: the live GET that would confirm the orphan's claim is gone, or the list.
                causes = [str(e.get("error", "")) for e in logs if e["event"] == GC_FAILED][-2:]
                wanted = (
                    f"GET /apis/karpenter.sh/v1/nodeclaims/{orphan}: "
                    if link == "apiserver"
                    else "Transient: "
                )
                assert all(c.startswith(wanted) for c in causes), causes
                assert orphan in r.pools(), "nothing is deleted that could not be confirmed"
                await assert_alive(manager, r.task)
            finally:
                await faulty.clear()
            await eventually(lambda: _gone(r, orphan), 30, "the orphan pool deleted once the fault cleared")
        await assert_alive(manager, r.task)
        assert restarts(GC_TASK) == before
        assert kaito_pools(r) == [live], "the pool with a live claim is untouched"
        assert await ready_claim(r, live), "its claim is still Ready"
        assert r.fake.requests.counts["PUT pool"] == 2, "one PUT for the live claim, one for the orphan"


async def _gone(r: Rig, pool: str) -> bool:
    return pool not in r.pools()


# ---------------------------------------------------------------------------------------------------- node sync
@pytest.mark.parametrize("fault", list(FAULTS))
async def test_a_claim_provisioned_through_a_fault_registers_once_it_clears(
    control_plane: ControlPlane, toxiproxy: Toxiproxy, fault: str
) -> None:
    async with (
        proxied_kube(control_plane, toxiproxy) as (through, link),
        rig(control_plane, "nodeclaim", create_seconds=1.5) as r,
    ):
        manager = await start_provisioner(r, through, provider(r, None))
        name = new_name()
        await r.api.create(r.claim(name))
        # The pool is being created: the fault starts before it succeeds and its Node joins.
        await eventually(lambda: _pool_in(r, name, "Creating"), 30, "the pool being created")
        errors = transport_errors(through)
        try:
            await link.fault(fault)
            await eventually(lambda: _node_joined(r, name), 30, "the pool's Node to join")
            # The provisioner's requests fail at the wire (a reset at once, a black hole after its deadline).
            await until(
                lambda: transport_errors(through) >= errors + 2, 60, "the provisioner's requests to fail"
            )
            obj = await r.api.get(name)
            assert not cond.is_true(obj, "Registered"), "registration cannot have gone through the fault"
            await assert_alive(manager, r.task)
        finally:
            await link.clear()
        await eventually(lambda: ready_claim(r, name), 60, "the claim Ready once the fault cleared")
        await check_registered(r, name)
        assert kaito_pools(r) == [name]
        assert r.fake.requests.counts["PUT pool"] == 1, r.fake.requests.counts
        await assert_alive(manager, r.task)


async def _pool_in(r: Rig, name: str, state: str) -> bool:
    pool = r.pools().get(name)
    return pool is not None and str(pool.state) == state


async def _node_joined(r: Rig, name: str) -> bool:
    return bool(await r.kube.list_all(NODES, label_selector=f"kubernetes.azure.com/agentpool={name}"))


# ---------------------------------------------------------------------------------------------------- webhook
async def test_the_webhook_stays_unready_through_a_black_hole_and_registers_once_it_clears(
    control_plane: ControlPlane, toxiproxy: Toxiproxy
) -> None:
    namespace = "kaito-bh-webhook"
    delete_configurations(control_plane)
    direct = await KubeClient.from_kubeconfig(control_plane.kubeconfig)
    async with proxied_kube(control_plane, toxiproxy) as (through, link):
        with contextlib.suppress(Conflict):
            await direct.create(NAMESPACES, {"metadata": {"name": namespace}})
        task_name = f"webhook-{link.name}"
        with capture_logs(processors=[structlog.processors.format_exc_info]) as logs:
            runner = runner_for(through, WebhookServer("127.0.0.1", 0, keepalive_timeout=0.5), namespace)
            manager = Manager(through)
            manager.add_runnable(runner.run, needs_leader=False, name=task_name)
            manager.add_readyz_check("webhook", runner.ready.is_set)  # as `kaito-ctrl run` wires it
            await link.fault("black-hole")
            before = restarts(task_name)
            run = asyncio.create_task(manager.run())
            try:
                # Each start ends at the client's deadline, is logged with its cause, and is restarted.
                await until(
                    lambda: restarts(task_name) >= before + 2, 60, "the webhook's start to fail twice"
                )
                assert not runner.ready.is_set()
                assert (await manager.readyz.run())["webhook"] is False
                failures = [e for e in logs if e.get("task") == task_name and "restarting" in e["event"]]
                assert len(failures) >= 2, failures
                for e in failures:
                    assert "TransportError" in e.get("exception", "") and "Timeout" in e["exception"], e
                assert not await _registered(direct), "nothing registered through the black hole"
                await link.clear()
                await asyncio.wait_for(runner.ready.wait(), 90)
                assert (await manager.readyz.run())["webhook"] is True
                assert (await manager.healthz.run())[f"task:{task_name}"] is True
                config = await _registered(direct)
                assert config is not None
                client = config["webhooks"][0]["clientConfig"]
                assert client["caBundle"] and client["url"].startswith(
                    f"https://127.0.0.1:{runner.server.port}/"
                )
            finally:
                await link.clear()
                manager.stop()
                await asyncio.gather(run, return_exceptions=True)
                delete_configurations(control_plane)
                with contextlib.suppress(NotFound):
                    await direct.delete(NAMESPACES, namespace)
                await direct.close()


async def _registered(kube: KubeClient) -> dict[str, Any] | None:
    try:
        return await kube.get(VALIDATING_WEBHOOKS, VALIDATING_NAME)
    except NotFound:
        return None


# ---------------------------------------------------------------------------------------------------- long variant
# (links, fault): the first seeds take each once, in an order where two seeds already cover both links and both
# kinds; later seeds draw one.
CYCLES = [
    ("apiserver", "black-hole"),
    ("arm", "reset"),
    ("both", "reset"),
    ("apiserver", "reset"),
    ("arm", "black-hole"),
    ("both", "black-hole"),
]


async def phase(r: Rig, name: str) -> str:
    """Where the claim's provisioning stands: launching, registering, initializing, or ready."""
    obj = await r.api.get(name)
    steps = {"Launched": "launching", "Registered": "registering", "Initialized": "initializing"}
    return next((step for t, step in steps.items() if not cond.is_true(obj, t)), "ready")


def _report(figures: dict[str, Any]) -> None:
    report = os.environ.get("KAITO_CHAOS_REPORT")
    if report:
        with Path(report).open("a") as f:
            f.write(json.dumps(figures) + "\n")


@pytest.mark.chaos
async def test_seeded_fault_cycles_lose_no_task_and_duplicate_nothing(
    control_plane: ControlPlane, toxiproxy: Toxiproxy, chaos_seed: int
) -> None:
    """One provisioner with both its links proxied. A claim is being provisioned and an orphan pool waits for
    the GC when a fault drawn from the seed (which link, reset or black hole, when, how long) hits; after it
    clears, the orphan must be collected, the claim Ready on its one Node and its one pool, and every
    supervised task still running."""
    rng = random.Random(19_000 + chaos_seed)
    where, kind = CYCLES[chaos_seed] if chaos_seed < len(CYCLES) else rng.choice(CYCLES)
    create_s = round(rng.uniform(0.3, 2.0), 2)
    # From the claim's creation: mostly while its pool is created or its Node joins and registers.
    fault_after = round(rng.uniform(0.0, create_s + 1.0), 2)
    fault_for = round(rng.uniform(1.0, 5.0), 2)
    async with (
        proxied_kube(control_plane, toxiproxy) as (through, api_link),
        rig(control_plane, "nodeclaim", create_seconds=create_s) as r,
    ):
        arm = arm_link(r, toxiproxy)
        links = {"apiserver": [api_link], "arm": [arm], "both": [api_link, arm]}[where]
        manager = await start_provisioner(
            r, through, provider(r, arm), gc_interval=0.3, gc_grace_period=600.0
        )
        names = [t.name for t in (*manager._runnables, *manager._leader_runnables)]
        before = {n: restarts(n) for n in names}
        name = new_name()
        await r.api.create(r.claim(name))
        # The fault's moment in the claim's provisioning, drawn from the seed (not a synchronisation).
        await asyncio.sleep(fault_after)
        hit = await phase(r, name)
        try:
            for link in links:
                await link.fault(kind)
            orphan = await orphan_pool(r)  # the GC's work arrives while the fault lasts
            await asyncio.sleep(fault_for)  # the fault's length, drawn from the seed (not a synchronisation)
        finally:
            for link in links:
                await link.clear()
        cleared = time.monotonic()
        gc_resumed = ready = None

        async def converged() -> bool:
            nonlocal gc_resumed, ready
            if gc_resumed is None and orphan not in r.pools():
                gc_resumed = time.monotonic() - cleared
            if ready is None and await ready_claim(r, name):
                ready = time.monotonic() - cleared
            return gc_resumed is not None and ready is not None

        try:
            await eventually(
                converged, 120, f"GC and node sync to resume (seed {chaos_seed}, {where} {kind})"
            )
        finally:
            restarted = {n: int(restarts(n) - before[n]) for n in names if restarts(n) > before[n]}
            running, ended = running_tasks(manager)
            health = await manager.healthz.run()
            unhealthy = sorted(k for k, ok in health.items() if not ok)
            pools = kaito_pools(r)
            nodes = await r.kube.list_all(NODES, label_selector=f"kubernetes.azure.com/agentpool={name}")
            puts = r.fake.requests.counts["PUT pool"]
            # Anything made twice: a pool besides the claim's (and the orphan, if left), a second Node for
            # the pool, a second PUT of a pool (a re-create; one each for the claim and the orphan is right).
            duplicates = (
                len([p for p in pools if p not in (name, orphan)]) + max(0, len(nodes) - 1) + max(0, puts - 2)
            )
            figures: dict[str, Any] = {
                "test": "background-faults",
                "seed": chaos_seed,
                "link": where,
                "fault": kind,
                "create_seconds": create_s,
                "fault_after_s": fault_after,
                "fault_s": fault_for,
                "claim_at_fault": hit,
                "faults": sum(link.faults for link in links),
                "restarts": sum(restarted.values()),
                "restarted": restarted,
                # A task lost: one that ended (a restart that never resumed) or whose failures spent its budget.
                "tasks_lost": len(ended) + len(unhealthy),
                "duplicates": duplicates,
                "orphan_left": orphan in pools,
                "arm_puts": puts,
                "gc_resumed_s": None if gc_resumed is None else round(gc_resumed, 2),
                "ready_s": None if ready is None else round(ready, 2),
                "converged_s": round(max(gc_resumed or 0.0, ready or 0.0), 2),
            }
            print(json.dumps(figures))
            _report(figures)
        await check_registered(r, name)
        assert not ended and not unhealthy, (ended, unhealthy, running)
        assert duplicates == 0 and pools == [name], pools
