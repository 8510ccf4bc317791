"""Invalid Workspaces, each with the field path its rejection message must name.

Used twice: by the validation unit tests, and applied to the real apiserver with the admission webhook
registered (where some are already refused by the CRD schema or its CEL rules, also naming the field).
"""

from __future__ import annotations

import copy
from typing import Any

Obj = dict[str, Any]


def inference_ws(name: str = "bad") -> Obj:
    return {
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "Workspace",
        "metadata": {"name": name},
        "resource": {
            "instanceType": "Standard_NC12s_v3",
            "labelSelector": {"matchLabels": {"apps": "phi-3"}},
        },
        "inference": {"preset": {"name": "phi-3-mini-4k-instruct"}},
    }


def tuning_ws(name: str = "bad") -> Obj:
    return {
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "Workspace",
        "metadata": {"name": name},
        "resource": {"instanceType": "Standard_NC12s_v3", "labelSelector": {"matchLabels": {"app": "tune"}}},
        "tuning": {
            "preset": {"name": "phi-3-mini-128k-instruct"},
            "method": "qlora",
            "input": {"urls": ["https://example.com/data.parquet"]},
            "output": {"image": "myregistry.azurecr.io/out:0.0.1", "imagePushSecret": "push"},
        },
    }


def _set(obj: Obj, path: str, value: Any) -> Obj:
    out = copy.deepcopy(obj)
    cur = out
    keys = path.split(".")
    for k in keys[:-1]:
        cur = cur.setdefault(k, {})
    if value is _DELETE:
        cur.pop(keys[-1], None)
    else:
        cur[keys[-1]] = value
    return out


_DELETE = object()


def _url(url: str) -> Obj:
    return _set(tuning_ws(), "tuning.input.urls", [url])


def _adapters(adapters: list[Obj]) -> Obj:
    return _set(inference_ws(), "inference.adapters", adapters)


def _adapter(name: str = "a1", image: str = "myregistry.azurecr.io/adapter:1", strength: Any = "1.0") -> Obj:
    return {"source": {"name": name, "image": image}, "strength": strength}


