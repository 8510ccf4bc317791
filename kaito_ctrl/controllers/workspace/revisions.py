"""Revision history, as Kaito keeps it: each distinct spec (resource, inference, tuning) of a Workspace is a
ControllerRevision ``<workspace>-<hash[:5]>`` labelled ``workspace.kaito.io/name=<workspace>``, owned by the
Workspace, numbered 1, 2, ... and holding that spec as data; the Workspace carries the current number
(``workspace.kaito.io/revision``) and hash (``workspace.kaito.io/hash``), and its workload and pods carry the
number, so an update (an adapter replaced, new tuning inputs) makes revision N+1 and rolls the workload. The last
ten revisions are kept.

Nothing is read from the apiserver while the Workspace's hash annotation matches its spec: the history is listed
only when the spec has changed."""

from __future__ import annotations

import contextlib
from typing import Any

import structlog

from kaito_ctrl.api import labels as L
from kaito_ctrl.controllers.workspace.spec import WorkspaceSpec
from kaito_ctrl.kube.errors import Conflict, NotFound
from kaito_ctrl.kube.resources import CONTROLLER_REVISIONS

log = structlog.get_logger(__name__)

HASH_PREFIX = 5  # Kaito's revisionHashSuffix


def revision_name(ws: WorkspaceSpec, spec_hash: str) -> str:
    return f"{ws.name}-{spec_hash[:HASH_PREFIX]}"


def current(ws: WorkspaceSpec) -> bool:
    annotations = ws.annotations
    return annotations.get(L.ANNOTATION_HASH) == ws.spec_hash and bool(annotations.get(L.ANNOTATION_REVISION))


def revision_manifest(ws: WorkspaceSpec, spec_hash: str, number: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {
            "name": revision_name(ws, spec_hash),
            "namespace": ws.namespace,
            "labels": {L.LABEL_REVISION_OF: ws.name},
            "annotations": {L.ANNOTATION_HASH: spec_hash},
            "ownerReferences": [ws.owner_reference],
        },
        "revision": number,
        "data": ws.spec_data,
    }


async def ensure_revision(client: Any, ws: WorkspaceSpec) -> dict[str, str]:
    """Record the Workspace's current spec as a revision; the annotations the Workspace must carry for it
    (empty when it already does)."""
    if current(ws):
        return {}
    spec_hash = ws.spec_hash
    name = revision_name(ws, spec_hash)
    history = sorted(
        await client.list_all(
            CONTROLLER_REVISIONS, ws.namespace, label_selector=f"{L.LABEL_REVISION_OF}={ws.name}"
        ),
        key=lambda r: int(r.get("revision") or 0),
    )
    mine = [r for r in history if _owned_by(r, ws.uid)]
    existing = next((r for r in mine if r["metadata"]["name"] == name), None)
    if (
        existing is not None
        and (existing["metadata"].get("annotations") or {}).get(L.ANNOTATION_HASH) == spec_hash
    ):
        # Back to a spec recorded before (an edit undone): that revision is current again, as Kaito does.
        return {L.ANNOTATION_HASH: spec_hash, L.ANNOTATION_REVISION: str(existing["revision"])}
    if existing is not None:
        raise Conflict(
            409,
            "AlreadyExists",
            f"ControllerRevision {ws.namespace}/{name} holds another spec (hash prefix collision)",
        )
    number = int(mine[-1]["revision"]) + 1 if mine else 1
    try:
        await client.create(CONTROLLER_REVISIONS, revision_manifest(ws, spec_hash, number), ws.namespace)
    except Conflict:
        # Made meanwhile (a reconcile that raced this one, or a name someone else holds): use it if it is ours.
        made = await client.get(CONTROLLER_REVISIONS, name, ws.namespace)
        if (
            not _owned_by(made, ws.uid)
            or (made["metadata"].get("annotations") or {}).get(L.ANNOTATION_HASH) != spec_hash
        ):
            raise
        number = int(made["revision"])
    for old in mine[: max(0, len(mine) + 1 - L.MAX_REVISION_HISTORY)]:
        with contextlib.suppress(NotFound):
            await client.delete(CONTROLLER_REVISIONS, old["metadata"]["name"], ws.namespace)
    log.info("workspace revision recorded", revision=number, hash=spec_hash[:12])
    return {L.ANNOTATION_HASH: spec_hash, L.ANNOTATION_REVISION: str(number)}


def _owned_by(obj: dict[str, Any], uid: str) -> bool:
    return any(
        ref.get("uid") == uid and ref.get("controller")
        for ref in obj["metadata"].get("ownerReferences") or ()
    )
