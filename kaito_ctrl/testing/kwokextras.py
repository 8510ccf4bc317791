"""What kwok needs beyond its shipped stages for the sandbox to behave like a cluster:

- a Pod stage that does what a kubelet does with an image reference that does not parse: the container waits
  with ``InvalidImageName`` and the pod never runs, and one that does what an adapter puller does with an
  adapter image that does not parse: it exits 1 and restarts with back-off (the shipped ``pod-ready`` stage is
  narrowed so it leaves both kinds of pod alone);
- the CustomResourceDefinitions of kwok's ``PortForward`` and ``Logs`` objects, which kwok watches with
  ``--enable-crds`` so the sandbox can point a pod's port-forward and ``kubectl logs`` at a local process
  (written here as open schemas; kwok validates the objects itself).
"""

from __future__ import annotations

from typing import Any

import yaml

from kaito_ctrl.api.imageref import PULLABLE_PATTERN

# A jq expression over a Pod: true when any container or init container names an image that does not parse.
_ESCAPED = PULLABLE_PATTERN.replace("\\", "\\\\")  # a jq / Go string literal needs backslashes doubled
INVALID_IMAGE_QUERY = (
    f'[(.spec.initContainers // [])[], (.spec.containers // [])[] | .image | test("{_ESCAPED}") | not] | any'
)
# Set by the sandbox's stand-in manager on an inference pod whose command line the real entry point would refuse
# (kaito_ctrl.api.entrypoint_check); its value is the complaint. kwok runs no process, so this is how the
# container's exit reaches the pod status.
ENTRYPOINT_REFUSED = "sandbox.kaito.sh/entrypoint-refused"
_REFUSED_KEY = f'.metadata.annotations["{ENTRYPOINT_REFUSED}"]'
_WAITING_CRASH_MAIN = (
    '[(.status.containerStatuses // [])[] | .state.waiting.reason == "CrashLoopBackOff"] | any'
)

# True when an adapter puller init container (argv: sh -c SCRIPT puller IMAGE DEST AUTHDIR, see
# controllers/workspace/inference_pod.py) is to pull an image that does not parse. kwok runs no process, so
# the stage below does what the script does on a real node with such an image: skopeo refuses the reference,
# the script exits 1 and the kubelet restarts it with back-off.
PULLER_BAD_QUERY = (
    '[(.spec.initContainers // [])[] | select((.command // [])[3] == "puller") | (.command[4] // "")'
    f' | test("{_ESCAPED}") | not] | any'
)
_WAITING_CRASH = (
    '[(.status.initContainerStatuses // [])[] | .state.waiting.reason == "CrashLoopBackOff"] | any'
)
_WAITING_INVALID = (
    "[(.status.initContainerStatuses // [])[], (.status.containerStatuses // [])[]"
    ' | .state.waiting.reason == "InvalidImageName"] | any'
)

# The kubelet's message, as `kubectl describe pod` shows it for such an image.
_INVALID_STATUS = """
{{ $now := Now }}
{{ $valid := "@PULLABLE@" }}
{{ $initBad := false }}
{{ range .spec.initContainers }}{{ if not (regexMatch $valid .image) }}{{ $initBad = true }}{{ end }}{{ end }}
conditions:
- {lastTransitionTime: {{ $now | Quote }}, status: "{{ if $initBad }}False{{ else }}True{{ end }}", type: Initialized}
- {lastTransitionTime: {{ $now | Quote }}, status: "False", type: Ready, reason: ContainersNotReady}
- {lastTransitionTime: {{ $now | Quote }}, status: "False", type: ContainersReady, reason: ContainersNotReady}
- {lastTransitionTime: {{ $now | Quote }}, status: "True", type: PodScheduled}
{{ with .spec.initContainers }}
initContainerStatuses:
{{ range . }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: false
  restartCount: 0
  state:
    waiting:
{{ if regexMatch $valid .image }}
      reason: PodInitializing
{{ else }}
      reason: InvalidImageName
      message: {{ printf "Failed to apply default image tag %q: couldn't parse image name %q: invalid reference format" .image .image | Quote }}
{{ end }}
{{ end }}
{{ end }}
containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: false
  restartCount: 0
  state:
    waiting:
{{ if and (regexMatch $valid .image) (not $initBad) }}
      reason: ContainerCreating
{{ else if regexMatch $valid .image }}
      reason: PodInitializing
{{ else }}
      reason: InvalidImageName
      message: {{ printf "Failed to apply default image tag %q: couldn't parse image name %q: invalid reference format" .image .image | Quote }}
{{ end }}
{{ end }}
phase: Pending
""".replace("@PULLABLE@", _ESCAPED)


