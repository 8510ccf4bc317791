"""Why are the workload's pods not ready? Turn pod states into Kaito's stable InferenceReady reasons."""

from __future__ import annotations

from typing import Any

# Container waiting/terminated reasons -> InferenceReady reason (Kaito's names).
_WAITING = {
    "CrashLoopBackOff": "ContainerCrashLoopBackOff",
    "ImagePullBackOff": "ImagePullError",
    "ErrImagePull": "ImagePullError",
    # Not a pull failure: the reference itself does not parse (a placeholder left in), so say so.
    "InvalidImageName": "InvalidImageName",
    "CreateContainerConfigError": "ContainerStartError",
    "CreateContainerError": "ContainerStartError",
    "RunContainerError": "ContainerStartError",
}


def pod_problem(pod: dict[str, Any]) -> tuple[str, str] | None:
    """(reason, message) for the first real problem of a pod, or None when it is just starting."""
    status = pod.get("status") or {}
    name = (pod.get("metadata") or {}).get("name", "")
    if status.get("reason") == "Evicted":
        return "PodEvicted", f"pod {name} was evicted: {status.get('message', '')}".strip()
    for c in status.get("conditions") or []:
        if (
            c.get("type") == "PodScheduled"
            and c.get("status") == "False"
            and c.get("reason") == "Unschedulable"
        ):
            return "Unschedulable", f"pod {name} cannot be scheduled: {c.get('message', '')}"
    for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        for state in (cs.get("state") or {}, cs.get("lastState") or {}):
            terminated = state.get("terminated") or {}
            if terminated.get("reason") == "OOMKilled":
                return (
                    "ContainerOOMKilled",
                    f"container {cs.get('name')} of pod {name} was OOMKilled; the model needs more memory",
                )
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in _WAITING:
            return _WAITING[
                reason
            ], f"container {cs.get('name')} of pod {name}: {reason}: {waiting.get('message', '')}".strip()
    return None


def pods_root_cause(pods: list[dict[str, Any]]) -> tuple[str, str] | None:
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        problem = pod_problem(pod)
        if problem:
            return problem
    return None


def pod_ready(pod: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )
