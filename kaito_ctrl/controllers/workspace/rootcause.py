"""Why are the workload's pods not ready? Turn pod states into Kaito's stable InferenceReady reasons."""

from __future__ import annotations

from typing import Any

from kaito_ctrl.api import imageref
from kaito_ctrl.controllers.workspace.inference_pod import puller_image

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
    pulled = {
        c.get("name"): image
        for c in (pod.get("spec") or {}).get("initContainers") or []
        if (image := puller_image(c)) is not None
    }
    for cs in status.get("initContainerStatuses") or []:
        if cs.get("name") in pulled and (failure := _puller_failure(cs, pulled[cs.get("name")], name)):
            return failure
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
            message = (
                f"container {cs.get('name')} of pod {name}: {reason}: {waiting.get('message', '')}".strip()
            )
            last = (cs.get("lastState") or {}).get("terminated") or {}
            if last.get("message"):
                # What the process said as it exited (its termination message): usually the real cause.
                said = " ".join(str(last["message"]).split())[:500]
                message += f"; it last exited {last.get('exitCode', '?')}: {said}"
            return _WAITING[reason], message
    return None


# What a puller init container fetches, by its name (an adapter's pullers are named after the adapter).
_PULLED = {"data-puller": "tuning input image"}


def _puller_failure(cs: dict[str, Any], image: str, pod: str) -> tuple[str, str] | None:
    """A puller (an adapter's, or the tuning input's) that exits non-zero: the image never reached the pod. Its
    container image (skopeo) is fine, so the kubelet says only CrashLoopBackOff; name the image and why."""
    what = _PULLED.get(str(cs.get("name")), "adapter image")
    waiting = (cs.get("state") or {}).get("waiting") or {}
    terminated = (
        (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated") or {}
    )
    failed = waiting.get("reason") == "CrashLoopBackOff" or (terminated.get("exitCode") or 0) != 0
    if not failed:
        return None
    said = " ".join(str(terminated.get("message") or "").split())
    tail = f" (it said: {said})" if said else ""
    problem = imageref.pull_problem(image)
    if problem is not None:
        # The same cause the kubelet names InvalidImageName when such a reference is a container's image.
        return (
            "InvalidImageName",
            f"init container {cs.get('name')} of pod {pod} cannot pull {what} {image!r}: it does not "
            f"parse ({problem}); replace it with your registry and image{tail}",
        )
    return (
        "ImagePullError",
        f"init container {cs.get('name')} of pod {pod} failed to pull {what} {image!r} "
        f"(exit {terminated.get('exitCode', '?')}, {waiting.get('reason') or terminated.get('reason') or 'Error'})"
        f"{tail}; check the image and its imagePullSecrets",
    )


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
