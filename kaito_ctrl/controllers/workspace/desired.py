"""Every object the controllers would create for one Workspace, computed without a cluster.

``kaito-ctrl render`` prints these. They come from the same steps the reconciler runs (defaulting as the mutating
webhook stores it, validation, the node plan, the claim manifests, the workload or Job renderer), so what is shown
is what gets applied. Only what needs a live cluster is left out: the cluster-assigned uid (a placeholder unless the
file carries one, as ``kubectl get -o yaml`` output does) and anything that depends on nodes already present.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from kaito_ctrl.api.defaults import default_workspace
from kaito_ctrl.api.validation import FieldError, check_workspace
from kaito_ctrl.controllers.workspace.nodes import (
    byo_node_requirements,
    claim_manifest,
    claim_node_requirements,
    node_object_name,
)
from kaito_ctrl.controllers.workspace.spec import WorkspaceSpec, planned_node_count
from kaito_ctrl.controllers.workspace.tuning import render_tuning
from kaito_ctrl.controllers.workspace.workload import render_inference, render_template_workload
from kaito_ctrl.kube.machines import DEFAULT_NODE_CLASS, NodeObjectKind

# A uid that cannot collide with a real one (the apiserver assigns random v4 uids); it keeps owner references
# well-formed, so the output passes a server-side dry run.
PLACEHOLDER_UID = "00000000-0000-0000-0000-000000000000"
MODES = ("byo", "nodeclaim", "machine")


class InvalidWorkspace(ValueError):
    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors


@dataclass
class Desired:
    workspace: dict[str, Any]
    objects: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def desired_objects(
    obj: dict[str, Any],
    *,
    mode: str,
    registry: str,
    node_class: tuple[str, str, str] = DEFAULT_NODE_CLASS,
) -> Desired:
    """The objects for ``obj`` in node-provisioner ``mode``; InvalidWorkspace when admission would refuse it.
    ``node_class`` is the (group, kind, name) NodeClaims reference, as ``kaito-ctrl run --node-class-*`` sets it
    (e.g. a KWOKNodeClass or EC2NodeClass when another Karpenter provider launches the nodes)."""
    if mode not in MODES:
        raise ValueError(f"node provisioner must be one of {', '.join(MODES)}, not {mode!r}")
    errors, warnings = check_workspace(obj, node_provisioner=mode)
    if errors:
        raise InvalidWorkspace(errors)
    stored = default_workspace(obj)
    meta = stored.setdefault("metadata", {})
    meta.setdefault("namespace", "default")
    out = Desired(workspace=stored, notes=list(warnings))
    if not meta.get("uid"):
        meta["uid"] = PLACEHOLDER_UID
        out.notes.append(
            "no metadata.uid in the input: owner references and node object names use a placeholder uid "
            "(render the output of `kubectl get workspace NAME -o yaml` to see the exact names)"
        )
    ws = WorkspaceSpec(copy.deepcopy(stored))
    count, estimate_error = planned_node_count(ws)
    if estimate_error:
        raise InvalidWorkspace([FieldError("resource.instanceType", estimate_error)])
    provisioned = mode != "byo"
    if provisioned:
        kind: NodeObjectKind = "machine" if mode == "machine" else "nodeclaim"
        nodes = 1 if ws.tuning is not None else max(count, 1)
        out.objects += [claim_manifest(kind, ws, node_object_name(ws, i), node_class) for i in range(nodes)]
    requirements = claim_node_requirements(ws) if provisioned else byo_node_requirements(ws)
    if ws.tuning is not None:
        out.objects += render_tuning(ws, node_requirements=requirements, registry=registry)
    elif ws.preset is None:
        out.objects += render_template_workload(ws, node_requirements=requirements)
    else:
        out.objects += render_inference(ws, nodes=count, node_requirements=requirements, registry=registry)
    return out
