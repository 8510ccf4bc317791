"""Kubernetes' own syntax rules for names, label keys and values and label selectors, as the apiserver applies
them (k8s.io/apimachinery ``util/validation`` and ``meta/v1/validation``).

Admission uses these to refuse, with the field named, a value the apiserver would only refuse later when
kaito-ctrl copies it into a NodeClaim, a Node, a Deployment or a Service. Each function returns a list of
problems (empty when valid), worded like the apiserver's own messages so a user recognises them.
"""

from __future__ import annotations

import re
from typing import Any

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
QUALIFIED_NAME_MAX = 63
LABEL_VALUE_MAX = 63

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")

# The operators of a LabelSelectorRequirement, and the ones that take a list of values.
SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
_OPERATORS_WITH_VALUES = ("In", "NotIn")


def dns1123_label(value: str) -> list[str]:
    """A DNS-1123 label: a Service or Deployment name, a namespace, a container name."""
    problems = []
    if len(value) > DNS1123_LABEL_MAX:
        problems.append(f"must be no more than {DNS1123_LABEL_MAX} characters")
    if not _DNS1123_LABEL.fullmatch(value):
        problems.append(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
            "and must start and end with an alphanumeric character (e.g. 'my-name')"
        )
    return problems


def dns1123_subdomain(value: str) -> list[str]:
    """A DNS-1123 subdomain: most object names (ConfigMaps, Secrets, NodeClaims), a label key's prefix."""
    problems = []
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        problems.append(f"must be no more than {DNS1123_SUBDOMAIN_MAX} characters")
    if not _DNS1123_SUBDOMAIN.fullmatch(value):
        problems.append(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
            "and must start and end with an alphanumeric character (e.g. 'example.com')"
        )
    return problems


def qualified_name(value: str) -> list[str]:
    """A label or annotation key: ``[prefix/]name``, prefix a DNS-1123 subdomain, name at most 63 of
    alphanumerics, '-', '_' and '.', starting and ending alphanumeric."""
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
        problems: list[str] = []
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            problems = ["prefix part must be non-empty"]
        else:
            problems = [f"prefix part {p}" for p in dns1123_subdomain(prefix)]
    else:
        return [
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
            "with an alphanumeric character, with an optional DNS subdomain prefix and '/' (e.g. "
            "'example.com/MyName')"
        ]
    if not name:
        problems.append("name part must be non-empty")
    else:
        if len(name) > QUALIFIED_NAME_MAX:
            problems.append(f"name part must be no more than {QUALIFIED_NAME_MAX} characters")
        if not _QUALIFIED_NAME.fullmatch(name):
            problems.append(
                "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                "with an alphanumeric character (e.g. 'MyName', 'my.name' or '123-abc')"
            )
    return problems


def label_value(value: str) -> list[str]:
    """A label value: empty, or at most 63 of alphanumerics, '-', '_' and '.', starting and ending
    alphanumeric."""
    problems = []
    if len(value) > LABEL_VALUE_MAX:
        problems.append(f"must be no more than {LABEL_VALUE_MAX} characters")
    if not _LABEL_VALUE.fullmatch(value):
        problems.append(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
            "and must start and end with an alphanumeric character (e.g. 'MyValue', 'my_value' or '12345')"
        )
    return problems


def label_selector(selector: Any, path: str) -> list[tuple[str, str]]:
    """Every problem of a metav1.LabelSelector, as (field path, message): keys and values of matchLabels,
    and each matchExpressions entry's key, operator and value list (In/NotIn need values, Exists and
    DoesNotExist take none)."""
    if not isinstance(selector, dict):
        return [(path, "must be an object with matchLabels and/or matchExpressions")]
    out: list[tuple[str, str]] = []
    match = selector.get("matchLabels")
    if match is not None:
        if not isinstance(match, dict):
            out.append((f"{path}.matchLabels", "must map label keys to string values"))
        else:
            for key, value in match.items():
                where = f"{path}.matchLabels[{key}]"
                out.extend((where, f"key {key!r}: {p}") for p in qualified_name(str(key)))
                if not isinstance(value, str):
                    out.append((where, f"value {value!r} must be a string"))
                else:
                    out.extend((where, f"value {value!r}: {p}") for p in label_value(value))
    expressions = selector.get("matchExpressions")
    if expressions is not None:
        if not isinstance(expressions, list):
            out.append((f"{path}.matchExpressions", "must be a list of {key, operator, values}"))
        else:
            for i, req in enumerate(expressions):
                out.extend(_requirement(req, f"{path}.matchExpressions[{i}]"))
    return out


def _requirement(req: Any, path: str) -> list[tuple[str, str]]:
    if not isinstance(req, dict):
        return [(path, "must be an object with key, operator and values")]
    out: list[tuple[str, str]] = []
    key = req.get("key")
    if not isinstance(key, str) or not key:
        out.append((f"{path}.key", "a key is required"))
    else:
        out.extend((f"{path}.key", f"key {key!r}: {p}") for p in qualified_name(key))
    operator = req.get("operator")
    values = req.get("values")
    if values is not None and not isinstance(values, list):
        out.append((f"{path}.values", "must be a list of strings"))
        values = None
    values = values or []
    if operator in _OPERATORS_WITH_VALUES:
        if not values:
            out.append((f"{path}.values", f"must be specified when `operator` is {operator!r}"))
    elif operator in ("Exists", "DoesNotExist"):
        if values:
            out.append((f"{path}.values", f"may not be specified when `operator` is {operator!r}"))
    else:
        out.append(
            (
                f"{path}.operator",
                f"{operator!r} is not a valid selector operator; use one of {SELECTOR_OPERATORS}",
            )
        )
    for j, value in enumerate(values):
        if not isinstance(value, str):
            out.append((f"{path}.values[{j}]", f"value {value!r} must be a string"))
        else:
            out.extend((f"{path}.values[{j}]", f"value {value!r}: {p}") for p in label_value(value))
    return out


def selector_as_map(selector: Any) -> dict[str, str] | None:
    """The selector as a plain label set (matchLabels plus single-value ``In`` expressions), or None when
    it cannot be one. Two selectors with the same label set select the same nodes, however they are written
    (Kubernetes' LabelSelectorAsMap)."""
    if not isinstance(selector, dict):
        return {} if selector is None else None
    match, expressions = selector.get("matchLabels") or {}, selector.get("matchExpressions") or []
    if not isinstance(match, dict) or not isinstance(expressions, list):
        return None
    out = {str(k): str(v) for k, v in match.items()}
    for req in expressions:
        if not isinstance(req, dict):
            return None
        values = req.get("values") or []
        if req.get("operator") != "In" or not isinstance(values, list) or len(values) != 1:
            return None
        out[str(req.get("key"))] = str(values[0])
    return out
