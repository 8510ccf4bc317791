"""Deriving used RBAC verbs from audit events, and matching them against grants (resourceNames, namespaces,
subresources, and server-side apply that creates)."""

from __future__ import annotations

from typing import Any

from kaito_ctrl.testing import rbacaudit

USER = rbacaudit.CONTROLLER_USER


def _event(verb: str, resource: str, *, group: str = "", ns: str = "", name: str = "", sub: str = "", code: int = 200,
           user: str = USER) -> dict[str, Any]:  # fmt: skip
    ref = {"resource": resource, "apiGroup": group, "namespace": ns, "name": name, "subresource": sub}
    return {"user": {"username": user}, "verb": verb, "objectRef": ref, "responseStatus": {"code": code}}


ROLES = [
    {
        "kind": "ClusterRole",
        "metadata": {"name": "c"},
        "rules": [
            {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "create", "patch", "delete"]},
            {"apiGroups": ["kaito.sh"], "resources": ["workspaces/status"], "verbs": ["patch"]},
        ],
    },
    {
        "kind": "Role",
        "metadata": {"name": "r", "namespace": "kaito-system"},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["cert"], "verbs": ["get"]}],
    },
]


def test_used_and_unused_grants() -> None:
    events = [
        _event("get", "services", ns="a", name="s"),
        _event("patch", "services", ns="a", name="s", code=201),  # apply that created it
        _event("patch", "workspaces", group="kaito.sh", ns="a", name="w", sub="status"),
        _event("get", "secrets", ns="kaito-system", name="other", code=403),  # refused: uses nothing
        _event("get", "secrets", ns="kaito-system", name="cert"),
        _event("delete", "services", ns="a", name="s", user="admin"),  # another user
        {"user": {"username": USER}, "verb": "get", "objectRef": {}},  # discovery
    ]
    used = rbacaudit.used_permissions(events)
    grants = rbacaudit.grants(ROLES)
    unused = [(g.resource, g.verb) for g in rbacaudit.unused_grants(grants, used)]
    assert unused == [("services", "delete")]
    assert rbacaudit.ungranted(grants, used) == []
    assert "| ClusterRole/c | core | services | create | any | 1 |" in rbacaudit.table(grants, used)


def test_a_request_outside_the_grants_is_reported() -> None:
    used = rbacaudit.used_permissions([_event("get", "secrets", ns="kaito-system", name="other")])
    assert [p.name for p in rbacaudit.ungranted(rbacaudit.grants(ROLES), used)] == ["other"]