CASES: list[tuple[str, Obj, str]] = [
    # --- top level ---
    ("name-not-dns-label", _set(inference_ws(), "metadata.name", "bad.name.with.dots"), "metadata.name"),
    ("neither-inference-nor-tuning", _set(inference_ws(), "inference", _DELETE), "inference"),
    ("both-inference-and-tuning", {**tuning_ws(), "inference": inference_ws()["inference"]}, "inference"),
    ("no-resource", _set(inference_ws(), "resource", _DELETE), "resource"),
    ("no-label-selector", _set(inference_ws(), "resource.labelSelector", _DELETE), "labelSelector"),
    ("empty-label-selector", _set(inference_ws(), "resource.labelSelector", {}), "resource.labelSelector"),
    (
        "reserved-selector-only",
        _set(inference_ws(), "resource.labelSelector.matchLabels", {"kaito.sh/workspace": "x"}),
        "resource.labelSelector.matchLabels",
    ),
    ("count-zero", _set(inference_ws(), "resource.count", 0), "resource.count"),
    ("count-negative", _set(inference_ws(), "resource.count", -2), "resource.count"),
    ("count-string", _set(inference_ws(), "resource.count", "two"), "resource.count"),
    (
        "instance-type-not-a-label-value",
        _set(inference_ws(), "resource.instanceType", "Standard NC12s/v3"),
        "resource.instanceType",
    ),
    # --- label selectors, as Kubernetes validates them (the labels are copied onto NodeClaims and Nodes) ---
    (
        "badlabel-value",  # the example: admitted once, then refused by the apiserver on the NodeClaim
        _set(inference_ws(), "resource.labelSelector.matchLabels", {"apps": "${jndi}"}),
        "resource.labelSelector.matchLabels[apps]",
    ),
    (
        "selector-value-too-long",
        _set(inference_ws(), "resource.labelSelector.matchLabels", {"apps": "a" * 64}),
        "resource.labelSelector.matchLabels[apps]",
    ),
    (
        "selector-key-bad-prefix",
        _set(inference_ws(), "resource.labelSelector.matchLabels", {"Example.COM/apps": "x"}),
        "resource.labelSelector.matchLabels[Example.COM/apps]",
    ),
    (
        "selector-key-two-slashes",
        _set(inference_ws(), "resource.labelSelector.matchLabels", {"a/b/c": "x"}),
        "resource.labelSelector.matchLabels[a/b/c]",
    ),
    (
        "selector-key-empty-prefix",
        _set(inference_ws(), "resource.labelSelector.matchLabels", {"/apps": "x"}),
        "resource.labelSelector.matchLabels[/apps]",
    ),
    (
        "selector-expression-bad-operator",
        _set(
            inference_ws(),
            "resource.labelSelector.matchExpressions",
            [{"key": "apps", "operator": "Equals", "values": ["x"]}],
        ),
        "resource.labelSelector.matchExpressions[0].operator",
    ),
    (
        "selector-expression-in-without-values",
        _set(inference_ws(), "resource.labelSelector.matchExpressions", [{"key": "apps", "operator": "In"}]),
        "resource.labelSelector.matchExpressions[0].values",
    ),
    (
        "selector-expression-exists-with-values",
        _set(
            inference_ws(),
            "resource.labelSelector.matchExpressions",
            [{"key": "apps", "operator": "Exists", "values": ["x"]}],
        ),
        "resource.labelSelector.matchExpressions[0].values",
    ),
    (
        "selector-expression-bad-value",
        _set(
            inference_ws(),
            "resource.labelSelector.matchExpressions",
            [{"key": "apps", "operator": "In", "values": ["no spaces"]}],
        ),
        "resource.labelSelector.matchExpressions[0].values[0]",
    ),
    (
        "selector-expression-not-a-label-set",  # Kaito: LabelSelectorAsMap must succeed
        _set(
            inference_ws(),
            "resource.labelSelector.matchExpressions",
            [{"key": "zone", "operator": "NotIn", "values": ["a"]}],
        ),
        "resource.labelSelector.matchExpressions",
    ),
    (
        "instance-type-too-small",
        _set(
            _set(inference_ws(), "inference.preset.name", "phi-4"),
            "resource.instanceType",
            "Standard_NC6s_v3",
        ),
        "resource.instanceType",
    ),
    (
        "model-too-big-not-distributed",
        _set(
            _set(inference_ws(), "inference.preset.name", "falcon-40b"),
            "resource.instanceType",
            "Standard_NC24ads_A100_v4",
        ),
        "resource.instanceType",
    ),
    (
        "partition-with-instance-type",
        _set(inference_ws(), "resource.partition", {"mode": "mig", "profile": "1g.10gb"}),
        "resource.partition",
    ),
    (
        "partition-bad-mode",
        _set(
            _set(inference_ws(), "resource.instanceType", _DELETE), "resource.partition", {"mode": "slices"}
        ),
        "resource.partition.mode",
    ),
    (
        "preferred-nodes-not-strings",
        _set(inference_ws(), "resource.preferredNodes", [1, 2]),
        "resource.preferredNodes",
    ),
    (
        "bad-node-image-family",
        _set(inference_ws(), "metadata.annotations", {"kaito.sh/node-image-family": "windows"}),
        "kaito.sh/node-image-family",
    ),
    (
        "bad-runtime-annotation",
        _set(inference_ws(), "metadata.annotations", {"kaito.sh/runtime": "tensorrt"}),
        "kaito.sh/runtime",
    ),
    # --- inference ---
    (
        "preset-without-name",
        _set(inference_ws(), "inference.preset", {"accessMode": "public"}),
        "inference.preset.name",
    ),
    ("preset-empty-name", _set(inference_ws(), "inference.preset.name", ""), "inference.preset.name"),
    ("unknown-preset", _set(inference_ws(), "inference.preset.name", "phi-9-mega"), "inference.preset.name"),
    (
        "typo-preset",
        _set(inference_ws(), "inference.preset.name", "phi-3-mini-4k-instrct"),
        "inference.preset.name",
    ),
    ("deprecated-preset", _set(inference_ws(), "inference.preset.name", "phi-2"), "inference.preset.name"),
    (
        "bad-access-mode",
        _set(inference_ws(), "inference.preset.accessMode", "secret"),
        "inference.preset.accessMode",
    ),
    (
        "preset-and-template",
        _set(inference_ws(), "inference.template", {"spec": {"containers": []}}),
        "inference",
    ),
    ("neither-preset-nor-template", _set(inference_ws(), "inference", {"config": "cfg"}), "inference.preset"),
    (
        "token-model-without-secret",
        _set(
            _set(inference_ws(), "inference.preset.name", "llama-3.1-8b-instruct"),
            "resource.instanceType",
            "Standard_NC24ads_A100_v4",
        ),
        "inference.preset.presetOptions.modelAccessSecret",
    ),
    (
        "secret-for-open-model",
        _set(
            _set(
                _set(inference_ws(), "inference.preset.name", "phi-4"),
                "resource.instanceType",
                "Standard_NC24ads_A100_v4",
            ),
            "inference.preset.presetOptions",
            {"modelAccessSecret": "hf"},
        ),
        "inference.preset.presetOptions.modelAccessSecret",
    ),
    ("config-not-a-name", _set(inference_ws(), "inference.config", "Not_A_Name!"), "inference.config"),
    ("eleven-adapters", _adapters([_adapter(f"a{i}") for i in range(11)]), "inference.adapters"),
    (
        "duplicate-adapter-names",
        _adapters([_adapter("same"), _adapter("same")]),
        "inference.adapters[1].source.name",
    ),
    (
        "adapter-strength-not-number",
        _adapters([_adapter(strength="strong")]),
        "inference.adapters[0].strength",
    ),
    ("adapter-strength-above-one", _adapters([_adapter(strength="1.5")]), "inference.adapters[0].strength"),
    ("adapter-strength-negative", _adapters([_adapter(strength="-0.1")]), "inference.adapters[0].strength"),
    ("adapter-without-source", _adapters([{"strength": "0.5"}]), "inference.adapters[0].source"),
    (
        "adapter-without-name",
        _adapters([{"source": {"image": "r.io/a:1"}}]),
        "inference.adapters[0].source.name",
    ),
    ("adapter-without-image", _adapters([{"source": {"name": "a1"}}]), "inference.adapters[0].source.image"),
    (
        "adapter-with-urls",
        _adapters([{"source": {"name": "a1", "image": "r.io/a:1", "urls": ["https://example.com/a"]}}]),
        "inference.adapters[0].source.urls",
    ),
    ("adapter-bad-image", _adapters([_adapter(image="Not An Image")]), "inference.adapters[0].source.image"),
    # --- tuning ---
    ("tuning-bad-method", _set(tuning_ws(), "tuning.method", "full"), "tuning.method"),
    ("tuning-no-method", _set(tuning_ws(), "tuning.method", _DELETE), "tuning.method"),
    ("tuning-no-preset", _set(tuning_ws(), "tuning.preset", _DELETE), "tuning.preset"),
    ("tuning-unknown-preset", _set(tuning_ws(), "tuning.preset.name", "gpt-99"), "tuning.preset.name"),
    (
        "tuning-untunable-preset",
        _set(
            _set(tuning_ws(), "tuning.preset.name", "llama-3.3-70b-instruct"),
            "resource.instanceType",
            "Standard_NC96ads_A100_v4",
        ),
        "tuning.preset.name",
    ),
    ("tuning-no-input", _set(tuning_ws(), "tuning.input", _DELETE), "input"),
    ("tuning-no-output", _set(tuning_ws(), "tuning.output", _DELETE), "output"),
    ("tuning-input-two-sources", _set(tuning_ws(), "tuning.input.image", "r.io/data:1"), "tuning.input"),
    ("tuning-input-no-source", _set(tuning_ws(), "tuning.input", {"name": "data"}), "tuning.input"),
    ("tuning-url-ftp", _url("ftp://example.com/data.parquet"), "tuning.input.urls[0]"),
    ("tuning-url-file", _url("file:///etc/passwd"), "tuning.input.urls[0]"),
    ("tuning-url-no-host", _url("https:///data"), "tuning.input.urls[0]"),
    ("tuning-url-loopback", _url("http://127.0.0.1:8080/data"), "tuning.input.urls[0]"),
    ("tuning-url-loopback-other", _url("http://127.8.9.10/data"), "tuning.input.urls[0]"),
    ("tuning-url-localhost", _url("http://localhost/data"), "tuning.input.urls[0]"),
    ("tuning-url-ipv6-loopback", _url("http://[::1]/data"), "tuning.input.urls[0]"),
    ("tuning-url-private-10", _url("http://10.0.0.5/data"), "tuning.input.urls[0]"),
    ("tuning-url-private-192", _url("https://192.168.1.20/data"), "tuning.input.urls[0]"),
    ("tuning-url-private-172", _url("https://172.16.4.4/data"), "tuning.input.urls[0]"),
    ("tuning-url-link-local", _url("http://169.254.10.10/data"), "tuning.input.urls[0]"),
    (
        "tuning-url-azure-metadata",
        _url("http://169.254.169.254/metadata/identity/oauth2/token"),
        "tuning.input.urls[0]",
    ),
    (
        "tuning-url-gcp-metadata",
        _url("http://metadata.google.internal/computeMetadata/v1/"),
        "tuning.input.urls[0]",
    ),
    ("tuning-url-aws-metadata-v6", _url("http://[fd00:ec2::254]/latest/meta-data/"), "tuning.input.urls[0]"),
    (
        "tuning-url-aws-instance-data",
        _url("http://instance-data.ec2.internal/latest"),
        "tuning.input.urls[0]",
    ),
    ("tuning-url-cgnat", _url("http://100.64.1.1/data"), "tuning.input.urls[0]"),
    ("tuning-url-unspecified", _url("http://0.0.0.0/data"), "tuning.input.urls[0]"),
    ("tuning-url-cluster-service", _url("http://kubernetes.default.svc/api"), "tuning.input.urls[0]"),
    ("tuning-url-decimal-ip", _url("http://2130706433/data"), "tuning.input.urls[0]"),
    ("tuning-url-ipv4-mapped", _url("http://[::ffff:127.0.0.1]/data"), "tuning.input.urls[0]"),
    # Issue 22: the admission side of the URL policy, through the real webhook as well as the unit table.
    (
        "tuning-url-two-in-one",
        _url("https://example.com/data.parquet http://169.254.169.254/metadata/instance"),
        "tuning.input.urls[0]",
    ),
    ("tuning-url-curl-option", _url("-K/mnt/data/cfg"), "tuning.input.urls[0]"),
    ("tuning-url-mixed-radix", _url("http://127.0x0.0.1/"), "tuning.input.urls[0]"),
    ("tuning-url-glob", _url("http://{example.com,169.254.169.254}/"), "tuning.input.urls[0]"),
    ("tuning-url-fullwidth-dots", _url("http://127\u30020\u30020\u30021/"), "tuning.input.urls[0]"),
    ("tuning-url-short-service", _url("http://my-svc.other-ns/"), "tuning.input.urls[0]"),
    ("tuning-url-wireserver", _url("http://168.63.129.16/machine?comp=goalstate"), "tuning.input.urls[0]"),
    ("tuning-url-6to4", _url("http://[2002:a9fe:a9fe::]/"), "tuning.input.urls[0]"),
    ("tuning-url-nip-io", _url("http://127.0.0.1.nip.io/"), "tuning.input.urls[0]"),
    (
        "selector-reserved-hostname",
        _set(
            inference_ws(),
            "resource.labelSelector.matchLabels",
            {"apps": "x", "kubernetes.io/hostname": "n1"},
        ),
        "resource.labelSelector.matchLabels[kubernetes.io/hostname]",
    ),
    (
        "tuning-input-bad-image",
        _set(_set(tuning_ws(), "tuning.input.urls", _DELETE), "tuning.input.image", "UPPER/Case :tag"),
        "tuning.input.image",
    ),
    (
        "tuning-output-two-dests",
        _set(tuning_ws(), "tuning.output.volumeSource", {"emptyDir": {}}),
        "tuning.output",
    ),
    (
        "tuning-output-no-dest",
        _set(tuning_ws(), "tuning.output", {"imagePushSecret": "push"}),
        "tuning.output",
    ),
    (
        "tuning-output-image-no-secret",
        _set(tuning_ws(), "tuning.output.imagePushSecret", _DELETE),
        "tuning.output.imagePushSecret",
    ),
    (
        "tuning-output-bad-image",
        _set(tuning_ws(), "tuning.output.image", "bad image ref"),
        "tuning.output.image",
    ),
    ("tuning-count-two", _set(tuning_ws(), "resource.count", 2), "resource.count"),
    ("tuning-config-not-a-name", _set(tuning_ws(), "tuning.config", "Bad Name"), "tuning.config"),
    # --- names copied into Pod specs ---
    # Secret names that no Secret can have are admitted with a warning (the seed's placeholders are such).
    # --- Kaito's rules (api/v1alpha1 and api/v1beta1 workspace_validation.go) ---
    (
        "private-preset-without-image",
        _set(inference_ws(), "inference.preset.accessMode", "private"),
        "inference.preset.presetOptions.image",
    ),
    (
        "adapter-strength-under-vllm",
        _set(
            _adapters([_adapter()]),
            "metadata.annotations",
            {"kaito.sh/runtime": "vllm"},
        ),
        "inference.adapters[0].strength",
    ),
    (
        "bad-performance-mode",
        _set(inference_ws(), "metadata.annotations", {"kaito.sh/performance-mode": "turbo"}),
        "kaito.sh/performance-mode",
    ),
    (
        "bad-use-local-weights",
        _set(inference_ws(), "metadata.annotations", {"kaito.sh/use-local-weights": "yes"}),
        "kaito.sh/use-local-weights",
    ),
]
