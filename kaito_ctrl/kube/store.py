"""The informer's cache: objects by key with named secondary indexes, as client-go's thread-safe store."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Iterator
from typing import Any

Obj = dict[str, Any]
IndexFunc = Callable[[Obj], Iterable[str]]


def key_of(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta['name']}" if ns else str(meta["name"])


def index_namespace(obj: Obj) -> Iterable[str]:
    ns = (obj.get("metadata") or {}).get("namespace")
    return (ns,) if ns else ()


def index_owner_uid(obj: Obj) -> Iterable[str]:
    return [str(r["uid"]) for r in (obj.get("metadata") or {}).get("ownerReferences") or () if r.get("uid")]


def index_labels(obj: Obj) -> Iterable[str]:
    """Every ``key=value`` label pair, so ``by_index("labels", "kaito.sh/workspace=w")`` finds objects."""
    return [f"{k}={v}" for k, v in ((obj.get("metadata") or {}).get("labels") or {}).items()]


# Index functions a store knows by name. Only "namespace" is kept from the start; the others are built on
# first use (``by_index``), so an informer pays for the indexes some controller actually queries.
BUILTIN_INDEXERS: dict[str, IndexFunc] = {
    "namespace": index_namespace,
    "owner_uid": index_owner_uid,
    "labels": index_labels,
}
DEFAULT_INDEXERS: dict[str, IndexFunc] = {"namespace": index_namespace}


class Store:
    def __init__(self, indexers: dict[str, IndexFunc] | None = None) -> None:
        self._items: dict[str, Obj] = {}
        self._indexers = dict(DEFAULT_INDEXERS if indexers is None else indexers)
        self._indices: dict[str, dict[str, set[str]]] = {name: {} for name in self._indexers}

    def add_indexer(self, name: str, fn: IndexFunc) -> None:
        self._indexers[name] = fn
        index: dict[str, set[str]] = {}
        for key, obj in self._items.items():
            for value in fn(obj):
                index.setdefault(value, set()).add(key)
        self._indices[name] = index

    def has_index(self, name: str) -> bool:
        return name in self._indexers

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._items))

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def get(self, key: str) -> Obj | None:
        return self._items.get(key)

    def list(self) -> list[Obj]:
        return list(self._items.values())

    def keys(self) -> builtins.list[str]:
        return list(self._items)

    def by_index(self, name: str, value: str) -> builtins.list[Obj]:
        if name not in self._indices and name in BUILTIN_INDEXERS:
            self.add_indexer(name, BUILTIN_INDEXERS[name])
        keys = self._indices[name].get(value, ())
        return [self._items[k] for k in keys]

    def upsert(self, obj: Obj) -> Obj | None:
        """Store ``obj``; return the object it replaced, if any."""
        key = key_of(obj)
        old = self._items.get(key)
        if old is not None:
            self._unindex(key, old)
        self._items[key] = obj
        self._index(key, obj)
        return old

    def delete(self, key: str) -> Obj | None:
        old = self._items.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old

    def _index(self, key: str, obj: Obj) -> None:
        for name, fn in self._indexers.items():
            index = self._indices[name]
            for value in fn(obj):
                index.setdefault(value, set()).add(key)

    def _unindex(self, key: str, obj: Obj) -> None:
        for name, fn in self._indexers.items():
            index = self._indices[name]
            for value in fn(obj):
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]