_PULLER_FAILS_STATUS = """
{{ $now := Now }}
{{ $valid := "@PULLABLE@" }}
{{ $pod := .metadata.name }}
{{ $failed := false }}
conditions:
- {lastTransitionTime: {{ $now | Quote }}, status: "False", type: Initialized, reason: ContainersNotInitialized}
- {lastTransitionTime: {{ $now | Quote }}, status: "False", type: Ready, reason: ContainersNotReady}
- {lastTransitionTime: {{ $now | Quote }}, status: "False", type: ContainersReady, reason: ContainersNotReady}
- {lastTransitionTime: {{ $now | Quote }}, status: "True", type: PodScheduled}
initContainerStatuses:
{{ range .spec.initContainers }}
{{ $bad := "" }}
{{ with .command }}{{ if gt (len .) 4 }}{{ if eq (index . 3) "puller" }}{{ if not (regexMatch $valid (index . 4)) }}{{ $bad = index . 4 }}{{ end }}{{ end }}{{ end }}{{ end }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: false
{{ if $failed }}
  restartCount: 0
  state:
    waiting:
      reason: PodInitializing
{{ else if $bad }}
  restartCount: 1
  lastState:
    terminated:
      exitCode: 1
      reason: Error
      startedAt: {{ $now | Quote }}
      finishedAt: {{ $now | Quote }}
      message: {{ printf "level=fatal msg=%q; cannot pull adapter image %s" (printf "Invalid source name docker://%s: invalid reference format" $bad) $bad | Quote }}
  state:
    waiting:
      reason: CrashLoopBackOff
      message: {{ printf "back-off 10s restarting failed container=%s pod=%s" .name $pod | Quote }}
{{ $failed = true }}
{{ else }}
  restartCount: 0
  state:
    terminated:
      exitCode: 0
      reason: Completed
      startedAt: {{ $now | Quote }}
      finishedAt: {{ $now | Quote }}
{{ end }}
{{ end }}
containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: false
  restartCount: 0
  state:
    waiting:
      reason: PodInitializing
{{ end }}
phase: Pending
""".replace("@PULLABLE@", _ESCAPED)


_REFUSED_STATUS = """
{{ $now := Now }}
{{ $pod := .metadata.name }}
{{ $said := index .metadata.annotations "@ANNOTATION@" }}
conditions:
- {lastTransitionTime: {{ $now | Quote }}, status: "True", type: Initialized}
- {lastTransitionTime: {{ $now | Quote }}, status: "False", type: Ready, reason: ContainersNotReady}
- {lastTransitionTime: {{ $now | Quote }}, status: "False", type: ContainersReady, reason: ContainersNotReady}
- {lastTransitionTime: {{ $now | Quote }}, status: "True", type: PodScheduled}
containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: false
  started: false
  restartCount: 1
  lastState:
    terminated:
      exitCode: 1
      reason: Error
      startedAt: {{ $now | Quote }}
      finishedAt: {{ $now | Quote }}
      message: {{ $said | Quote }}
  state:
    waiting:
      reason: CrashLoopBackOff
      message: {{ printf "back-off 10s restarting failed container=%s pod=%s" .name $pod | Quote }}
{{ end }}
phase: Running
""".replace("@ANNOTATION@", ENTRYPOINT_REFUSED)


_NOT_DELETED = {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"}
_PENDING = {"key": ".status.phase", "operator": "In", "values": ["Pending"]}


def _is(query: str, value: bool = True) -> dict[str, Any]:
    """A selector term on a jq query that yields true or false."""
    return {"key": query, "operator": "In" if value else "NotIn", "values": ["true"]}


def _pod_stage(name: str, expressions: list[dict[str, Any]], status_template: str) -> dict[str, Any]:
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": name},
        "spec": {
            "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
            "selector": {"matchExpressions": [_NOT_DELETED, *expressions]},
            "next": {"statusTemplate": status_template},
        },
    }


def entrypoint_refused_stage() -> dict[str, Any]:
    refused = {"key": _REFUSED_KEY, "operator": "Exists"}
    return _pod_stage("pod-entrypoint-refused", [refused, _is(_WAITING_CRASH_MAIN, False)], _REFUSED_STATUS)


def adapter_puller_fails_stage() -> dict[str, Any]:
    # A pod whose own images do not parse is the other stage's: the kubelet refuses it first.
    return _pod_stage(
        "pod-adapter-puller-fails",
        [_PENDING, _is(INVALID_IMAGE_QUERY, False), _is(PULLER_BAD_QUERY), _is(_WAITING_CRASH, False)],
        _PULLER_FAILS_STATUS,
    )


def invalid_image_stage() -> dict[str, Any]:
    return _pod_stage(
        "pod-invalid-image-name",
        [_PENDING, _is(INVALID_IMAGE_QUERY), _is(_WAITING_INVALID, False)],
        _INVALID_STATUS,
    )


def compose_stages(shipped: list[str]) -> str:
    """kwok's shipped stage files plus ours, as one multi-document config; ``pod-ready`` no longer takes pods
    whose images do not parse."""
    docs: list[dict[str, Any]] = []
    for text in shipped:
        for doc in yaml.safe_load_all(text):
            if not doc:
                continue
            if doc.get("kind") == "Stage" and doc["metadata"]["name"] == "pod-ready":
                doc["spec"]["selector"]["matchExpressions"] += [
                    _is(INVALID_IMAGE_QUERY, False),
                    _is(PULLER_BAD_QUERY, False),
                    {"key": _REFUSED_KEY, "operator": "DoesNotExist"},
                ]
            docs.append(doc)
    docs.append(invalid_image_stage())
    docs.append(adapter_puller_fails_stage())
    docs.append(entrypoint_refused_stage())
    return "\n---\n".join(yaml.safe_dump(d, sort_keys=False, width=1000) for d in docs)


def _open_crd(kind: str, plural: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.kwok.x-k8s.io"},
        "spec": {
            "group": "kwok.x-k8s.io",
            "scope": "Namespaced",
            "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural, "singular": kind.lower()},
            "versions": [
                {
                    "name": "v1alpha1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                }
            ],
        },
    }


DEBUG_KINDS = ("PortForward", "Logs")


def debugging_crds() -> list[dict[str, Any]]:
    """kwok's per-pod PortForward and Logs kinds (namespaced; an object is named after its pod)."""
    return [_open_crd("PortForward", "portforwards"), _open_crd("Logs", "logs")]
