"""The Pod Security "baseline" profile for what a Workspace lets its author run.

``inference.template`` is a whole pod template and tuning/adapter ``volumeSource`` is any volume: without a
check, anyone who may create a Workspace may start privileged pods, share the node's namespaces, mount its
filesystem (hostPath) or run as another ServiceAccount, through kaito-ctrl's cluster-wide rights. This module
lists the violations; admission refuses them unless the Workspace's namespace carries the admin annotation
``kaito.sh/allow-privileged-workloads: "true"`` (namespaces are cluster-scoped: tenants cannot set it), and
the whole check can be turned off with ``--pod-security-baseline=false``.
"""

from __future__ import annotations

from typing import Any

ALLOW_ANNOTATION = "kaito.sh/allow-privileged-workloads"
# Capabilities the baseline profile allows a container to add.
BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
SELINUX_TYPES = (None, "", "container_t", "container_init_t", "container_kvm_t")
DEFAULT_SERVICE_ACCOUNTS = frozenset({"", "default"})


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def volume_violation(path: str, volume: Any) -> list[tuple[str, str]]:
    if "hostPath" in _d(volume):
        return [(f"{path}.hostPath", "hostPath volumes mount the node's filesystem (Pod Security baseline)")]
    return []


def _security_context(path: str, sc: dict[str, Any]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if _d(sc.get("seccompProfile")).get("type") == "Unconfined":
        out.append((f"{path}.seccompProfile.type", "Unconfined seccomp is not allowed"))
    se = _d(sc.get("seLinuxOptions"))
    if se.get("user") or se.get("role") or se.get("type") not in SELINUX_TYPES:
        out.append((f"{path}.seLinuxOptions", "custom SELinux user, role or type is not allowed"))
    if _d(sc.get("appArmorProfile")).get("type") == "Unconfined":
        out.append((f"{path}.appArmorProfile.type", "Unconfined AppArmor is not allowed"))
    return out


def pod_violations(path: str, pod: Any) -> list[tuple[str, str]]:
    """(field path, message) for each baseline violation of a pod spec at ``path``."""
    spec = _d(pod)
    out: list[tuple[str, str]] = []
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field) is True:
            out.append((f"{path}.{field}", f"{field} shares the node's namespaces (Pod Security baseline)"))
    account = spec.get("serviceAccountName") or spec.get("serviceAccount") or ""
    if account not in DEFAULT_SERVICE_ACCOUNTS:
        out.append(
            (
                f"{path}.serviceAccountName",
                f"runs as ServiceAccount {str(account)[:64]!r}; only default is allowed",
            )
        )
    psc = _d(spec.get("securityContext"))
    out += _security_context(f"{path}.securityContext", psc)
    for sysctl in _l(psc.get("sysctls")):
        name = _d(sysctl).get("name")
        if name not in SAFE_SYSCTLS:
            out.append(
                (f"{path}.securityContext.sysctls", f"sysctl {str(name)[:64]!r} is not in the safe set")
            )
    for i, volume in enumerate(_l(spec.get("volumes"))):
        out += volume_violation(f"{path}.volumes[{i}]", volume)
    for group in ("initContainers", "containers", "ephemeralContainers"):
        for i, c in enumerate(_l(spec.get(group))):
            cpath = f"{path}.{group}[{i}]"
            sc = _d(_d(c).get("securityContext"))
            if sc.get("privileged") is True:
                out.append((f"{cpath}.securityContext.privileged", "privileged containers are not allowed"))
            added = [str(a) for a in _l(_d(sc.get("capabilities")).get("add"))]
            extra = sorted({a.upper().removeprefix("CAP_") for a in added} - BASELINE_CAPABILITIES)
            if extra:
                out.append((f"{cpath}.securityContext.capabilities.add", f"adds {', '.join(extra)[:120]}"))
            if sc.get("procMount") not in (None, "Default"):
                out.append((f"{cpath}.securityContext.procMount", "only the Default procMount is allowed"))
            out += _security_context(f"{cpath}.securityContext", sc)
            for j, port in enumerate(_l(_d(c).get("ports"))):
                if _d(port).get("hostPort"):
                    out.append((f"{cpath}.ports[{j}].hostPort", "host ports are not allowed"))
    return out


def workspace_violations(ws: dict[str, Any]) -> list[tuple[str, str]]:
    """Baseline violations of a Workspace: its inference template and every volume source it names."""
    out: list[tuple[str, str]] = []
    inference, tuning = _d(ws.get("inference")), _d(ws.get("tuning"))
    template = inference.get("template")
    if isinstance(template, dict):
        out += pod_violations("inference.template.spec", template.get("spec"))
    for i, adapter in enumerate(_l(inference.get("adapters"))):
        source = _d(_d(adapter).get("source"))
        out += volume_violation(f"inference.adapters[{i}].source.volumeSource", source.get("volumeSource"))
    for side in ("input", "output"):
        out += volume_violation(f"tuning.{side}.volumeSource", _d(tuning.get(side)).get("volumeSource"))
    return out


def namespace_allows(namespace_obj: dict[str, Any] | None) -> bool:
    annotations = _d(_d(_d(namespace_obj).get("metadata")).get("annotations"))
    return annotations.get(ALLOW_ANNOTATION) == "true"
