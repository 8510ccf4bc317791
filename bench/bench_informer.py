"""P1 informer ingest, P2 cache bytes per Pod, P5 time to a synced cache of 10k objects.

P1 feeds the same recorded stream of Pod watch events (~5 KB each) through kaito-ctrl's path (chunk
splitting, orjson, managedFields stripped, cache and indexes updated) and through kubernetes-asyncio's own
``Watch`` decoding into V1Pod objects (which does nothing else), and reports both rates.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import statistics
import time
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import orjson

from kaito_ctrl.kube.client import KubeClient, decode_watch_stream
from kaito_ctrl.kube.errors import Conflict
from kaito_ctrl.kube.informer import SharedInformer
from kaito_ctrl.kube.resources import CONFIGMAPS, NAMESPACES, PODS
from kaito_ctrl.runtime.gctuning import tune_gc


def make_pod(i: int) -> dict[str, Any]:
    """A realistic ~5 KB Pod as the apiserver returns it (managedFields included)."""
    name = f"phi-3-mini-{i:06d}-7d9c6b5f4d-{i % 97:05d}"
    env = [{"name": f"MODEL_SETTING_{k}", "value": f"value-{k}-{i}-" + "x" * 40} for k in range(30)]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": f"ns-{i % 20}",
            "uid": f"{i:08x}-1111-2222-3333-444455556666",
            "resourceVersion": str(100000 + i),
            "creationTimestamp": "2026-11-24T10:00:00Z",
            "labels": {"app": "phi-3", "kaito.sh/workspace": f"ws-{i % 500}", "pod-template-hash": "7d9c6b5f4d"},
            "annotations": {"kaito.sh/revision": "3", "kubectl.kubernetes.io/default-container": "model"},
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"ws-{i % 500}-7d9c6b5f4d",
                 "uid": f"{i % 500:08x}-aaaa-bbbb-cccc-ddddeeeeffff", "controller": True, "blockOwnerDeletion": True}
            ],
            "managedFields": [
                {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
                 "time": "2026-11-24T10:00:00Z", "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:metadata": {"f:labels": {f"f:l{k}": {} for k in range(10)}},
                              "f:spec": {f"f:c{k}": {} for k in range(20)}}},
            ],
        },
        "spec": {
            "containers": [
                {
                    "name": "model",
                    "image": "mcr.microsoft.com/aks/kaito/kaito-phi-3-mini-4k-instruct:0.0.2",
                    "command": ["/bin/sh", "-c", "accelerate launch --num_processes 1 inference_api.py"],
                    "env": env,
                    "ports": [{"containerPort": 5000, "protocol": "TCP"}],
                    "resources": {"limits": {"nvidia.com/gpu": "1"}, "requests": {"nvidia.com/gpu": "1"}},
                    "livenessProbe": {"httpGet": {"path": "/health", "port": 5000}, "initialDelaySeconds": 600},
                    "readinessProbe": {"httpGet": {"path": "/health", "port": 5000}, "initialDelaySeconds": 30},
                    "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}],
                }
            ],
            "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory"}}],
            "tolerations": [{"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}],
            "nodeName": f"aks-ws{i % 50:04d}-12345678-vmss000000",
            "serviceAccountName": "default",
        },
        "status": {
            "phase": "Running",
            "podIP": f"10.244.{i % 250}.{i % 200}",
            "conditions": [{"type": t, "status": "True", "lastTransitionTime": "2026-11-24T10:01:00Z"}
                           for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
            "containerStatuses": [{"name": "model", "ready": True, "restartCount": 0, "image": "x",
                                   "imageID": "sha256:" + "a" * 64, "containerID": "containerd://" + "b" * 64,
                                   "state": {"running": {"startedAt": "2026-11-24T10:01:00Z"}}}],
        },
    }  # fmt: skip


def record_stream(n: int) -> tuple[bytes, float]:
    lines = []
    for i in range(n):
        etype = "ADDED" if i < n // 2 else "MODIFIED"
        lines.append(orjson.dumps({"type": etype, "object": make_pod(i % (n // 2))}))
    avg = sum(len(x) for x in lines) / len(lines)
    return b"\n".join(lines) + b"\n", avg


async def _chunks(data: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def ours(stream: bytes) -> tuple[float, int]:
    informer = SharedInformer(None, PODS)  # type: ignore[arg-type]
    informer.add_event_handler(on_add=lambda o: None, on_update=lambda o, n: None)
    n = 0
    t0 = time.perf_counter()
    async for event in decode_watch_stream(_chunks(stream)):
        informer._apply_event(event)
        n += 1
    return time.perf_counter() - t0, n


async def theirs(stream: bytes) -> tuple[float, int]:
    from kubernetes_asyncio.watch import Watch

    w = Watch(return_type="V1Pod")
    lines = stream.split(b"\n")
    t0 = time.perf_counter()
    n = 0
    for line in lines:
        if line:
            w.unmarshal_event(line.decode(), "V1Pod")
            n += 1
    return time.perf_counter() - t0, n


def cache_bytes_per_pod(n: int = 2000) -> tuple[float, float]:
    raw = [orjson.dumps(make_pod(i)) for i in range(n)]
    avg_size = sum(len(r) for r in raw) / n
    informer = SharedInformer(None, PODS)  # type: ignore[arg-type]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for r in raw:
        informer._apply_event({"type": "ADDED", "object": orjson.loads(r)})
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    used = sum(s.size_diff for s in after.compare_to(before, "filename"))
    return used / n, avg_size


async def synced_cache_seconds(kubeconfig: str, count: int) -> float:
    client = await KubeClient.from_kubeconfig(kubeconfig, qps=2000, burst=2000)
    ns = "bench-sync"
    with contextlib.suppress(Conflict):  # already there from an earlier run
        await client.create(NAMESPACES, {"metadata": {"name": ns}})
    existing = len(await client.list_all(CONFIGMAPS, ns))
    sem = asyncio.Semaphore(64)

    async def make(i: int) -> None:
        async with sem:
            await client.create(CONFIGMAPS, {"metadata": {"name": f"cm-{i}"}, "data": {"k": "v" * 200}}, ns)

    await asyncio.gather(*(make(i) for i in range(existing, count)))
    informer = SharedInformer(client, CONFIGMAPS, namespace=ns)
    t0 = time.perf_counter()
    informer.start()
    assert await informer.wait_for_sync(60)
    took = time.perf_counter() - t0
    assert len(informer.store) >= count
    await informer.stop()
    await client.close()
    return took


def run(quick: bool = False) -> list[dict[str, Any]]:
    tune_gc()  # as `kaito-ctrl run` does at start
    n = 4000 if quick else 10000
    stream, avg = record_stream(n)
    # Both paths decode the same stream, three times each, alternating which goes first; medians compared.
    ours_rates: list[float] = []
    n_ours = 0
    theirs_rates: list[float] = []
    for i in range(3):
        for side in ("ours", "theirs") if i % 2 == 0 else ("theirs", "ours"):
            if side == "ours":
                t, n_ours = asyncio.run(ours(stream))
                ours_rates.append(n_ours / t)
            else:
                t, count = asyncio.run(theirs(stream))
                theirs_rates.append(count / t)
    ours_rate, theirs_rate = statistics.median(ours_rates), statistics.median(theirs_rates)
    ratio = ours_rate / theirs_rate
    rows = [
        {
            "id": "P1",
            "name": f"informer ingest of {n_ours} Pod watch events (~{avg / 1024:.1f} KB each), median of 3",
            "value": ours_rate,
            "unit": "events/s",
            "baseline_name": "kubernetes-asyncio Watch decoding to V1Pod",
            "baseline_value": theirs_rate,
            "ratio": ratio,
            "target": ">= 25k events/s and >= 30x",
            "met": ours_rate >= 25000 and ratio >= 30,
            "note": "" if ours_rate >= 25000 and ratio >= 30 else "see docs/performance.md notes",
        }
    ]
    per_pod, size = cache_bytes_per_pod(500 if quick else 2000)
    rows.append(
        {
            "id": "P2",
            "name": f"cache bytes per cached Pod ({size / 1024:.1f} KB JSON, managedFields stripped)",
            "value": per_pod / 1024,
            "unit": "KiB",
            "baseline_name": "JSON size of the Pod",
            "baseline_value": size / 1024,
            "ratio": per_pod / size,
            "target": "<= 20 KiB",
            "met": per_pod <= 20 * 1024,
            "note": "tracemalloc, parsed dicts plus indexes",
        }
    )
    kubeconfig = os.environ.get("KAITO_BENCH_KUBECONFIG")
    if kubeconfig:
        count = 2000 if quick else 10000
        took = asyncio.run(synced_cache_seconds(kubeconfig, count))
        rows.append(
            {
                "id": "P5",
                "name": f"time to a synced cache of {count} ConfigMaps on the local apiserver",
                "value": took,
                "unit": "s",
                "baseline_name": None,
                "baseline_value": None,
                "ratio": None,
                "target": "<= 3 s",
                "met": took <= 3,
                "note": "paged LIST of 500",
            }
        )
    return rows


if __name__ == "__main__":
    print(json.dumps(run(quick=bool(os.environ.get("QUICK"))), indent=1))
