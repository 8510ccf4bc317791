"""The first reconcile of a Workspace writes every applicable condition, and a refused write is a reason with
a pause that an edit ends (a recording client; the real apiserver versions are in
tests/integration/test_refused_writes.py)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kaito_ctrl.controllers.workspace.nodes import BYONodes, KarpenterNodes
from kaito_ctrl.controllers.workspace.reconciler import WorkspaceReconciler
from kaito_ctrl.kube.clock import FakeClock
from kaito_ctrl.kube.errors import ApiError, Invalid, ServerError
from kaito_ctrl.kube.machines import NodeObjectAPI
from kaito_ctrl.kube.refusals import Refusals
from kaito_ctrl.kube.store import Store
from kaito_ctrl.runtime.handlers import Request
from tests.cases.invalid_workspaces import inference_ws, tuning_ws


class Cache:
    def __init__(self, *objs: dict[str, Any]) -> None:
        self.store = Store()
        for o in objs:
            self.store.upsert(o)


class Client:
    """Records writes; ``create_error`` is raised by creates of node objects."""

    def __init__(self, create_error: ApiError | None = None) -> None:
        self.create_error = create_error
        self.status_writes: list[dict[str, Any]] = []
        self.claim_creates = 0
        self.events: list[dict[str, Any]] = []
        self.workspace: dict[str, Any] | None = None

    async def merge_patch(self, res: Any, name: str, patch: dict[str, Any], namespace: str | None = None,
                          **kw: Any) -> dict[str, Any]:  # fmt: skip
        if kw.get("subresource") == "status":
            self.status_writes.append(copy.deepcopy(patch["status"]))
            return {}
        live = self.workspace["metadata"] if self.workspace else {"name": name, "namespace": namespace}
        return {"metadata": {**live, **patch["metadata"]}}  # as the apiserver answers: the whole object

    async def list_all(self, res: Any, namespace: str | None = None, **kw: Any) -> list[dict[str, Any]]:
        return []  # no revision history yet

    async def create(self, res: Any, obj: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        if obj.get("kind") in ("Event", "ControllerRevision"):
            if obj["kind"] == "Event":
                self.events.append(obj)
            return obj
        self.claim_creates += 1
        if self.create_error is not None:
            raise self.create_error
        return obj


def _workspace(generation: int = 1, tuning: bool = False) -> dict[str, Any]:
    ws = tuning_ws("w") if tuning else inference_ws("w")
    ws["metadata"].update(namespace="ns", uid="u1", generation=generation, resourceVersion="1",
                          creationTimestamp="2026-12-03T10:00:00Z")  # fmt: skip
    return ws


def _reconciler(client: Client, ws: dict[str, Any], mode: str, clock: FakeClock) -> WorkspaceReconciler:
    nodes = Cache()
    client.workspace = ws
    provisioner = (
        BYONodes(nodes)  # type: ignore[arg-type]
        if mode == "byo"
        else KarpenterNodes(NodeObjectAPI(client, "nodeclaim"), Cache(), nodes)  # type: ignore[arg-type]
    )
    return WorkspaceReconciler(
        client, provisioner, workspaces=Cache(ws), deployments=Cache(), statefulsets=Cache(),  # type: ignore[arg-type]
        pods=Cache(), jobs=Cache(), services=Cache(), image_registry="mcr.microsoft.com/aks/kaito",  # type: ignore[arg-type]
        refusals=Refusals(clock, base=5, cap=300),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("mode", "tuning", "expected"),
    [
        ("nodeclaim", False, {"ResourceReady", "NodeClaimReady", "NodesReady", "InferenceReady",
                              "WorkspaceSucceeded", "WorkspaceReady"}),
        ("byo", False, {"ResourceReady", "NodesReady", "InferenceReady", "WorkspaceSucceeded", "WorkspaceReady"}),
        ("nodeclaim", True, {"ResourceReady", "NodeClaimReady", "NodesReady", "JobStarted",
                             "WorkspaceSucceeded", "WorkspaceReady"}),
    ],
)  # fmt: skip
async def test_first_reconcile_writes_every_condition_with_a_reason(
    mode: str, tuning: bool, expected: set[str]
) -> None:
    client = Client()
    r = _reconciler(client, _workspace(tuning=tuning), mode, FakeClock())
    await r(Request("ns", "w"))
    assert len(client.status_writes) == 1
    status = client.status_writes[0]
    assert {c["type"] for c in status["conditions"]} == expected
    assert all(
        c["reason"] and c["message"] and c["status"] in ("True", "False", "Unknown")
        for c in status["conditions"]
    )
    assert status["state"] == "Pending"
    unknown = {c["type"] for c in status["conditions"] if c["status"] == "Unknown"}
    assert "NodesReady" in unknown or mode == "byo", "a step not reached yet is Unknown"


async def test_a_refused_claim_is_a_reason_with_a_pause_that_an_edit_ends() -> None:
    clock = FakeClock()
    error = Invalid(
        422, "Invalid", 'NodeClaim.karpenter.sh "ws1" is invalid: metadata.labels: Invalid value: "${jndi}"'
    )
    client = Client(create_error=error)
    ws = _workspace()
    r = _reconciler(client, ws, "nodeclaim", clock)
    result = await r(Request("ns", "w"))
    conditions = {c["type"]: c for c in client.status_writes[-1]["conditions"]}
    for type_ in ("NodeClaimReady", "ResourceReady"):
        assert conditions[type_]["status"] == "False" and conditions[type_]["reason"] == "NodeClaimRejected"
        assert "${jndi}" in conditions[type_]["message"]
    assert [e["reason"] for e in client.events if e["type"] == "Warning"].count("NodeClaimRejected") >= 1
    assert result.requeue_after == pytest.approx(5.0)
    # Woken again during the pause (another event): no new attempt.
    await r(Request("ns", "w"))
    assert client.claim_creates == 1
    # The user edits the Workspace (a new generation): the create is retried at once.
    edited = _workspace(generation=2)
    edited["metadata"]["resourceVersion"] = "2"
    r.workspaces.store.upsert(edited)
    client.workspace = edited
    await r(Request("ns", "w"))
    assert client.claim_creates == 2
    # After the pause, the same generation is retried, with a longer pause.
    clock_pause = await r(Request("ns", "w"))
    assert client.claim_creates == 2 and clock_pause.requeue_after is not None
    await clock.advance(5.0)
    again = await r(Request("ns", "w"))
    assert client.claim_creates == 3 and again.requeue_after == pytest.approx(10.0)


async def test_a_first_reconcile_that_fails_still_leaves_conditions() -> None:
    client = Client(create_error=ServerError(503, "ServiceUnavailable", "etcd leader changed"))
    r = _reconciler(client, _workspace(), "nodeclaim", FakeClock())
    with pytest.raises(ServerError):
        await r(Request("ns", "w"))
    assert client.status_writes, (
        "a transient failure is retried, but the Workspace already says what it awaits"
    )
    types = {c["type"] for c in client.status_writes[0]["conditions"]}
    assert {"ResourceReady", "NodeClaimReady", "NodesReady", "InferenceReady"} <= types


async def test_an_event_when_a_condition_changes_status_or_reason_not_for_progress_in_its_message() -> None:
    from kaito_ctrl.api import labels as L
    from kaito_ctrl.controllers.workspace.nodes import NodeCondition, NodesResult
    from kaito_ctrl.controllers.workspace.reconciler import Observed
    from kaito_ctrl.controllers.workspace.spec import WorkspaceSpec

    client = Client()
    ws = _workspace()
    r = _reconciler(client, ws, "byo", FakeClock())

    def waiting(ready: int) -> Observed:
        message = f"{ready} of 2 needed matching nodes are Ready"
        node = NodeCondition(L.COND_NODES_READY, False, "NodeNotReady", message)
        return Observed(target=2, nodes=NodesResult(False, [], [node], "NodeNotReady", message))

    async def write(observed: Observed) -> list[tuple[str, str]]:
        before = len(client.events)
        await r.write_status(WorkspaceSpec(ws), observed)
        ws["status"] = client.status_writes[-1]
        # (reason, condition type): an Event names every condition that moved to its reason and message.
        out = []
        for e in client.events[before:]:
            types, _, status_ = e["message"].split(":", 1)[0].partition("=")
            out += [(e["reason"], f"{t}={status_}") for t in types.split(",")]
        return out

    first = await write(waiting(0))
    assert ("NodeNotReady", "NodesReady=False") in first and ("NodeNotReady", "ResourceReady=False") in first
    assert len(client.events) == len({(e["reason"], e["message"].split(":", 1)[1]) for e in client.events}), (
        "conditions that moved to the same reason and message share one Event"
    )
    assert await write(waiting(1)) == [], "only the count in the message moved"
    assert client.status_writes[-1] != client.status_writes[-2], "the condition still carries the new message"
    ready = NodesResult(True, ["n1", "n2"], [NodeCondition(L.COND_NODES_READY, True, "NodesReady", "Enough")])
    moved = await write(Observed(target=2, nodes=ready))
    assert ("NodesReady", "NodesReady=True") in moved and (
        "workspaceResourceStatusSuccess",
        "ResourceReady=True",
    ) in moved
