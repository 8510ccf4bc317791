"""Label domains a Workspace must not use in its labelSelector.

In the NodeClaim and Machine modes the selector's labels are copied onto the claims and from there onto the
Nodes, so a key such as ``kubernetes.io/hostname`` or ``node-restriction.kubernetes.io/...`` would let a tenant
relabel a Node (scheduling, node isolation) or, with ``kubernetes.azure.com/agentpool``, steer which Node the
provisioner adopts. Keys in these domains (and their subdomains) are refused at admission and never written over
an existing Node label.
"""

from __future__ import annotations

from typing import Any

RESERVED_DOMAINS = ("kubernetes.io", "k8s.io", "kubernetes.azure.com", "karpenter.sh", "karpenter.azure.com")


def reserved_domain(key: str) -> str | None:
    """The reserved domain a label key's prefix falls in, or None (keys without a prefix are the user's)."""
    prefix, slash, _ = key.rpartition("/")
    if not slash:
        return None
    prefix = prefix.lower()
    for domain in RESERVED_DOMAINS:
        if prefix == domain or prefix.endswith("." + domain):
            return domain
    return None


def selector_key_errors(selector: dict[str, Any]) -> list[tuple[str, str]]:
    """(field path, message) for every labelSelector key in a reserved domain."""
    errors: list[tuple[str, str]] = []
    match = selector.get("matchLabels")
    for key in match if isinstance(match, dict) else ():
        domain = reserved_domain(str(key))
        if domain:
            errors.append(
                (
                    f"resource.labelSelector.matchLabels[{str(key)[:64]}]",
                    f"keys in the {domain} domain are reserved for the cluster; use a label of your own, "
                    "e.g. apps: my-model",
                )
            )
    exprs = selector.get("matchExpressions")
    for i, expr in enumerate(exprs if isinstance(exprs, list) else ()):
        key = expr.get("key") if isinstance(expr, dict) else None
        domain = reserved_domain(key) if isinstance(key, str) else None
        if domain:
            errors.append(
                (
                    f"resource.labelSelector.matchExpressions[{i}].key",
                    f"keys in the {domain} domain are reserved for the cluster; use a label of your own",
                )
            )
    return errors


def protect_node_labels(node_labels: dict[str, str], wanted: dict[str, str]) -> dict[str, str]:
    """``wanted`` without the reserved-domain keys that would overwrite a different value already on a Node."""
    return {
        k: v
        for k, v in wanted.items()
        if not (reserved_domain(k) and k in node_labels and node_labels[k] != v)
    }
