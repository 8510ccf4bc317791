"""Fault matrix: an informer under seeded churn (creates, updates, deletes) while the apiserver restarts and
etcd is compacted (forcing 410 Gone on resume). Afterwards the cache equals a fresh LIST and no delete of an
object the informer had seen was missed (tombstones count). Figures go to ``$KAITO_CHAOS_REPORT``."""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kaito_ctrl.kube.client import KubeClient
from kaito_ctrl.kube.errors import ApiError, NotFound
from kaito_ctrl.kube.informer import DeletedFinalStateUnknown, SharedInformer
from kaito_ctrl.kube.resources import CONFIGMAPS
from kaito_ctrl.testing.controlplane import ControlPlane

pytestmark = pytest.mark.chaos
# About 40 s a run (two apiserver restarts): one run in make test, 10 in make chaos.
CHAOS_SEEDS_QUICK, CHAOS_SEEDS_FULL = 1, 10


@pytest.fixture
async def kube(control_plane: ControlPlane) -> AsyncIterator[KubeClient]:
    client = await KubeClient.from_kubeconfig(control_plane.kubeconfig, qps=500, burst=500)
    yield client
    await client.close()


def _report(figures: dict[str, Any]) -> None:
    report = os.environ.get("KAITO_CHAOS_REPORT")
    if report:
        with Path(report).open("a") as f:
            f.write(json.dumps(figures) + "\n")


async def _write(kube: KubeClient, op: Any) -> bool:
    """One churn write; the apiserver may be down (connection refused) or the object gone: skip it."""
    try:
        await op
        return True
    except (ApiError, OSError, TimeoutError):
        return False
    except Exception as e:  # aiohttp's connection errors while the apiserver restarts
        if "Cannot connect" in str(e) or "Server disconnected" in str(e):
            return False
        raise


async def test_churn_through_apiserver_restarts_and_410s_misses_no_delete(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, chaos_seed: int
) -> None:
    rng = random.Random(1000 + chaos_seed)
    label = f"chaos{chaos_seed}"
    informer = SharedInformer(kube, CONFIGMAPS, namespace=namespace, label_selector=f"chaos={label}")
    seen: set[str] = set()
    delete_events: set[str] = set()
    tombstones = 0

    def on_delete(obj: Any) -> None:
        nonlocal tombstones
        if isinstance(obj, DeletedFinalStateUnknown):
            tombstones += 1
            obj = obj.obj
        delete_events.add(obj["metadata"]["name"])

    informer.add_event_handler(
        on_add=lambda o: seen.add(o["metadata"]["name"]),
        on_update=lambda _o, n: seen.add(n["metadata"]["name"]),
        on_delete=on_delete,
    )
    informer.start()
    t0 = time.monotonic()
    live: set[str] = set()
    deleted: set[str] = set()
    restarts = 0
    try:
        assert await informer.wait_for_sync(30)
        lists_before = informer.list_count
        ops = 150
        outages = sorted(rng.sample(range(20, ops - 10), 2))
        for i in range(ops):
            if i in outages:
                # Restart the apiserver with writes happening while it is down, then compact etcd so the
                # informer's resourceVersion is gone for good and its resume must relist.
                await asyncio.to_thread(control_plane.restart_apiserver)
                restarts += 1
                # Deletes while the informer is still backing off: it can only learn of them by relisting,
                # so they must reach handlers as tombstones.
                for name in rng.sample(sorted(live), min(3, len(live))):
                    if await _write(kube, kube.delete(CONFIGMAPS, name, namespace)):
                        live.discard(name)
                        deleted.add(name)
                control_plane.compact_etcd()
            roll = rng.random()
            if roll < 0.5 or not live:
                name = f"cm-{i}"
                body = {"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": name, "labels": {"chaos": label}}, "data": {"v": "0"}}  # fmt: skip
                if await _write(kube, kube.create(CONFIGMAPS, body, namespace)):
                    live.add(name)
            elif roll < 0.75:
                name = rng.choice(sorted(live))
                patch = {"data": {"v": str(i)}}
                await _write(kube, kube.merge_patch(CONFIGMAPS, name, patch, namespace))
            else:
                name = rng.choice(sorted(live))
                try:
                    await kube.delete(CONFIGMAPS, name, namespace)
                    live.discard(name)
                    deleted.add(name)
                except NotFound:
                    live.discard(name)
                    deleted.add(name)
                except (ApiError, OSError):
                    pass

        async def converged() -> bool:
            fresh = await kube.list(CONFIGMAPS, namespace, label_selector=f"chaos={label}")
            want = {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in fresh["items"]}
            have = {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in informer.store.list()}
            return want == have

        deadline = time.monotonic() + 60
        while not await converged():
            assert time.monotonic() < deadline, "the cache never converged to a fresh LIST"
            await asyncio.sleep(0.2)  # polling interval of a deadline-bounded wait
        missed = sorted((deleted & seen) - delete_events)
        figures = {
            "test": "informer-churn",
            "seed": chaos_seed,
            "writes": ops,
            "apiserver_restarts": restarts,
            "relists": informer.list_count - lists_before,
            "deletes": len(deleted),
            "missed_deletes": len(missed),
            "tombstones": tombstones,
            "converged_s": round(time.monotonic() - t0, 1),
        }
        print(json.dumps(figures))
        _report(figures)
        assert not missed, f"deletes never delivered: {missed}"
        assert informer.list_count > lists_before, "compaction after a restart must force a relist"
    finally:
        await informer.stop()
