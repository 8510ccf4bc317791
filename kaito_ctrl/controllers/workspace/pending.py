"""The conditions a Workspace has from its first reconcile on, each saying what it waits for.

A condition the steps have not reached yet (NodesReady while the NodeClaims launch, InferenceReady while the
nodes are not there) is ``Unknown`` with the awaited thing as its reason, so ``kubectl get workspace`` never
shows empty columns and ``kubectl describe`` always says what is going on.
"""

from __future__ import annotations

from kaito_ctrl.api import labels as L


def pending_conditions(*, tuning: bool, node_condition: str | None) -> dict[str, tuple[str, str]]:
    """Every condition type that applies, by type: (reason, message) while it is awaited.

    ``node_condition`` is NodeClaimReady or MachineReady when nodes are auto-provisioned, None for BYO.
    """
    out = {
        L.COND_RESOURCE_READY: ("AwaitingNodes", "waiting for GPU nodes to be ready"),
    }
    if node_condition is not None:
        kind = "Machine" if node_condition == L.COND_MACHINE_READY else "NodeClaim"
        out[node_condition] = (f"Awaiting{kind}s", f"waiting for the {kind}s to be created and launched")
    out[L.COND_NODES_READY] = ("AwaitingNodes", "waiting for nodes to join with nvidia.com/gpu capacity")
    if tuning:
        out[L.COND_JOB_STARTED] = ("AwaitingResource", "the tuning job starts once its node is ready")
    else:
        out[L.COND_INFERENCE_READY] = (
            "AwaitingResource",
            "the inference workload starts once nodes are ready",
        )
    out[L.COND_WORKSPACE_SUCCEEDED] = ("workspacePending", "waiting for resources and the workload")
    out[L.COND_WORKSPACE_READY] = ("workspacePending", "waiting for resources and the workload")
    return out
