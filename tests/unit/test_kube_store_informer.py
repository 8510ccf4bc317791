"""Store indexes and the informer's relist logic against an in-memory list/watch (a unit of the informer
module only; the real apiserver is exercised in tests/integration/test_informer_real.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from kaito_ctrl.kube.clock import FakeClock
from kaito_ctrl.kube.errors import Gone
from kaito_ctrl.kube.informer import DeletedFinalStateUnknown, SharedInformer
from kaito_ctrl.kube.resources import CONFIGMAPS, Resource
from kaito_ctrl.kube.store import Store


def _cm(name: str, rv: int, labels: dict[str, str] | None = None, owner: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": "ns",
        "resourceVersion": str(rv),
        "labels": labels or {},
    }
    if owner:
        meta["ownerReferences"] = [{"uid": owner, "kind": "Workspace", "name": "w", "controller": True}]
    meta["managedFields"] = [{"manager": "x"}]
    return {"metadata": meta}


def test_store_indexes_follow_updates_and_deletes() -> None:
    store = Store()
    store.upsert(_cm("a", 1, {"app": "x"}, owner="u1"))
    store.upsert(_cm("b", 2, {"app": "y"}, owner="u1"))
    assert {o["metadata"]["name"] for o in store.by_index("labels", "app=x")} == {"a"}
    assert len(store.by_index("owner_uid", "u1")) == 2
    store.upsert(_cm("a", 3, {"app": "y"}))
    assert store.by_index("labels", "app=x") == []
    assert len(store.by_index("labels", "app=y")) == 2
    assert [o["metadata"]["name"] for o in store.by_index("owner_uid", "u1")] == ["b"]
    store.delete("ns/b")
    assert store.by_index("owner_uid", "u1") == [] and len(store.by_index("namespace", "ns")) == 1


class FakeListWatch:
    """Lists from a dict; the watch yields queued events, or raises Gone when told to."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.rv = 10
        self.events: asyncio.Queue[dict[str, Any] | Exception] = asyncio.Queue()
        self.gone_on_list_with_rv = False
        self.list_calls: list[str | None] = []

    async def list(self, res: Resource, namespace: str | None = None, **kw: Any) -> dict[str, Any]:
        self.list_calls.append(kw.get("resource_version"))
        if self.gone_on_list_with_rv and kw.get("resource_version"):
            raise Gone(410, "Expired", "too old")
        return {
            "metadata": {"resourceVersion": str(self.rv)},
            "items": [dict(o) for o in self.objects.values()],
        }

    async def watch(
        self, res: Resource, namespace: str | None = None, **kw: Any
    ) -> AsyncIterator[dict[str, Any]]:
        while True:
            item = await self.events.get()
            if isinstance(item, Exception):
                raise item
            yield item


async def _settle() -> None:
    for _ in range(50):
        await asyncio.sleep(0)


async def test_relist_after_410_delivers_tombstones_and_keeps_rv_until_applied() -> None:
    lw = FakeListWatch()
    for i in range(3):
        lw.objects[f"c{i}"] = _cm(f"c{i}", i + 1)
    inf = SharedInformer(lw, CONFIGMAPS, clock=FakeClock())  # type: ignore[arg-type]
    deletes: list[Any] = []
    adds: list[str] = []
    inf.add_event_handler(on_add=lambda o: adds.append(o["metadata"]["name"]), on_delete=deletes.append)
    inf.start()
    assert await inf.wait_for_sync(1)
    assert inf.last_sync_resource_version == "10"
    assert all("managedFields" not in o["metadata"] for o in inf.store.list())
    # While "disconnected": c0 deleted, c3 added; our resourceVersion is gone too.
    del lw.objects["c0"]
    lw.objects["c3"] = _cm("c3", 11)
    lw.rv = 12
    lw.gone_on_list_with_rv = True
    await lw.events.put(Gone(410, "Expired", "too old resource version"))
    await _settle()
    assert lw.list_calls[-2:] == ["10", None], "relist from the last RV, then from '' when that is gone"
    assert [d.key for d in deletes if isinstance(d, DeletedFinalStateUnknown)] == ["ns/c0"]
    assert "c3" in adds and inf.last_sync_resource_version == "12"
    # Live events keep flowing after the relist; bookmarks only move the resourceVersion.
    await lw.events.put({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "20"}}})
    await lw.events.put({"type": "DELETED", "object": _cm("c1", 21)})
    await _settle()
    assert "c1" not in inf.store and inf.last_sync_resource_version == "21"
    assert isinstance(deletes[-1], dict)
    await inf.stop()


async def test_watch_errors_back_off_with_jitter_on_the_clock() -> None:
    clock = FakeClock()
    lw = FakeListWatch()
    inf = SharedInformer(lw, CONFIGMAPS, clock=clock)  # type: ignore[arg-type]
    inf.start()
    assert await inf.wait_for_sync(1)
    await lw.events.put(OSError("connection reset"))
    await _settle()
    assert clock.sleepers == 1, "the informer waits before reconnecting"
    await clock.advance(0.7)
    assert inf.watch_count == 1
    await clock.advance(1.0)  # 0.8 s x jitter in [1, 2) has passed by 1.6 s
    await _settle()
    assert inf.watch_count == 2 and inf.list_count == 1, "a connection error re-watches without relisting"
    await inf.stop()
