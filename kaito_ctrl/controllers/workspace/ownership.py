"""Own only what you made: a Workspace writes or deletes an object only when it does not exist yet or is
controlled by that Workspace (an ownerReference with ``controller: true`` and the Workspace's uid).

A Workspace named like someone else's Service or ConfigMap must not take it over (replace its selector, add
itself as controller and so delete it with the Workspace). The apply itself runs without ``force``: on an
object we control, a field held by another field manager surfaces as a 409, which is reported with an Event
before the controller reclaims its own fields.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from kaito_ctrl.kube.errors import Conflict, NotFound
from kaito_ctrl.kube.resources import Resource

REASON = "ObjectOwnedByOther"


class WorkloadRefused(Exception):
    """The workload is not written; the message says why (it becomes the condition's message)."""

    reason = "WorkloadRefused"


class ForeignObject(WorkloadRefused):
    """An object the Workspace would write exists and is not controlled by it."""

    reason = REASON

    def __init__(self, kind: str, namespace: str, name: str, holder: str) -> None:
        self.kind, self.namespace, self.name, self.holder = kind, namespace, name, holder
        super().__init__(
            f"{kind} {namespace}/{name} already exists and is not controlled by this Workspace ({holder}); "
            "kaito-ctrl leaves it untouched: rename the Workspace or remove that object"
        )


def controller_of(obj: dict[str, Any]) -> dict[str, Any] | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller") is True:
            return ref
    return None


def controlled_by(obj: dict[str, Any], uid: str) -> bool:
    ref = controller_of(obj)
    return bool(uid) and ref is not None and ref.get("uid") == uid


def holder(obj: dict[str, Any]) -> str:
    ref = controller_of(obj)
    if ref is not None:
        return f"controlled by {ref.get('kind', '?')} {ref.get('name', '?')}"
    managers = sorted(
        {
            str(m.get("manager"))
            for m in (obj.get("metadata") or {}).get("managedFields") or []
            if m.get("manager")
        }
    )
    return f"managed by {', '.join(managers)}" if managers else "no controller owner"


async def ensure_ours(
    client: Any, res: Resource, obj: dict[str, Any], uid: str, live: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """Return the live object (None when absent) or raise ForeignObject. ``live`` from a cache saves a GET;
    an object absent from a cache is looked up on the server (the cache may lag)."""
    meta = obj["metadata"]
    if live is None:
        try:
            live = dict(await client.get(res, meta["name"], meta.get("namespace")))
        except NotFound:
            return None
    if not controlled_by(live, uid):
        raise ForeignObject(res.kind, str(meta.get("namespace") or ""), meta["name"], holder(live))
    return live


async def apply_owned(
    client: Any,
    res: Resource,
    obj: dict[str, Any],
    uid: str,
    *,
    live: dict[str, Any] | None = None,
    on_conflict: Callable[[str], Awaitable[None]] | None = None,
    checked: bool = False,
) -> dict[str, Any]:
    """Server-side apply ``obj`` after the ownership check (``checked``: the caller has just made it), without
    force. On an object this Workspace controls, a field held by another manager is reported through
    ``on_conflict`` and then reclaimed."""
    if not checked:
        await ensure_ours(client, res, obj, uid, live)
    try:
        return dict(await client.apply(res, obj, force=False))
    except Conflict as e:
        if on_conflict is not None:
            await on_conflict(str(e)[:512])
        return dict(await client.apply(res, obj, force=True))


async def delete_owned(client: Any, res: Resource, live: dict[str, Any] | None, uid: str, **kw: Any) -> bool:
    """Delete ``live`` only when this Workspace controls it (and only that very object: uid precondition)."""
    if live is None or not controlled_by(live, uid):
        return False
    meta = live["metadata"]
    try:
        await client.delete(res, meta["name"], meta.get("namespace"), uid=meta.get("uid"), **kw)
    except (NotFound, Conflict):
        return False
    return True
