from __future__ import annotations

from typing import Any

from kaito_ctrl.kube import conditions as cond
from kaito_ctrl.kube.machines import (
    INSTANCE_TYPE_LABEL,
    NodeObjectAPI,
    instance_type,
    state_of,
    storage_request,
)


def test_set_condition_keeps_transition_time_when_status_unchanged() -> None:
    conds: list[dict[str, Any]] = []
    assert cond.set_condition(conds, "Ready", False, "Waiting", "nodes pending", now=100.0)
    first = conds[0]["lastTransitionTime"]
    # Same status, new reason: a change, but the transition time stays.
    assert cond.set_condition(conds, "Ready", False, "QuotaExceeded", "no quota", now=200.0)
    assert conds[0]["lastTransitionTime"] == first
    assert conds[0]["reason"] == "QuotaExceeded"
    # Identical write: no change reported.
    assert not cond.set_condition(conds, "Ready", False, "QuotaExceeded", "no quota", now=300.0)
    # Status flips: new transition time.
    assert cond.set_condition(conds, "Ready", True, "Ready", now=400.0)
    assert conds[0]["lastTransitionTime"] != first
    assert len(conds) == 1


def test_set_condition_truncates_long_messages() -> None:
    conds: list[dict[str, Any]] = []
    cond.set_condition(conds, "X", "False", "R", "m" * 5000, now=1.0, max_message=100)
    assert len(conds[0]["message"]) == 100 and conds[0]["message"].endswith("...")


def test_nodeclaim_manifest_has_reference_shape() -> None:
    api = NodeObjectAPI(client=None, kind="nodeclaim")  # type: ignore[arg-type]
    obj = api.manifest(
        "ws1a2b3c4d5",
        instance_type="Standard_NC12s_v3",
        labels={"kaito.sh/workspace": "w", "kaito.sh/workspacenamespace": "ns"},
        storage="120Gi",
    )
    assert obj["apiVersion"] == "karpenter.sh/v1" and obj["kind"] == "NodeClaim"
    assert obj["metadata"]["labels"]["karpenter.sh/nodepool"] == "kaito"
    assert obj["spec"]["nodeClassRef"] == {"group": "kaito.sh", "kind": "KaitoNodeClass", "name": "default"}
    assert obj["spec"]["taints"] == [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]
    keys = {r["key"] for r in obj["spec"]["requirements"]}
    assert {
        "karpenter.sh/nodepool",
        INSTANCE_TYPE_LABEL,
        "kubernetes.io/os",
        "karpenter.azure.com/sku-name",
    } <= keys
    assert instance_type(obj) == "Standard_NC12s_v3"
    assert storage_request(obj) == "120Gi"


def test_machine_manifest_has_seed_shape() -> None:
    api = NodeObjectAPI(client=None, kind="machine")  # type: ignore[arg-type]
    obj = api.manifest("wsabc", instance_type="Standard_NC6s_v3", labels={"kaito.sh/workspace": "w"})
    assert obj["apiVersion"] == "karpenter.sh/v1alpha5" and obj["kind"] == "Machine"
    assert obj["spec"]["machineTemplateRef"] == {"name": "wsabc"}
    assert obj["metadata"]["labels"]["karpenter.sh/provisioner-name"] == "default"
    assert "nodeClassRef" not in obj["spec"]


def _claim(kind: str, conds: list[dict[str, Any]], **status: Any) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"name": "ws1"}, "status": {"conditions": conds, **status}}


def test_state_names_the_first_real_blocking_cause() -> None:
    obj = _claim(
        "NodeClaim",
        [
            {
                "type": "Launched",
                "status": "False",
                "reason": "QuotaExceeded",
                "message": "Operation could not...",
            },
            {"type": "Registered", "status": "Unknown", "reason": "AwaitingReconciliation"},
            {"type": "Ready", "status": "False", "reason": "UnhealthyDependents"},
        ],
    )
    st = state_of(obj)
    assert st.launched == "False" and st.ready == "False" and not st.is_ready
    assert (st.blocking_reason, st.blocking_message) == ("QuotaExceeded", "Operation could not...")


def test_machine_kind_uses_machine_condition_names() -> None:
    obj = _claim(
        "Machine",
        [
            {"type": "MachineLaunched", "status": "True", "reason": "MachineLaunched"},
            {"type": "MachineRegistered", "status": "False", "reason": "NodeNotFound", "message": "no node"},
            {"type": "Ready", "status": "False"},
        ],
        providerID="azure:///x",
    )
    st = state_of(obj)
    assert st.launched == "True" and st.registered == "False"
    assert st.blocking_reason == "NodeNotFound" and st.provider_id == "azure:///x"


def test_legacy_claim_without_conditions_is_ready_when_linked() -> None:
    assert state_of(_claim("NodeClaim", [], nodeName="aks-x")).is_ready
    assert not state_of(_claim("NodeClaim", [])).is_ready
