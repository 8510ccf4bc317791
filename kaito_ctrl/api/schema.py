"""The Workspace API as Python data: the single source of truth for the CRD schemas.

``hack/gen_crds.py`` renders ``manifests/crds/`` from these definitions and a test checks the committed YAML
equals the output. v1alpha1 (the seed's shape) is a subset of v1beta1 (the storage version), so the two are
served from the same stored objects with ``conversion.strategy: None``: no conversion webhook is needed.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]


def string(desc: str, **kw: Any) -> Schema:
    return {"type": "string", "description": desc, **kw}


def integer(desc: str, **kw: Any) -> Schema:
    return {"type": "integer", "description": desc, **kw}


def boolean(desc: str, **kw: Any) -> Schema:
    return {"type": "boolean", "description": desc, **kw}


def array(desc: str, items: Schema, **kw: Any) -> Schema:
    return {"type": "array", "description": desc, "items": items, **kw}


def obj(desc: str, props: dict[str, Schema] | None = None, *, required: Any = (), **kw: Any) -> Schema:
    out: Schema = {"type": "object", "description": desc}
    if props is not None:
        out["properties"] = props
    if required:
        out["required"] = list(required)
    out.update(kw)
    return out


def preserved(desc: str) -> Schema:
    """A free-form Kubernetes object (pod template, volume source) kept as written."""
    return {"type": "object", "description": desc, "x-kubernetes-preserve-unknown-fields": True}


def string_map(desc: str) -> Schema:
    return {"type": "object", "description": desc, "additionalProperties": {"type": "string"}}


LABEL_SELECTOR = obj(
    "Selects the GPU nodes for this workspace. matchLabels are also put on provisioned nodes and used for pod "
    "node affinity; with BYO nodes, nodes carrying these labels are used as they are.",
    {
        "matchLabels": string_map("Labels a node must carry, e.g. {apps: phi-3}."),
        "matchExpressions": array(
            "Set-based requirements (key, operator In/NotIn/Exists/DoesNotExist, values).",
            obj(
                "A label selector requirement.",
                {
                    "key": string("The label key."),
                    "operator": string("In, NotIn, Exists or DoesNotExist."),
                    "values": array("Values for In and NotIn.", {"type": "string"}),
                },
                required=("key", "operator"),
            ),
        ),
    },
    **{"x-kubernetes-map-type": "atomic"},
)


def resource_spec(version: str) -> Schema:
    props: dict[str, Schema] = {
        "count": integer(
            "Minimum number of GPU nodes. The node estimator may ask for more when the model needs it.",
            default=1,
            minimum=1,
        ),
        "instanceType": string(
            "Azure (or AWS) GPU VM size for provisioned nodes, e.g. Standard_NC12s_v3 or "
            "Standard_NC24ads_A100_v4. It must have enough GPU memory for the model; `kaito-ctrl presets` lists "
            "the needs. Leave empty to use your own (BYO) nodes selected by labelSelector.",
            maxLength=64,
        ),
        "labelSelector": LABEL_SELECTOR,
        "preferredNodes": array(
            "Names of existing nodes to use first (BYO). Deprecated in v1beta1.", {"type": "string"}
        ),
    }
    if version == "v1beta1":
        props["partition"] = obj(
            "GPU partitioning of BYO nodes (MIG or accelerator slices).",
            {
                "mode": string("mig or accelerator.", enum=["mig", "accelerator"]),
                "profile": string("MIG profile such as 1g.10gb."),
                "count": integer("Accelerator slices per pod.", minimum=1),
            },
            required=("mode",),
        )
    return obj(
        "The GPU nodes that run the workload.",
        props,
        required=("labelSelector",),
    )


def preset_spec(version: str) -> Schema:
    options: dict[str, Schema] = {
        "image": string("Private model image (seed-era private presets)."),
        "imagePullSecrets": array("Pull secrets for a private image.", {"type": "string"}),
    }
    if version == "v1beta1":
        options["modelAccessSecret"] = string(
            "Name of a Secret (key HF_TOKEN) holding a Hugging Face token, for models that need one."
        )
    return obj(
        "A model from the kaito-ctrl preset catalog.",
        {
            "name": string(
                "Preset name (e.g. phi-3-mini-4k-instruct) or Hugging Face id; see `kaito-ctrl presets`.",
                minLength=1,
            ),
            "accessMode": string(
                "public: weights come with the preset image; private: you supply the image.",
                enum=["public", "private"],
                default="public",
            ),
            "presetOptions": obj("Options of the preset.", options),
        },
        required=("name",),
    )


DATA_SOURCE = obj(
    "Where data comes from: exactly one of urls, image or volumeSource.",
    {
        "name": string("Name of the data (an adapter's name, or the tuning input's)."),
        "urls": array(
            "http(s) URLs of files to download (no private, loopback or metadata hosts).", {"type": "string"}
        ),
        "image": string("An image whose /data holds the files."),
        "imagePullSecrets": array("Pull secrets for the image.", {"type": "string"}),
        "volumeSource": preserved("A Kubernetes volume source holding the data."),
    },
)

DATA_DESTINATION = obj(
    "Where results go: exactly one of image (with imagePushSecret) or volumeSource.",
    {
        "image": string("Image to push the tuned adapter to."),
        "imagePushSecret": string("Secret with registry credentials for pushing the image."),
        "volumeSource": preserved("A Kubernetes volume to write the tuned adapter to."),
    },
)


def inference_spec(version: str) -> Schema:
    return obj(
        "Serve a model: a preset or your own pod template, optionally with LoRA adapters.",
        {
            "preset": preset_spec(version),
            "template": preserved(
                "A pod template to run instead of a preset (mutually exclusive with preset)."
            ),
            "config": string("ConfigMap (same namespace) with inference_config.yaml for the runtime."),
            "adapters": array(
                "LoRA adapters loaded next to the model (at most 10, unique names).",
                obj(
                    "An adapter.",
                    {
                        "source": DATA_SOURCE,
                        "strength": string("Adapter weight between 0 and 1, as a string (default 1.0)."),
                    },
                ),
                maxItems=10,
            ),
        },
        **{
            "x-kubernetes-validations": [
                {
                    "rule": "!(has(self.preset) && has(self.template))",
                    "message": "inference: set either preset or template, not both",
                }
            ]
        },
    )


TUNING = obj(
    "Fine-tune a preset with LoRA or QLoRA.",
    {
        "preset": preset_spec("v1beta1"),
        "method": string("Tuning method: lora or qlora.", enum=["lora", "qlora"]),
        "config": string("ConfigMap with training_config.yaml; defaults to the method's template."),
        "input": DATA_SOURCE,
        "output": DATA_DESTINATION,
    },
    required=("input", "output"),
)

CONDITIONS = array(
    "Conditions: ResourceReady, NodeClaimReady/MachineReady, NodesReady, InferenceReady, JobStarted, "
    "WorkspaceSucceeded, WorkspaceReady. Reasons name the real cause.",
    obj(
        "A condition.",
        {
            "type": string("Condition type."),
            "status": string("True, False or Unknown.", enum=["True", "False", "Unknown"]),
            "reason": string("Machine-readable cause."),
            "message": string("What happened and what to do."),
            "lastTransitionTime": string("When the status last changed.", format="date-time"),
            "observedGeneration": integer("The generation the condition was computed for."),
        },
        required=("type", "status"),
    ),
    **{"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
)


def status(version: str) -> Schema:
    props: dict[str, Schema] = {
        "workerNodes": array("Nodes running the workload.", {"type": "string"}),
        "conditions": CONDITIONS,
    }
    # Served in both versions (status is written by kaito-ctrl, never by users), so the ``-o wide`` columns
    # read the same through v1alpha1 as through v1beta1.
    props.update(
        {
            "state": string("Summary: Pending, Ready, NotReady, Running, Succeeded, Failed or Deleting."),
            "targetNodeCount": integer("Nodes the workspace needs (set once by the estimator)."),
            "observedGeneration": integer("The generation the status describes."),
        }
    )
    return obj("Observed state, written by kaito-ctrl.", props)


def cond_column(name: str, cond: str) -> dict[str, str]:
    return {"name": name, "type": "string", "jsonPath": f'.status.conditions[?(@.type=="{cond}")].status'}


def _wide(column: dict[str, Any]) -> dict[str, Any]:
    """A column shown only with ``kubectl get -o wide`` (priority 1)."""
    return {**column, "priority": 1}


# Both served versions print the seed's columns on a plain ``kubectl get workspace``; the newer ones are
# there with ``-o wide``, so nothing a script reads today is lost.
_SEED_COLUMNS: list[dict[str, Any]] = [
    {"name": "Instance", "type": "string", "jsonPath": ".resource.instanceType"},
    cond_column("ResourceReady", "ResourceReady"),
    cond_column("InferenceReady", "InferenceReady"),
    cond_column("WorkspaceReady", "WorkspaceReady"),
]
_AGE: dict[str, Any] = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
_WIDE_COLUMNS: list[dict[str, Any]] = [
    _wide(cond_column("JobStarted", "JobStarted")),
    _wide(cond_column("WorkspaceSucceeded", "WorkspaceSucceeded")),
    _wide({"name": "TargetNodeCount", "type": "integer", "jsonPath": ".status.targetNodeCount"}),
    _wide({"name": "State", "type": "string", "jsonPath": ".status.state"}),
]
COLUMNS: dict[str, list[dict[str, Any]]] = {
    "v1alpha1": [*_SEED_COLUMNS, *_WIDE_COLUMNS, _AGE],
    "v1beta1": [*_SEED_COLUMNS, *_WIDE_COLUMNS, _AGE],
}


def workspace_schema(version: str) -> Schema:
    return obj(
        "Workspace runs an AI model on GPU nodes: inference with a preset (or your pod template), or a tuning "
        "job. kaito-ctrl provisions the nodes, runs the workload and reports what is going on in status.",
        {
            "apiVersion": string("API version: kaito.sh/v1alpha1 or kaito.sh/v1beta1."),
            "kind": string("Workspace."),
            "metadata": {"type": "object"},
            "resource": resource_spec(version),
            "inference": inference_spec(version),
            "tuning": TUNING,
            "status": status(version),
        },
        **{
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.inference) != has(self.tuning)",
                    "message": "set exactly one of inference or tuning",
                },
            ]
        },
    )


def workspace_crd() -> dict[str, Any]:
    versions: list[dict[str, Any]] = []
    for version in ("v1alpha1", "v1beta1"):
        versions.append(
            {
                "name": version,
                "served": True,
                "storage": version == "v1beta1",
                "schema": {"openAPIV3Schema": workspace_schema(version)},
                "subresources": {"status": {}},
                "additionalPrinterColumns": COLUMNS[version],
            }
        )
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "workspaces.kaito.sh"},
        "spec": {
            "group": "kaito.sh",
            "scope": "Namespaced",
            "names": {
                "kind": "Workspace",
                "listKind": "WorkspaceList",
                "plural": "workspaces",
                "singular": "workspace",
                "shortNames": ["wk", "wks"],
                "categories": ["workspace"],
            },
            # v1alpha1 is a field subset of v1beta1, so the apiserver serves stored v1beta1 objects as v1alpha1
            # by changing apiVersion alone; no conversion webhook is needed.
            "conversion": {"strategy": "None"},
            "versions": versions,
        },
    }
