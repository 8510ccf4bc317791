"""Karpenter's Machine (karpenter.sh/v1alpha5) and NodeClaim (karpenter.sh/v1) CRDs, for clusters without
Karpenter. Field names, required fields and rules follow upstream so real Karpenter objects validate."""

from __future__ import annotations

from typing import Any

from kaito_ctrl.api.schema import Schema, array, integer, obj, preserved, string

TAINT = obj(
    "A node taint.",
    {
        "key": string("Taint key.", minLength=1),
        "value": string("Taint value."),
        "effect": string(
            "NoSchedule, PreferNoSchedule or NoExecute.", enum=["NoSchedule", "PreferNoSchedule", "NoExecute"]
        ),
        "timeAdded": string("When the taint was added.", format="date-time"),
    },
    required=("key", "effect"),
)


def requirement(with_min_values: bool) -> Schema:
    operators = ["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
    if with_min_values:  # karpenter.sh/v1 also knows Gte and Lte
        operators += ["Gte", "Lte"]
    props: dict[str, Schema] = {
        "key": string("Node label key.", maxLength=316),
        "operator": string(", ".join(operators[:-1]) + " or " + operators[-1] + ".", enum=operators),
        "values": array("Values.", {"type": "string"}, **{"x-kubernetes-list-type": "atomic"}),
    }
    if with_min_values:
        props["minValues"] = integer("Minimum number of distinct values.", minimum=1, maximum=50)
    return obj("A node selector requirement.", props, required=("key", "operator"))


RESOURCES = obj(
    "Resources the node must provide.",
    {"requests": {"type": "object", "description": "Requested resources.", "additionalProperties": {
        "anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True}}},
)  # fmt: skip

CONDITION = obj(
    "A status condition.",
    {
        "type": string("Condition type."),
        "status": string("True, False or Unknown."),
        "severity": string("Severity (Machine conditions)."),
        "reason": string("Cause."),
        "message": string("Details."),
        "lastTransitionTime": string("When the status changed.", format="date-time"),
        "observedGeneration": integer("Generation observed."),
    },
    required=("type", "status"),
)

# karpenter.sh/v1 conditions are metav1.Conditions: no severity, a transition time always.
NODECLAIM_CONDITION = obj(
    "A status condition.",
    {
        "type": string("Condition type."),
        "status": string("True, False or Unknown.", enum=["True", "False", "Unknown"]),
        "reason": string("Cause."),
        "message": string("Details."),
        "lastTransitionTime": string("When the status changed.", format="date-time"),
        "observedGeneration": integer("Generation observed."),
    },
    required=("type", "status", "lastTransitionTime"),
)

QUANTITY_MAP = {
    "type": "object",
    "description": "Resource quantities.",
    "additionalProperties": {
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "x-kubernetes-int-or-string": True,
    },
}


def node_status(extra: dict[str, Schema], condition: Schema = CONDITION) -> Schema:
    return obj(
        "Observed state of the node request.",
        {
            "nodeName": string("The Node linked to this request."),
            "providerID": string("Cloud provider ID of the instance."),
            "imageID": string("Image of the instance."),
            "capacity": QUANTITY_MAP,
            "allocatable": QUANTITY_MAP,
            "conditions": array("Lifecycle conditions.", condition),
            **extra,
        },
    )


def _crd(
    kind: str, plural: str, version: str, schema: Schema, columns: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.karpenter.sh"},
        "spec": {
            "group": "karpenter.sh",
            "scope": "Cluster",
            "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural, "singular": kind.lower(),
                      "categories": ["karpenter"]},
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                }
            ],
        },
    }  # fmt: skip


def machine_crd() -> dict[str, Any]:
    spec = obj(
        "What the machine must be.",
        {
            "taints": array("Taints for the node.", TAINT),
            "startupTaints": array("Taints expected to be removed by a daemon after start.", TAINT),
            "requirements": array("Node selector requirements.", requirement(False)),
            "resources": RESOURCES,
            "kubelet": preserved("Kubelet configuration."),
            "machineTemplateRef": obj(
                "The provider template.",
                {"kind": string("Kind."), "name": string("Name."), "apiVersion": string("API version.")},
                required=("name",),
            ),
        },
    )
    schema = obj(
        "Machine is a request for one node (Karpenter v1alpha5, the seed-era kind).",
        {"apiVersion": string("API version."), "kind": string("Kind."), "metadata": {"type": "object"},
         "spec": spec, "status": node_status({})},
    )  # fmt: skip
    columns: list[dict[str, Any]] = [
        {
            "name": "Type",
            "type": "string",
            "jsonPath": ".metadata.labels.node\\.kubernetes\\.io/instance-type",
        },
        {"name": "Zone", "type": "string", "jsonPath": ".metadata.labels.topology\\.kubernetes\\.io/zone"},
        {"name": "Node", "type": "string", "jsonPath": ".status.nodeName"},
        {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    return _crd("Machine", "machines", "v1alpha5", schema, columns)


def nodeclaim_crd() -> dict[str, Any]:
    spec = obj(
        "What the node must be. Immutable.",
        {
            "taints": array("Taints for the node.", TAINT),
            "startupTaints": array("Taints expected to be removed by a daemon after start.", TAINT),
            "requirements": array("Node selector requirements.", requirement(True), maxItems=100),
            "resources": RESOURCES,
            "nodeClassRef": obj(
                "The provider's node class.",
                {
                    "group": string("API group.", pattern="^[^/]*$"),
                    "kind": string("Kind."),
                    "name": string("Name."),
                },
                required=("group", "kind", "name"),
                **{"x-kubernetes-validations": [
                    {"rule": "self.group != ''", "message": "group may not be empty"},
                    {"rule": "self.kind != ''", "message": "kind may not be empty"},
                    {"rule": "self.name != ''", "message": "name may not be empty"},
                ]},
            ),
            "terminationGracePeriod": string("Time to wait for draining.", pattern="^([0-9]+(s|m|h))+$"),
            "expireAfter": string("Lifetime of the node, or Never.", default="720h"),
        },
        required=("requirements", "nodeClassRef"),
        **{"x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "spec is immutable"}]},
    )  # fmt: skip
    schema = obj(
        "NodeClaim is a request for one node (Karpenter v1).",
        {"apiVersion": string("API version."), "kind": string("Kind."), "metadata": {"type": "object"},
         "spec": spec, "status": node_status(
             {"lastPodEventTime": string("Last pod event.", format="date-time")}, NODECLAIM_CONDITION)},
        required=("spec",),
    )  # fmt: skip
    columns: list[dict[str, Any]] = [
        {
            "name": "Type",
            "type": "string",
            "jsonPath": ".metadata.labels.node\\.kubernetes\\.io/instance-type",
        },
        {"name": "Node", "type": "string", "jsonPath": ".status.nodeName"},
        {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        {"name": "ID", "type": "string", "jsonPath": ".status.providerID", "priority": 1},
        {
            "name": "NodePool",
            "type": "string",
            "jsonPath": ".metadata.labels.karpenter\\.sh/nodepool",
            "priority": 1,
        },
    ]
    return _crd("NodeClaim", "nodeclaims", "v1", schema, columns)
