"""Which RBAC grants a run really used, from the apiserver's audit log.

Each audit event of the controller's ServiceAccount becomes a permission (API group, resource[/subresource],
verb, namespace, name). Each grant of the shipped Role/ClusterRole expands to (group, resource, verb, names) and
is "used" when some permission matches it. A grant nothing used is a grant to remove (or to justify).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

CONTROLLER_USER = "system:serviceaccount:kaito-system:kaito-ctrl"


@dataclass(frozen=True, order=True)
class Permission:
    group: str
    resource: str  # with "/subresource" when there is one
    verb: str
    namespace: str
    name: str


@dataclass(frozen=True, order=True)
class Grant:
    role: str  # "ClusterRole/kaito-ctrl" or "Role/kaito-system/kaito-ctrl"
    group: str
    resource: str
    verb: str
    names: tuple[str, ...]  # resourceNames; empty = any
    namespace: str  # "" for a ClusterRole

    def allows(self, p: Permission) -> bool:
        return (
            p.group == self.group
            and p.resource == self.resource
            and p.verb == self.verb
            and (not self.namespace or p.namespace == self.namespace)
            and (not self.names or p.name in self.names)
        )


def used_permissions(events: Iterable[dict[str, Any]], user: str = CONTROLLER_USER) -> set[Permission]:
    """Permissions the user exercised (authorized requests only; a 403 used nothing)."""
    used: set[Permission] = set()
    for e in events:
        if (e.get("user") or {}).get("username") != user:
            continue
        ref = e.get("objectRef") or {}
        if not ref.get("resource"):
            continue  # non-resource URLs (/api discovery, /version)
        if ((e.get("responseStatus") or {}).get("code") or 0) == 403:
            continue
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        verbs = [str(e.get("verb"))]
        if verbs[0] == "patch" and (e.get("responseStatus") or {}).get("code") == 201:
            verbs.append("create")  # a server-side apply that made the object is also authorized as create
        for verb in verbs:
            used.add(
                Permission(
                    str(ref.get("apiGroup") or ""),
                    resource,
                    verb,
                    str(ref.get("namespace") or ""),
                    str(ref.get("name") or ""),
                )
            )
    return used


def grants(objects: Iterable[dict[str, Any]]) -> list[Grant]:
    """Every (group, resource, verb) grant of the Roles and ClusterRoles among ``objects``."""
    out: list[Grant] = []
    for obj in objects:
        kind = obj.get("kind")
        if kind not in ("Role", "ClusterRole"):
            continue
        meta = obj["metadata"]
        namespace = str(meta.get("namespace") or "") if kind == "Role" else ""
        role = f"{kind}/{namespace + '/' if namespace else ''}{meta['name']}"
        for rule in obj.get("rules") or []:
            names = tuple(rule.get("resourceNames") or ())
            for group in rule.get("apiGroups") or [""]:
                for resource in rule.get("resources") or []:
                    for verb in rule.get("verbs") or []:
                        out.append(Grant(role, group, resource, verb, names, namespace))
    return out


def unused_grants(all_grants: Iterable[Grant], used: set[Permission]) -> list[Grant]:
    return sorted(g for g in all_grants if not any(g.allows(p) for p in used))


def ungranted(all_grants: list[Grant], used: set[Permission]) -> list[Permission]:
    """Permissions used that no grant covers (should be empty: they would have been 403)."""
    return sorted(p for p in used if not any(g.allows(p) for g in all_grants))


def table(all_grants: Iterable[Grant], used: set[Permission]) -> str:
    """A Markdown table: each grant and how many distinct requests of the run used it."""
    lines = [
        "| Role | API group | Resource | Verb | resourceNames | Used by (distinct requests) |",
        "|---|---|---|---|---|---|",
    ]
    for g in sorted(all_grants):
        n = sum(1 for p in used if g.allows(p))
        names = ", ".join(g.names) or "any"
        lines.append(f"| {g.role} | {g.group or 'core'} | {g.resource} | {g.verb} | {names} | {n} |")
    return "\n".join(lines)
