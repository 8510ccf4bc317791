"""Well-known names: labels, annotations, finalizers, condition types and reasons (Kaito's, kept exact)."""

from __future__ import annotations

GROUP = "kaito.sh"
WORKSPACE_FINALIZER = "workspace.finalizer.kaito.sh"

LABEL_WORKSPACE = "kaito.sh/workspace"
LABEL_WORKSPACE_NAMESPACE = "kaito.sh/workspacenamespace"
LABEL_RAGENGINE = "kaito.sh/ragengine"
LABEL_RAGENGINE_NAMESPACE = "kaito.sh/ragenginenamespace"
LABEL_ACCELERATOR = "accelerator"

ANNOTATION_ENABLE_LB = "kaito.sh/enablelb"
ANNOTATION_RUNTIME = "kaito.sh/runtime"
ANNOTATION_BYPASS_RESOURCE_CHECKS = "kaito.sh/bypass-resource-checks"
ANNOTATION_NODE_IMAGE_FAMILY = "kaito.sh/node-image-family"
ANNOTATION_REVISION = "workspace.kaito.io/revision"
ANNOTATION_HASH = "workspace.kaito.io/hash"
# Kaito labels each Workspace's ControllerRevisions with its name and keeps the last ten.
LABEL_REVISION_OF = "workspace.kaito.io/name"
MAX_REVISION_HISTORY = 10

# Keys stripped from a user's labelSelector.matchLabels before they are copied onto nodes (Kaito's reserved set).
RESERVED_SELECTOR_KEYS = frozenset(
    {
        LABEL_WORKSPACE,
        LABEL_WORKSPACE_NAMESPACE,
        LABEL_RAGENGINE,
        LABEL_RAGENGINE_NAMESPACE,
        "karpenter.kaito.sh/workspace-name",
        "karpenter.kaito.sh/workspace-namespace",
        "karpenter.kaito.sh/inferenceset",
        "karpenter.kaito.sh/inferenceset-namespace",
    }
)

# Condition types.
COND_RESOURCE_READY = "ResourceReady"
COND_NODECLAIM_READY = "NodeClaimReady"
COND_MACHINE_READY = "MachineReady"
COND_NODES_READY = "NodesReady"
COND_INFERENCE_READY = "InferenceReady"
COND_JOB_STARTED = "JobStarted"
COND_WORKSPACE_SUCCEEDED = "WorkspaceSucceeded"
COND_WORKSPACE_READY = "WorkspaceReady"  # the seed's v1alpha1 summary column
COND_WORKSPACE_DELETING = "WorkspaceDeleting"

NODE_IMAGE_FAMILIES = ("ubuntu", "azurelinux")
TUNING_METHODS = ("lora", "qlora")
MAX_ADAPTERS = 10
