"""The Pod Security baseline check at render time, behind the admission webhook: a Workspace admitted before
the check was on, or while the webhook was bypassed, still gets no privileged or host-sharing workload unless
its namespace carries the administrator's annotation."""

from __future__ import annotations

from typing import Any

from kaito_ctrl.api import podsecurity
from kaito_ctrl.controllers.workspace.ownership import WorkloadRefused
from kaito_ctrl.kube.errors import NotFound
from kaito_ctrl.kube.resources import NAMESPACES

REASON = "PodSecurityBaselineViolation"


class PodSecurityRefused(WorkloadRefused):
    reason = REASON


async def check(client: Any, obj: dict[str, Any], namespace: str) -> None:
    """Raise PodSecurityRefused when the Workspace breaks the baseline and its namespace does not allow it."""
    violations = podsecurity.workspace_violations(obj)
    if not violations:
        return
    try:
        ns = await client.get(NAMESPACES, namespace)
    except NotFound:
        ns = None
    if podsecurity.namespace_allows(ns):
        return
    listed = "; ".join(f"{path}: {why}" for path, why in violations[:5])
    raise PodSecurityRefused(
        f"not rendered, the Workspace breaks the Pod Security baseline profile: {listed}; an administrator can "
        f"allow namespace {namespace} with the annotation {podsecurity.ALLOW_ANNOTATION}=true"
    )
