"""Leadership fails closed under real network faults: two managers share a Lease on the real apiserver, the
leader's link runs through Toxiproxy, and a reset, a black hole or latency above the renew deadline on that link
makes the leader stop leading and its manager return False (the process exits 1), while the other replica
takes over, and the two never lead at once. Toxiproxy is built from its Go module (hack/build-toxiproxy.sh)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from kaito_ctrl.kube.client import KubeClient
from kaito_ctrl.kube.leaderelection import LeaderElectionConfig
from kaito_ctrl.runtime.manager import Manager
from kaito_ctrl.testing.controlplane import ControlPlane
from kaito_ctrl.testing.toxiproxy import Toxiproxy

LEASE = {"lease_duration": 4, "renew_deadline": 3, "retry_period": 1}


@pytest.fixture(scope="module")
def toxiproxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Toxiproxy]:
    proxy = Toxiproxy(tmp_path_factory.mktemp("toxiproxy"))
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
async def clients(
    control_plane: ControlPlane, toxiproxy: Toxiproxy, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[KubeClient, KubeClient, str]]:
    """(through the proxy, direct, proxy name)."""
    direct = await KubeClient.from_kubeconfig(control_plane.kubeconfig)
    name = f"apiserver-{request.node.callspec.id}"
    listen = toxiproxy.proxy(name, urlsplit(direct.host).netloc)
    through = await KubeClient.from_kubeconfig(control_plane.kubeconfig)
    through.host = f"https://{listen}"  # same certificate: the proxy is plain TCP on 127.0.0.1
    try:
        yield through, direct, name
    finally:
        toxiproxy.clear(name)
        await through.close()
        await direct.close()


def _manager(client: KubeClient, namespace: str, identity: str) -> Manager:
    return Manager(
        client,
        leader_election=LeaderElectionConfig(
            name="kaito-fault-leader", namespace=namespace, identity=identity, **LEASE
        ),
    )


async def _until(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)  # polling interval of a deadline-bounded wait


@pytest.mark.parametrize(
    "toxic",
    [
        {"kind": "reset_peer", "timeout": 0},  # every connection reset as data arrives
        {"kind": "timeout", "timeout": 0},  # a black hole: data dropped, connections held open
        {"kind": "latency", "latency": 5000},  # answers later than the renew deadline
    ],
    ids=lambda t: str(t["kind"]),
)
async def test_a_leader_cut_off_at_the_wire_stops_and_the_other_takes_over(
    clients: tuple[KubeClient, KubeClient, str], toxiproxy: Toxiproxy, namespace: str, toxic: dict[str, Any]
) -> None:
    through, direct, proxy = clients
    a = _manager(through, namespace, "a-behind-proxy")
    b = _manager(direct, namespace, "b-direct")
    run_a = asyncio.create_task(a.run())
    await _until(lambda: a.is_leader, 20, "a leads")
    run_b = asyncio.create_task(b.run())
    # b is a standby: it has started and sees a's lease.
    await _until(
        lambda: b.elector is not None and b.elector.holder == "a-behind-proxy", 20, "b sees a's lease"
    )

    overlap = False

    async def watch_for_two_leaders() -> None:
        nonlocal overlap
        while True:
            overlap = overlap or (a.is_leader and b.is_leader)
            await asyncio.sleep(0.005)  # sampling both replicas' view of themselves

    watcher = asyncio.create_task(watch_for_two_leaders())
    kind = toxic.pop("kind")
    for stream in ("downstream", "upstream"):
        toxiproxy.add_toxic(proxy, kind, stream=stream, **toxic)
    try:
        result_a = await asyncio.wait_for(run_a, 30)
        assert result_a is False, "a leader that lost its lease must make the process exit non-zero"
        await _until(lambda: b.is_leader, 30, "b takes over")
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        toxiproxy.clear(proxy)
        b.stop()
        await asyncio.gather(run_b, return_exceptions=True)
        if not run_a.done():
            a.stop()
            await asyncio.gather(run_a, return_exceptions=True)
    assert not overlap, "two replicas believed they led at the same time"
