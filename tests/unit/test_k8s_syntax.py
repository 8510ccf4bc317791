"""Kubernetes' syntax rules, table by table (cases from the apimachinery validation rules they mirror)."""

from __future__ import annotations

from typing import Any

import pytest

from kaito_ctrl.api import k8s_syntax as K

LABEL_VALUES = [
    ("", True),
    ("a", True),
    ("phi-3", True),
    ("My_Value.1", True),
    ("a" * 63, True),
    ("a" * 64, False),
    ("${jndi}", False),
    ("-start", False),
    ("end-", False),
    ("has space", False),
    ("slash/no", False),
    ("ünicode", False),
]


@pytest.mark.parametrize(("value", "ok"), LABEL_VALUES)
def test_label_value(value: str, ok: bool) -> None:
    assert (K.label_value(value) == []) is ok


QUALIFIED_NAMES = [
    ("apps", True),
    ("kaito.sh/workspace", True),
    ("node.kubernetes.io/instance-type", True),
    ("example.com/MyName", True),
    ("a" * 63, True),
    ("a" * 64, False),
    ("p." * 126 + "p/name", True),  # 253-character prefix
    ("p" * 254 + "/name", False),
    ("/apps", False),
    ("example.com/", False),
    ("a/b/c", False),
    ("Example.com/apps", False),  # the prefix is a lowercase DNS subdomain
    ("-apps", False),
    ("apps_", False),
    ("", False),
]


@pytest.mark.parametrize(("value", "ok"), QUALIFIED_NAMES)
def test_qualified_name(value: str, ok: bool) -> None:
    assert (K.qualified_name(value) == []) is ok


DNS_NAMES = [
    ("phi-3", True, True),
    ("a.b", False, True),
    ("a" * 63, True, True),
    ("a" * 64, False, True),
    ("a" * 254, False, False),
    ("Upper", False, False),
    ("under_score", False, False),
    ("-x", False, False),
    ("x.", False, False),
]


@pytest.mark.parametrize(("value", "label_ok", "subdomain_ok"), DNS_NAMES)
def test_dns_names(value: str, label_ok: bool, subdomain_ok: bool) -> None:
    assert (K.dns1123_label(value) == []) is label_ok
    assert (K.dns1123_subdomain(value) == []) is subdomain_ok


SELECTORS: list[tuple[str, Any, list[str]]] = [
    ("match-labels", {"matchLabels": {"apps": "phi-3"}}, []),
    ("in-one", {"matchExpressions": [{"key": "apps", "operator": "In", "values": ["x"]}]}, []),
    ("exists", {"matchExpressions": [{"key": "apps", "operator": "Exists"}]}, []),
    ("not-object", ["apps"], ["sel"]),
    ("bad-value", {"matchLabels": {"apps": "${jndi}"}}, ["sel.matchLabels[apps]"]),
    ("value-not-string", {"matchLabels": {"apps": 3}}, ["sel.matchLabels[apps]"]),
    ("bad-key", {"matchLabels": {"a/b/c": "x"}}, ["sel.matchLabels[a/b/c]"]),
    ("bad-operator", {"matchExpressions": [{"key": "k", "operator": "Gt", "values": ["1"]}]},
     ["sel.matchExpressions[0].operator"]),
    ("in-empty", {"matchExpressions": [{"key": "k", "operator": "In", "values": []}]},
     ["sel.matchExpressions[0].values"]),
    ("notin-missing", {"matchExpressions": [{"key": "k", "operator": "NotIn"}]},
     ["sel.matchExpressions[0].values"]),
    ("doesnotexist-values", {"matchExpressions": [{"key": "k", "operator": "DoesNotExist", "values": ["v"]}]},
     ["sel.matchExpressions[0].values"]),
    ("no-key", {"matchExpressions": [{"operator": "Exists"}]}, ["sel.matchExpressions[0].key"]),
    ("bad-expression-value", {"matchExpressions": [{"key": "k", "operator": "In", "values": ["a b"]}]},
     ["sel.matchExpressions[0].values[0]"]),
    ("expressions-not-list", {"matchExpressions": {"key": "k"}}, ["sel.matchExpressions"]),
]  # fmt: skip


@pytest.mark.parametrize(("case", "selector", "paths"), SELECTORS, ids=[c[0] for c in SELECTORS])
def test_label_selector(case: str, selector: Any, paths: list[str]) -> None:
    assert sorted({p for p, _ in K.label_selector(selector, "sel")}) == sorted(paths)


def test_selector_as_map_compares_label_sets() -> None:
    a = {"matchLabels": {"x": "1", "y": "2"}}
    b = {"matchLabels": {"y": "2"}, "matchExpressions": [{"key": "x", "operator": "In", "values": ["1"]}]}
    assert K.selector_as_map(a) == K.selector_as_map(b) == {"x": "1", "y": "2"}
    assert (
        K.selector_as_map({"matchExpressions": [{"key": "x", "operator": "In", "values": ["1", "2"]}]})
        is None
    )
    assert K.selector_as_map({"matchExpressions": [{"key": "x", "operator": "Exists"}]}) is None
    assert K.selector_as_map(None) == {}


def test_workspace_selector_expressions_become_node_labels() -> None:
    from kaito_ctrl.controllers.workspace.spec import WorkspaceSpec

    ws = WorkspaceSpec(
        {
            "metadata": {"name": "w"},
            "resource": {
                "labelSelector": {
                    "matchLabels": {"a": "1", "kaito.sh/workspace": "x"},
                    "matchExpressions": [{"key": "b", "operator": "In", "values": ["2"]}],
                }
            },
        }
    )
    assert ws.match_labels == {"a": "1", "b": "2"}


def test_malformed_selectors_are_named_not_crashed_on() -> None:
    from kaito_ctrl.api.validation import validate_workspace
    from tests.cases.invalid_workspaces import inference_ws

    for bad in ({"matchLabels": ["apps"]}, {"matchExpressions": {"key": "k"}}, {"matchExpressions": ["x"]}):
        ws = inference_ws()
        ws["resource"]["labelSelector"] = bad
        errors = validate_workspace(ws)
        assert errors and all(e.path.startswith("resource.labelSelector") for e in errors), errors
