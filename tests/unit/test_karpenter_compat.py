"""kaito-ctrl's NodeClaim CRD and the claims it writes, compared field by field with the CRD of the real
Karpenter (the module version ``hack/build-karpenter.sh`` builds), and the node class setting."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from kaito_ctrl.api.karpenter_schema import nodeclaim_crd
from kaito_ctrl.kube import conditions as cond
from kaito_ctrl.kube.machines import node_object_manifest
from kaito_ctrl.settings import Settings, node_class_ref
from kaito_ctrl.testing.binaries import BinariesUnavailable, ensure_karpenter

KWOK_CLASS = ("karpenter.kwok.sh", "KWOKNodeClass", "default")
SEED_LABELS = {"kaito.sh/workspace": "workspace-phi-3-mini", "kaito.sh/workspacenamespace": "default"}


def _v1_schema(crd: dict[str, Any]) -> dict[str, Any]:
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


@pytest.fixture(scope="module")
def karpenter_schema() -> dict[str, Any]:
    try:
        crds = ensure_karpenter(build=False) / "crds"
    except BinariesUnavailable as e:
        pytest.skip(str(e))
    return _v1_schema(yaml.safe_load((crds / "karpenter.sh_nodeclaims.yaml").read_text()))


def _fields(schema: dict[str, Any], path: str = "", out: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every field of a structural schema by its path (``.spec.requirements[].key``)."""
    out = {} if out is None else out
    out[path] = schema
    for name, sub in (schema.get("properties") or {}).items():
        _fields(sub, f"{path}.{name}", out)
    if "items" in schema:
        _fields(schema["items"], path + "[]", out)
    return out


def test_nodeclaim_crd_has_exactly_karpenters_fields_types_enums_and_required(
    karpenter_schema: dict[str, Any],
) -> None:
    ours = _fields(_v1_schema(nodeclaim_crd()))
    theirs = _fields(karpenter_schema)
    # Same fields: nothing Karpenter writes is pruned by our CRD, nothing we write is pruned by Karpenter's.
    assert sorted(set(theirs) - set(ours)) == []
    assert sorted(set(ours) - set(theirs)) == []
    for path, field in ours.items():
        for key in ("type", "enum", "format", "x-kubernetes-int-or-string"):
            if key == "format" and key not in field:
                continue  # we may leave a format out; where we state one it must be Karpenter's
            assert field.get(key) == theirs[path].get(key), f"{path}: {key}"
        assert sorted(field.get("required", [])) == sorted(theirs[path].get("required", [])), path


