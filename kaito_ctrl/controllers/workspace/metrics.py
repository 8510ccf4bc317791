"""Kaito's own metrics, beside controller-runtime's: workspaces by phase, and how long each phase took."""

from __future__ import annotations

from prometheus_client import Gauge, Histogram

from kaito_ctrl.metrics import REGISTRY

WORKSPACE_COUNT = Gauge(
    "kaito_workspace_count",
    "Number of Workspaces by state (Pending, Ready, NotReady, Running, Succeeded, Failed) and mode.",
    ["phase", "mode"],
    registry=REGISTRY,
)
TIME_TO_READY = Histogram(
    "kaito_workspace_time_to_ready_seconds",
    "Seconds from Workspace creation until a phase was first reached: nodes (ResourceReady), workload "
    "(InferenceReady or JobStarted) and ready (WorkspaceSucceeded).",
    ["phase"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200),
    registry=REGISTRY,
)
