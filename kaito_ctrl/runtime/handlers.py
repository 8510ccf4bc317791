"""Turning informer events into reconcile requests: enqueue the object itself, its controller owner, or
whatever a map function says; and predicates that drop events a controller does not care about."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kaito_ctrl.kube.informer import DeletedFinalStateUnknown

Obj = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Request:
    """What a reconcile is about: one object, by namespace (empty for cluster-scoped) and name."""

    namespace: str
    name: str

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    @classmethod
    def for_object(cls, obj: Obj) -> Request:
        meta = obj.get("metadata") or {}
        return cls(str(meta.get("namespace") or ""), str(meta["name"]))


MapFunc = Callable[[Obj], Iterable[Request]]


def unwrap(obj: Obj | DeletedFinalStateUnknown) -> Obj:
    return obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj


@dataclass(frozen=True)
class EventHandler:
    """Maps an object to the requests it should trigger; on update the union of old and new."""

    map: MapFunc

    def requests_for(self, *objs: Obj) -> set[Request]:
        out: set[Request] = set()
        for obj in objs:
            out.update(self.map(obj))
        return out


def enqueue_for_object() -> EventHandler:
    return EventHandler(lambda obj: (Request.for_object(obj),))


def enqueue_for_owner(owner_group: str, owner_kind: str, *, only_controller: bool = True) -> EventHandler:
    """Enqueue the owner (matched on group and kind, not version), in the child's namespace."""

    def owners(obj: Obj) -> Iterable[Request]:
        meta = obj.get("metadata") or {}
        ns = str(meta.get("namespace") or "")
        for ref in meta.get("ownerReferences") or ():
            if only_controller and not ref.get("controller"):
                continue
            group = str(ref.get("apiVersion", "")).rpartition("/")[0]
            if group == owner_group and ref.get("kind") == owner_kind:
                yield Request(ns, str(ref["name"]))
                if only_controller:
                    return

    return EventHandler(owners)


def enqueue_mapped(fn: MapFunc) -> EventHandler:
    return EventHandler(fn)


# --------------------------------------------------------------------------- predicates
@dataclass(frozen=True)
class Predicate:
    """Which events pass: each function returns True to let the event through."""

    create: Callable[[Obj], bool] = lambda _o: True
    update: Callable[[Obj, Obj], bool] = lambda _o, _n: True
    delete: Callable[[Obj], bool] = lambda _o: True


def _meta(obj: Obj, key: str) -> Any:
    return (obj.get("metadata") or {}).get(key)


GENERATION_CHANGED = Predicate(update=lambda o, n: _meta(o, "generation") != _meta(n, "generation"))
RESOURCE_VERSION_CHANGED = Predicate(
    update=lambda o, n: _meta(o, "resourceVersion") != _meta(n, "resourceVersion")
)
LABELS_CHANGED = Predicate(update=lambda o, n: _meta(o, "labels") != _meta(n, "labels"))
ANNOTATIONS_CHANGED = Predicate(update=lambda o, n: _meta(o, "annotations") != _meta(n, "annotations"))


def has_label(key: str) -> Predicate:
    def test(obj: Obj) -> bool:
        return key in (_meta(obj, "labels") or {})

    return Predicate(create=test, update=lambda o, n: test(o) or test(n), delete=test)


def any_of(*preds: Predicate) -> Predicate:
    return Predicate(
        create=lambda o: any(p.create(o) for p in preds),
        update=lambda o, n: any(p.update(o, n) for p in preds),
        delete=lambda o: any(p.delete(o) for p in preds),
    )


def all_of(*preds: Predicate) -> Predicate:
    return Predicate(
        create=lambda o: all(p.create(o) for p in preds),
        update=lambda o, n: all(p.update(o, n) for p in preds),
        delete=lambda o: all(p.delete(o) for p in preds),
    )


def negate(pred: Predicate) -> Predicate:
    return Predicate(
        create=lambda o: not pred.create(o),
        update=lambda o, n: not pred.update(o, n),
        delete=lambda o: not pred.delete(o),
    )