def _validate(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """The field rules of an OpenAPI schema that a claim could break: type, enum, pattern, lengths,
    required fields and unknown fields (CEL rules are checked by the apiserver in e2e)."""
    errors: list[str] = []
    types = {"object": dict, "array": list, "string": str, "integer": int, "boolean": bool}
    kind = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        return [] if isinstance(value, (int, str)) else [f"{path}: not int-or-string"]
    if kind and not isinstance(value, types[kind]):
        return [f"{path}: {type(value).__name__} is not {kind}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} not in {schema['enum']}")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{path}: {value!r} does not match {schema['pattern']}")
        if len(value) > schema.get("maxLength", len(value)):
            errors.append(f"{path}: longer than {schema['maxLength']}")
    if isinstance(value, list):
        if len(value) > schema.get("maxItems", len(value)):
            errors.append(f"{path}: more than {schema['maxItems']} items")
        for i, item in enumerate(value):
            errors += _validate(item, schema.get("items", {}), f"{path}[{i}]")
    if isinstance(value, dict):
        props = schema.get("properties")
        errors += [f"{path}.{r}: required" for r in schema.get("required", []) if r not in value]
        for name, sub in value.items():
            if props is not None and name in props:
                errors += _validate(sub, props[name], f"{path}.{name}")
            elif props is not None and "additionalProperties" not in schema:
                errors.append(f"{path}.{name}: unknown field (pruned)")
            elif isinstance(schema.get("additionalProperties"), dict):
                errors += _validate(sub, schema["additionalProperties"], f"{path}.{name}")
    return errors


@pytest.mark.parametrize("node_class", [KWOK_CLASS, ("kaito.sh", "KaitoNodeClass", "default")])
def test_claims_kaito_ctrl_writes_pass_karpenters_field_rules(
    karpenter_schema: dict[str, Any], node_class: tuple[str, str, str]
) -> None:
    claim = node_object_manifest(
        "nodeclaim",
        "ws1a2b3c4d5",
        instance_type="Standard_NC12s_v3",
        labels=SEED_LABELS,
        storage="120Gi",
        node_class=node_class,
        extra_requirements=[{"key": k, "operator": "In", "values": [v]} for k, v in SEED_LABELS.items()],
    )
    conditions: list[dict[str, Any]] = []
    for type_ in ("Launched", "Registered", "Initialized", "Ready"):
        cond.set_condition(conditions, type_, "False", "LaunchFailed", "no capacity", now=1.7e9)
    claim["status"] = {"nodeName": "aks-ws1a2b3c4d5-0", "providerID": "azure:///x", "conditions": conditions}
    assert _validate(claim, karpenter_schema) == []


def test_the_validator_catches_what_karpenter_refuses(karpenter_schema: dict[str, Any]) -> None:
    claim = node_object_manifest(
        "nodeclaim",
        "ws1",
        instance_type="Standard_NC12s_v3",
        labels=SEED_LABELS,
        node_class=KWOK_CLASS,
        extra_requirements=[{"key": "not a label", "operator": "Above", "values": ["1"]}],
    )
    claim["spec"]["severity"] = "x"
    errors = _validate(claim, karpenter_schema)
    assert any(".key: 'not a label' does not match" in e for e in errors)
    assert any(".operator: 'Above' not in" in e for e in errors)
    assert any(e.endswith("spec.severity: unknown field (pruned)") for e in errors)


def test_node_class_reference_comes_from_flags_and_defaults_to_kaitos_aks_class() -> None:
    parser = argparse.ArgumentParser()
    Settings.add_arguments(parser)
    assert node_class_ref(Settings.from_sources(parser.parse_args([]), env={})) == (
        "kaito.sh",
        "KaitoNodeClass",
        "default",
    )
    args = parser.parse_args(["--node-class-group=karpenter.kwok.sh", "--node-class-kind=KWOKNodeClass"])
    settings = Settings.from_sources(args, env={"KAITO_NODE_CLASS_NAME": "gpu"})
    assert node_class_ref(settings) == ("karpenter.kwok.sh", "KWOKNodeClass", "gpu")
    with pytest.raises(ValueError, match="--node-class-kind must not be empty"):
        Settings.from_sources(parser.parse_args(["--node-class-kind= "]), env={})


def test_azure_sku_requirement_only_with_the_aks_node_class() -> None:
    def keys(node_class: tuple[str, str, str]) -> set[str]:
        claim = node_object_manifest(
            "nodeclaim", "ws1", instance_type="Standard_NC12s_v3", labels={}, node_class=node_class
        )
        assert claim["spec"]["nodeClassRef"] == dict(zip(("group", "kind", "name"), node_class, strict=True))
        return {r["key"] for r in claim["spec"]["requirements"]}

    assert "karpenter.azure.com/sku-name" in keys(("kaito.sh", "KaitoNodeClass", "default"))
    # Karpenter's other providers define no such label; requiring it would make every claim unsatisfiable.
    assert "karpenter.azure.com/sku-name" not in keys(KWOK_CLASS)
    assert "node.kubernetes.io/instance-type" in keys(KWOK_CLASS)


def test_karpenter_crds_come_from_the_module_not_this_repo(karpenter_schema: dict[str, Any]) -> None:
    crds = ensure_karpenter(build=False) / "crds"
    names = {p.name for p in crds.glob("*.yaml")}
    assert {"karpenter.sh_nodeclaims.yaml", "karpenter.sh_nodepools.yaml"} <= names
    assert any(n.startswith("karpenter.kwok.sh_kwoknodeclasses") for n in names)
    assert not (
        Path(__file__).resolve().parents[2] / "manifests" / "crds" / "karpenter.sh_nodepools.yaml"
    ).exists()
