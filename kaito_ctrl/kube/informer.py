"""Shared informers: list+watch into a cache, delivering add/update/delete to several handlers.

Semantics follow client-go's reflector and shared informer:
- paged LIST (500 a page), then WATCH with bookmarks and a random server timeout in [300, 600] s;
- a socket read timeout guards against streams that die silently behind load balancers;
- 410 Gone relists from the last resourceVersion, and from "" (a consistent read) if that is gone too;
- objects that vanished while the watch was down reach ``on_delete`` as :class:`DeletedFinalStateUnknown`;
- the informer's resourceVersion only advances after a relist has been applied in full;
- failures back off from 0.8 s doubling to 30 s with jitter, reset after 2 minutes of healthy watching.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from kaito_ctrl.kube.clock import REAL_CLOCK, Clock
from kaito_ctrl.kube.errors import Gone
from kaito_ctrl.kube.protocols import ListWatcher
from kaito_ctrl.kube.resources import Resource
from kaito_ctrl.kube.store import IndexFunc, Obj, Store, key_of

log = structlog.get_logger(__name__)

PAGE_SIZE = 500
BACKOFF_INITIAL = 0.8
BACKOFF_MAX = 30.0
BACKOFF_RESET_AFTER = 120.0
WATCH_TIMEOUT_RANGE = (300, 600)
DEFAULT_READ_TIMEOUT = 120.0


@dataclass(frozen=True)
class DeletedFinalStateUnknown:
    """An object deleted while the informer was not watching; ``obj`` is its last known state."""

    key: str
    obj: Obj


def strip_managed_fields(obj: Obj) -> Obj:
    meta = obj.get("metadata")
    if meta and "managedFields" in meta:
        del meta["managedFields"]
    return obj


ListWatchClient = ListWatcher

AddHandler = Callable[[Obj], None]
UpdateHandler = Callable[[Obj, Obj], None]
DeleteHandler = Callable[[Obj | DeletedFinalStateUnknown], None]


@dataclass
class _Handler:
    on_add: AddHandler | None
    on_update: UpdateHandler | None
    on_delete: DeleteHandler | None


class SharedInformer:
    def __init__(
        self,
        client: ListWatchClient,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resync_period: float | None = None,
        transform: Callable[[Obj], Obj] | None = strip_managed_fields,
        clock: Clock = REAL_CLOCK,
        page_size: int = PAGE_SIZE,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        indexers: dict[str, IndexFunc] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.resync_period = resync_period
        self.transform = transform
        self.clock = clock
        self.page_size = page_size
        self.read_timeout = read_timeout
        self.store = Store(indexers)
        self.last_sync_resource_version = ""
        self._rng = rng or random.Random()
        self._handlers: list[_Handler] = []
        self._synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._resync_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._log = log.bind(resource=resource.key, namespace=namespace or "")
        # Counters for tests and metrics: how often we listed and how often the watch restarted.
        self.list_count = 0
        self.watch_count = 0

    # ------------------------------------------------------------------ handlers
    def add_event_handler(
        self,
        on_add: AddHandler | None = None,
        on_update: UpdateHandler | None = None,
        on_delete: DeleteHandler | None = None,
    ) -> None:
        handler = _Handler(on_add, on_update, on_delete)
        self._handlers.append(handler)
        if self.has_synced() and on_add:
            for obj in self.store.list():
                self._call(on_add, obj)

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:  # a faulty handler must not stop the informer
            self._log.exception("event handler failed")

    def _emit_add(self, obj: Obj) -> None:
        for h in self._handlers:
            if h.on_add:
                self._call(h.on_add, obj)

    def _emit_update(self, old: Obj, new: Obj) -> None:
        for h in self._handlers:
            if h.on_update:
                self._call(h.on_update, old, new)

    def _emit_delete(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        for h in self._handlers:
            if h.on_delete:
                self._call(h.on_delete, obj)

    # ------------------------------------------------------------------ lifecycle
    def has_synced(self) -> bool:
        return self._synced.is_set()

    async def wait_for_sync(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._synced.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name=f"informer:{self.resource.key}")
            if self.resync_period:
                self._resync_task = asyncio.create_task(self._resync_loop())

    async def stop(self) -> None:
        self._stopping = True
        for task in (self._task, self._resync_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._task = self._resync_task = None

    # ------------------------------------------------------------------ list + watch loop
    async def _run(self) -> None:
        backoff = BACKOFF_INITIAL
        need_list = True
        while not self._stopping:
            healthy_since = self.clock.monotonic()
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                await self._watch_once()
            except Gone:
                self._log.info("resource version expired; relisting", rv=self.last_sync_resource_version)
                need_list = True
                continue  # a relist is the remedy; no backoff
            except asyncio.CancelledError:
                raise
            # ApiError and TransportError are what the client raises; anything else is a bug in a handler or
            # the decoder, and an informer that dies silently is worse than one that retries and logs it.
            except Exception as e:
                if self.clock.monotonic() - healthy_since >= BACKOFF_RESET_AFTER:
                    backoff = BACKOFF_INITIAL
                delay = backoff * (1 + self._rng.random())  # jitter factor 1.0 (client-go's)
                self._log.warning("list/watch failed; backing off", error=str(e)[:300], delay=round(delay, 2))
                await self.clock.sleep(delay)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            # The server closed the watch normally (its timeout): watch again from where we are.
            if self.clock.monotonic() - healthy_since >= BACKOFF_RESET_AFTER:
                backoff = BACKOFF_INITIAL

    async def _list_pages(self, resource_version: str) -> tuple[list[Obj], str]:
        items: list[Obj] = []
        token: str | None = None
        rv = ""
        while True:
            page = await self.client.list(
                self.resource,
                self.namespace,
                label_selector=self.label_selector,
                field_selector=self.field_selector,
                limit=self.page_size,
                continue_token=token,
                # The resourceVersion only goes with the first page; continue tokens carry it after that.
                resource_version=None if token else (resource_version or None),
                resource_version_match="NotOlderThan" if (resource_version and not token) else None,
            )
            items.extend(page.get("items") or [])
            meta = page.get("metadata") or {}
            rv = str(meta.get("resourceVersion") or rv)
            token = meta.get("continue")
            if not token:
                return items, rv

    async def _relist(self) -> None:
        self.list_count += 1
        try:
            items, rv = await self._list_pages(self.last_sync_resource_version)
        except Gone:
            # Our resourceVersion is compacted away too: a consistent read from etcd.
            items, rv = await self._list_pages("")
        self._replace(items)
        self.last_sync_resource_version = rv  # only after the whole replace was delivered
        self._synced.set()

    def _prepare(self, obj: Obj) -> Obj:
        return self.transform(obj) if self.transform else obj

    def _replace(self, items: list[Obj]) -> None:
        fresh: dict[str, Obj] = {}
        for raw in items:
            obj = self._prepare(raw)
            fresh[key_of(obj)] = obj
        for key in [k for k in self.store if k not in fresh]:
            old = self.store.delete(key)
            if old is not None:
                self._emit_delete(DeletedFinalStateUnknown(key, old))
        for obj in fresh.values():
            old = self.store.upsert(obj)
            if old is None:
                self._emit_add(obj)
            elif _rv(old) != _rv(obj):
                self._emit_update(old, obj)

    async def _watch_once(self) -> None:
        self.watch_count += 1
        timeout = self._rng.randint(*WATCH_TIMEOUT_RANGE)
        events = self.client.watch(
            self.resource,
            self.namespace,
            resource_version=self.last_sync_resource_version,
            timeout_seconds=timeout,
            allow_bookmarks=True,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            read_timeout=self.read_timeout,
        )
        async for event in events:
            self._apply_event(event)

    def _apply_event(self, event: dict[str, Any]) -> None:
        etype = event.get("type")
        raw = event.get("object") or {}
        if etype == "BOOKMARK":
            self.last_sync_resource_version = _rv(raw) or self.last_sync_resource_version
            return
        obj = self._prepare(raw)
        if etype in ("ADDED", "MODIFIED"):
            old = self.store.upsert(obj)
            if old is None:
                self._emit_add(obj)
            else:
                self._emit_update(old, obj)
        elif etype == "DELETED":
            self.store.delete(key_of(obj))
            self._emit_delete(obj)
        self.last_sync_resource_version = _rv(obj) or self.last_sync_resource_version

    async def _resync_loop(self) -> None:
        assert self.resync_period
        while not self._stopping:
            await self.clock.sleep(self.resync_period)
            if self.has_synced():
                for obj in self.store.list():
                    self._emit_update(obj, obj)


def _rv(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


class InformerFactory:
    """One shared informer per (resource, namespace, selector), shared by every controller in the process."""

    def __init__(
        self, client: ListWatchClient, *, clock: Clock = REAL_CLOCK, resync_period: float | None = None
    ):
        self.client = client
        self.clock = clock
        self.resync_period = resync_period
        self._informers: dict[tuple[str, str, str], SharedInformer] = {}
        self._started = False

    def informer(
        self,
        resource: Resource,
        namespace: str | None = None,
        label_selector: str | None = None,
        transform: Callable[[Obj], Obj] = strip_managed_fields,
    ) -> SharedInformer:
        """The shared informer for ``resource`` in ``namespace`` with ``label_selector``. ``transform`` decides
        what its cache keeps of each object (a view of only the fields the controllers read saves memory);
        every controller sharing the informer must ask for the same one, as they read the same cache."""
        key = (resource.key, namespace or "", label_selector or "")
        inf = self._informers.get(key)
        if inf is not None and inf.transform is not transform:
            raise ValueError(f"informer for {key} already shares a different cache transform")
        if inf is None:
            inf = SharedInformer(
                self.client,
                resource,
                namespace=namespace,
                label_selector=label_selector,
                clock=self.clock,
                resync_period=self.resync_period,
                transform=transform,
            )
            self._informers[key] = inf
            if self._started:
                inf.start()
        return inf

    @property
    def informers(self) -> list[SharedInformer]:
        return list(self._informers.values())

    def start_all(self) -> None:
        self._started = True
        for inf in self._informers.values():
            inf.start()

    async def wait_for_sync(self, timeout: float) -> bool:
        results = await asyncio.gather(*(i.wait_for_sync(timeout) for i in self._informers.values()))
        return all(results)

    def has_synced(self) -> bool:
        return all(i.has_synced() for i in self._informers.values())

    async def stop_all(self) -> None:
        await asyncio.gather(*(i.stop() for i in self._informers.values()))
        self._started = False
