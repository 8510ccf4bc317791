"""The real Karpenter (its kwok provider, built by ``hack/build-karpenter.sh``) as the sandbox's node
provisioner: what it needs besides the NodeClaims kaito-ctrl creates, and the process itself.

Karpenter launches a NodeClaim only when it can resolve three things, which the sandbox sets up:

* the node class the claim references (a ``KWOKNodeClass``; kaito-ctrl runs with ``--node-class-*``
  pointing at it),
* the NodePool named by the claim's ``karpenter.sh/nodepool`` requirement (``kaito``), and
* an instance type named by its ``node.kubernetes.io/instance-type`` requirement. The kwok provider reads
  its catalogue from the JSON file named by ``INSTANCE_TYPES_FILE_PATH``; the sandbox writes one with
  the Azure GPU SKUs of kaito-ctrl's catalogue, each offering ``nvidia.com/gpu``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaito_ctrl.api.catalog import GpuSku, catalog
from kaito_ctrl.sandbox.stack import terminate
from kaito_ctrl.testing.binaries import KARPENTER_BINARY
from kaito_ctrl.testing.controlplane import ControlPlane, free_port

NODE_CLASS = ("karpenter.kwok.sh", "KWOKNodeClass", "default")
NODEPOOL = "kaito"  # the value kaito-ctrl puts in every claim's karpenter.sh/nodepool requirement
ZONE = "sandbox-zone-1"
# The unsatisfiable-claim demo: a catalogue SKU (so the webhook accepts it) this sandbox does not offer.
WITHHELD_SKU = "Standard_ND96isr_H200_v5"


def _vcpus(sku: GpuSku) -> int:
    """Azure names carry the vCPU count after the family letters (NC *24* ads_A100_v4)."""
    m = re.match(r"Standard_[A-Z]+?(\d+)", sku.name)
    return int(m.group(1)) if m else 8 * sku.gpu_count


def instance_types() -> list[dict[str, Any]]:
    """The kwok provider's instance-type file: every Azure GPU SKU of the catalogue but ``WITHHELD_SKU``,
    one on-demand offering in one zone. CPU follows the SKU name; memory (8 GiB per vCPU) and price
    (one per GPU) are simulated, since nothing in the sandbox depends on them."""
    out = []
    for sku in sorted(catalog().skus.values(), key=lambda s: s.name):
        if sku.cloud != "azure" or sku.name == WITHHELD_SKU:
            continue
        cpu = _vcpus(sku)
        out.append(
            {
                "name": sku.name,
                "architecture": "amd64",
                "operatingSystems": ["linux"],
                "resources": {
                    "cpu": str(cpu),
                    "memory": f"{8 * cpu}Gi",
                    "pods": "110",
                    "ephemeral-storage": "2Ti",
                    "nvidia.com/gpu": str(sku.gpu_count),
                },
                "offerings": [
                    {
                        "Price": float(sku.gpu_count),
                        "Available": True,
                        "Requirements": [
                            {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]},
                            {"key": "topology.kubernetes.io/zone", "operator": "In", "values": [ZONE]},
                        ],
                    }
                ],
            }
        )
    return out


def setup_objects() -> list[dict[str, Any]]:
    """The KWOKNodeClass the claims reference and the NodePool they name. The NodePool offers no
    kaito.sh/workspace label, so Karpenter's own provisioner never makes nodes for Kaito's pending pods
    (kaito-ctrl asks for those by NodeClaim); it never consolidates or expires them either."""
    group, kind, name = NODE_CLASS
    return [
        {"apiVersion": f"{group}/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": {}},
        {
            "apiVersion": "karpenter.sh/v1",
            "kind": "NodePool",
            "metadata": {"name": NODEPOOL},
            "spec": {
                "template": {
                    "spec": {
                        "nodeClassRef": {"group": group, "kind": kind, "name": name},
                        "requirements": [
                            {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
                        ],
                        "expireAfter": "Never",
                    }
                },
                "disruption": {"consolidationPolicy": "WhenEmpty", "consolidateAfter": "Never"},
            },
        },
    ]


def install(cp: ControlPlane, karpenter_dir: Path) -> None:
    """Karpenter's own CRDs (replacing kaito-ctrl's NodeClaim CRD: the real one wins), then its objects."""
    for crd in sorted((karpenter_dir / "crds").glob("*.yaml")):
        cp.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
    cp.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        "crd/nodepools.karpenter.sh", "crd/kwoknodeclasses.karpenter.kwok.sh", "crd/nodeclaims.karpenter.sh",
    )  # fmt: skip
    cp.apply_objects(setup_objects())


@dataclass
class KarpenterProcess:
    """``karpenter-kwok`` as a local process using the admin kubeconfig of the sandbox apiserver.

    Karpenter binds its metrics and probe ports on all interfaces (``:PORT``); the sandbox gives it
    free ports and the machine is loopback-only. Leader election is off: there is one replica."""

    karpenter_dir: Path
    workdir: Path
    kubeconfig: str
    metrics_port: int = field(default_factory=free_port)
    probe_port: int = field(default_factory=free_port)
    popen: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "karpenter.log"

    @property
    def instance_types_file(self) -> Path:
        return self.workdir / "karpenter-instance-types.json"

    def env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", "/"),
            "KUBECONFIG": self.kubeconfig,
            "INSTANCE_TYPES_FILE_PATH": str(self.instance_types_file),
            "METRICS_PORT": str(self.metrics_port),
            "HEALTH_PROBE_PORT": str(self.probe_port),
            "DISABLE_LEADER_ELECTION": "true",
            "SYSTEM_NAMESPACE": "kube-system",
            "LOG_LEVEL": "info",
            # A cluster with only kwok nodes: no pods of Karpenter's own to schedule anywhere.
            "BATCH_MAX_DURATION": "2s",
            "BATCH_IDLE_DURATION": "500ms",
        }

    def start(self, timeout: float = 90) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.instance_types_file.write_text(json.dumps(instance_types(), indent=1))
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            [str(self.karpenter_dir / KARPENTER_BINARY)],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"karpenter exited with {self.popen.returncode}:\n{tail}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.probe_port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)  # polling interval of a deadline-bounded wait
        raise TimeoutError(f"karpenter did not become ready; see {self.log_path}")

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self) -> None:
        terminate(self.popen)

    def info(self) -> dict[str, Any]:
        return {
            "pid": self.popen.pid if self.popen else None,
            "metrics": f"http://127.0.0.1:{self.metrics_port}/metrics",
            "log": str(self.log_path),
            "instance_types": str(self.instance_types_file),
            "node_class": "/".join(NODE_CLASS),
            "nodepool": NODEPOOL,
        }
