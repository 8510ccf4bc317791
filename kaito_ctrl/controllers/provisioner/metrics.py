"""The node provisioner's own metrics, beside controller-runtime's."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from kaito_ctrl.metrics import REGISTRY

CLOUD_ERRORS = Counter(
    "kaito_provisioner_cloud_errors_total",
    "Failed cloud calls by operation (create, delete, capacity, list) and reason (QuotaExceeded, Throttled, ...).",
    ["operation", "reason"],
    registry=REGISTRY,
)
CAPACITY_CHECK_SKIPPED = Counter(
    "kaito_provisioner_capacity_check_skipped_total",
    "Quota and SKU pre-checks skipped because the lookup failed for a reason other than capacity (403, throttling).",
    ["reason"],
    registry=REGISTRY,
)
CLOUD_OPERATION_SECONDS = Histogram(
    "kaito_provisioner_cloud_operation_seconds",
    "Seconds an agent pool create or delete took, from the request to the end of the operation.",
    ["operation", "outcome"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 900, 1800),
    registry=REGISTRY,
)
OPERATIONS_IN_FLIGHT = Gauge(
    "kaito_provisioner_cloud_operations_in_flight",
    "Agent pool creates and deletes being waited on.",
    registry=REGISTRY,
)
LIFECYCLE_SECONDS = Histogram(
    "kaito_provisioner_nodeclaim_phase_seconds",
    "Seconds from claim creation until it was Launched, Registered, Initialized.",
    ["kind", "phase"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 900, 1800),
    registry=REGISTRY,
)
GARBAGE_COLLECTED = Counter(
    "kaito_provisioner_garbage_collected_total",
    "What garbage collection removed: orphan agent pools, claims whose pool vanished, stuck Node finalizers.",
    ["what"],
    registry=REGISTRY,
)
