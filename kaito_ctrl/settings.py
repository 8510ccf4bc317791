"""Process settings from command-line flags and environment variables.

Every field has a flag (``--metrics-bind-address``) and an environment variable
(``KAITO_METRICS_BIND_ADDRESS``); a flag wins over the environment, the environment over the default.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

NodeProvisionerMode = Literal["nodeclaim", "machine", "byo"]
ENV_PREFIX = "KAITO_"


@dataclass
class Settings:
    kubeconfig: str | None = field(default=None, metadata={"help": "kubeconfig path (default: in-cluster)"})
    namespace: str = field(
        default="kaito-system", metadata={"help": "namespace of the controller's own objects"}
    )
    watch_namespace: str | None = field(
        default=None, metadata={"help": "reconcile Workspaces in this namespace only (default: all)"}
    )
    controllers: str = field(
        default="workspace,provisioner", metadata={"help": "comma-separated controllers to run"}
    )
    node_provisioner: NodeProvisionerMode = field(
        default="nodeclaim", metadata={"help": "how GPU nodes are requested: nodeclaim, machine or byo"}
    )
    node_class_group: str = field(
        default="kaito.sh", metadata={"help": "API group of the node class NodeClaims reference"}
    )
    node_class_kind: str = field(
        default="KaitoNodeClass",
        metadata={"help": "kind of the node class NodeClaims reference (e.g. KWOKNodeClass)"},
    )
    node_class_name: str = field(
        default="default", metadata={"help": "name of the node class NodeClaims reference"}
    )
    leader_elect: bool = field(
        default=True, metadata={"help": "run controllers only while holding the Lease"}
    )
    leader_election_id: str = field(
        default="kaito-ctrl-leader", metadata={"help": "name of the leader Lease"}
    )
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    release_on_cancel: bool = True
    metrics_bind_address: str = field(default="0.0.0.0:8080", metadata={"help": "host:port for /metrics"})
    health_probe_bind_address: str = field(default="0.0.0.0:8081", metadata={"help": "host:port for probes"})
    webhook: bool = field(default=True, metadata={"help": "serve the admission webhook"})
    webhook_port: int = 9443
    webhook_service: str = "kaito-ctrl-webhook"
    webhook_url_host: str | None = field(
        default=None, metadata={"help": "register the webhook by URL https://HOST:PORT (local clusters)"}
    )
    # Workspaces reconciled at once (coroutines that mostly wait on the apiserver). 16 settled 500 new Workspaces
    # faster than 4 on an idle apiserver (38.5-40.8 against 29.5-33.2/s), but in `make bench` (2026-12-04), with
    # kube-controller-manager making their pods, a raw client with 16 in flight gained far more from it than
    # kaito-ctrl did (P4 1.55x, against 1.00x with 4 each); 4 is kept. Kaito's Go controller runs 5 goroutines.
    workspace_workers: int = field(default=4, metadata={"help": "Workspaces reconciled concurrently"})
    provisioner_workers: int = 4
    sync_timeout: float = 60.0
    # -1: no client-side limit, as controller-runtime since v0.21 (SIG API Machinery's advice): the apiserver's
    # API Priority and Fairness paces this process and its 429s are waited out as told (kube/retryafter.py).
    # Where the apiserver answers without APF, the client falls back to Karpenter's 200 qps / burst 300.
    kube_client_qps: float = field(
        default=-1.0,
        metadata={
            "help": "apiserver requests per second this process may send (token bucket); -1: no client-side "
            "limit, the apiserver's API Priority and Fairness paces it (200 if the apiserver has none)"
        },
    )
    kube_client_burst: int = field(
        default=300, metadata={"help": "requests this process may send at once above the qps rate"}
    )
    image_registry: str = field(
        default="mcr.microsoft.com/aks/kaito", metadata={"help": "preset image registry"}
    )
    deletion_timeout: float = field(default=300.0, metadata={"help": "bound on waiting for node objects"})
    launch_timeout: float = 1800.0
    registration_timeout: float = 1800.0
    gc_interval: float = 120.0
    gc_grace_period: float = 300.0
    claim_selector: str | None = field(
        default=None,
        metadata={"help": "serve only claims matching this label selector (default: all Kaito's)"},
    )
    cloud_backoff_base: float = field(default=2.0, metadata={"help": "first delay after a failed cloud call"})
    cloud_backoff_cap: float = field(default=300.0, metadata={"help": "longest delay between cloud retries"})
    capacity_check: bool = field(
        default=True, metadata={"help": "check quota and SKU before creating a pool"}
    )
    cluster_cidrs: str = field(
        default="",
        metadata={
            "help": "comma-separated pod and service CIDRs outside the private ranges, also denied to tuning pods' "
            "egress (private, link-local and the Azure WireServer always are)"
        },
    )
    pod_security_baseline: bool = field(
        default=True,
        metadata={
            "help": "refuse Workspaces whose inference.template or volume sources break Pod Security baseline, "
            "unless their namespace is annotated kaito.sh/allow-privileged-workloads=true"
        },
    )
    log_level: str = "info"
    log_format: str = "auto"

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        for f in dataclasses.fields(cls):
            flag = "--" + f.name.replace("_", "-")
            help_ = str(f.metadata.get("help", ""))
            if f.type in ("bool", bool):
                parser.add_argument(
                    flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_
                )
            else:
                choices = get_args(NodeProvisionerMode) if f.name == "node_provisioner" else None
                parser.add_argument(flag, dest=f.name, default=None, choices=choices, help=help_)

    @classmethod
    def from_sources(
        cls, args: argparse.Namespace | None = None, env: dict[str, str] | None = None
    ) -> Settings:
        env = dict(os.environ) if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw: Any = getattr(args, f.name, None) if args is not None else None
            if raw is None:
                raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is None:
                continue
            try:
                values[f.name] = _coerce(f, raw)
            except ValueError as e:
                raise ValueError(f"{_names(f.name)}: {e}") from None
        settings = cls(**values)
        for name in ("node_class_group", "node_class_kind", "node_class_name"):
            if not getattr(settings, name).strip():
                raise ValueError(f"--{name.replace('_', '-')} must not be empty")
        if settings.kubeconfig is None and env.get("KUBECONFIG"):
            settings.kubeconfig = env["KUBECONFIG"]
        settings.validate()
        return settings

    def validate(self) -> None:
        """Refuse values no process can run with, naming the flag and its environment variable."""
        if not (
            math.isfinite(self.kube_client_qps) and (self.kube_client_qps > 0 or self.kube_client_qps == -1)
        ):
            raise ValueError(
                f"{_names('kube_client_qps')}: must be > 0, or -1 for no client-side limit, "
                f"not {self.kube_client_qps}"
            )
        if self.kube_client_burst < 1:
            raise ValueError(f"{_names('kube_client_burst')}: must be >= 1, not {self.kube_client_burst}")
        for name in ("workspace_workers", "provisioner_workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{_names(name)}: must be >= 1, not {getattr(self, name)}")


def _names(name: str) -> str:
    return f"--{name.replace('_', '-')} ({ENV_PREFIX}{name.upper()})"


def node_class_ref(settings: Settings) -> tuple[str, str, str]:
    """(group, kind, name) of the node class every NodeClaim references."""
    return (settings.node_class_group, settings.node_class_kind, settings.node_class_name)


def _coerce(f: dataclasses.Field[Any], raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    kind = str(f.type)
    if kind == "bool":
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if kind == "int":
        return int(raw)
    if kind == "float":
        return float(raw)
    if f.name == "node_provisioner" and raw not in get_args(NodeProvisionerMode):
        raise ValueError(f"node provisioner must be one of {get_args(NodeProvisionerMode)}, not {raw!r}")
    return raw
