"""Pod hardening shared by every rendered workload: helper containers run without privilege escalation or
capabilities under the runtime's default seccomp profile, pods do not mount the namespace's service-account
token (nothing in them calls the Kubernetes API), and the shared-memory volume has a size limit so one pod
cannot exhaust the node's memory through /dev/shm."""

from __future__ import annotations

from typing import Any

HELPER_SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
# vLLM and torch.distributed use /dev/shm for NCCL buffers and dataloader workers; 16 GiB covers the presets.
DSHM_SIZE = "16Gi"


def hardening_values() -> dict[str, Any]:
    """Template values for the hardened lines of every workload template."""
    return {"helper_security": HELPER_SECURITY_CONTEXT, "dshm_size": DSHM_SIZE}
