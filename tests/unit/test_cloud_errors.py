"""ARM error bodies (nested and flat, as AKS returns them) classified into reasons users can act on."""

from __future__ import annotations

from typing import Any

import pytest

from kaito_ctrl.controllers.provisioner.cloud.errors import classify

QUOTA_MSG = (
    "Operation could not be completed as it results in exceeding approved standardNCSv3Family Cores quota. "
    "Additional details - Deployment Model: Resource Manager, Location: eastus, Current Limit: 6, Current Usage: 6, "
    "Additional Required: 6, (Minimum) New Limit Required: 12."
)

CASES: list[tuple[str, int, Any, str, bool]] = [
    (
        "crp quota as OperationNotAllowed",
        409,
        {"error": {"code": "OperationNotAllowed", "message": QUOTA_MSG}},
        "QuotaExceeded",
        False,
    ),
    (
        "aks QuotaExceeded nested",
        400,
        {
            "error": {
                "code": "InvalidTemplateDeployment",
                "message": "The template deployment failed",
                "details": [
                    {"code": "QuotaExceeded", "message": "Preflight validation check for resource(s) failed"}
                ],
            }
        },
        "QuotaExceeded",
        False,
    ),
    (
        "sku not available",
        400,
        {
            "error": {
                "code": "SkuNotAvailable",
                "message": "The requested VM size Standard_NC12s_v3 is currently not available in location 'westus'.",
            }
        },
        "SKUNotAvailable",
        False,
    ),
    (
        "allocation failed in a failed operation",
        200,
        {
            "error": {
                "code": "AllocationFailed",
                "message": "Allocation failed. We do not have sufficient capacity for the requested VM size in this region.",
            }
        },
        "AllocationFailed",
        True,
    ),
    (
        "zonal allocation",
        200,
        {"error": {"code": "ZonalAllocationFailed", "message": "Allocation failed in zone 1."}},
        "AllocationFailed",
        True,
    ),
    (
        "overconstrained",
        200,
        {"error": {"code": "OverconstrainedAllocationRequest", "message": "Allocation failed."}},
        "AllocationFailed",
        True,
    ),
    (
        "operation in progress",
        409,
        {
            "error": {
                "code": "OperationNotAllowed",
                "message": "Operation is not allowed: Another agentpool operation (ws1 - Creating) is in progress, please wait for it to finish before starting a new operation.",
            }
        },
        "OperationInProgress",
        True,
    ),
    (
        "flat BadRequest",
        400,
        {
            "code": "BadRequest",
            "details": None,
            "message": "The value of parameter agentPoolProfile.vmSize is invalid.",
            "subcode": "",
        },
        "InvalidParameter",
        False,
    ),
    (
        "invalid parameter",
        400,
        {"error": {"code": "InvalidParameter", "message": "Required parameter 'count' is missing (null)."}},
        "InvalidParameter",
        False,
    ),
    ("not found", 404, {"error": {"code": "NotFound", "message": "Agent Pool not found"}}, "NotFound", True),
    (
        "throttled",
        429,
        {"error": {"code": "TooManyRequests", "message": "Too many requests."}},
        "Throttled",
        True,
    ),
    (
        "server error",
        503,
        {"error": {"code": "ServiceUnavailable", "message": "The service is unavailable."}},
        "Transient",
        True,
    ),
    ("empty 500", 500, None, "Transient", True),
    (
        "other conflict",
        409,
        {"error": {"code": "OperationNotAllowed", "message": "The cluster is being upgraded."}},
        "OperationNotAllowed",
        False,
    ),
]


@pytest.mark.parametrize(("name", "status", "body", "reason", "retryable"), CASES, ids=[c[0] for c in CASES])
def test_classification(name: str, status: int, body: Any, reason: str, retryable: bool) -> None:
    err = classify(status, body, retry_after=7.0)
    assert err.reason == reason
    assert err.retryable is retryable
    assert err.retry_after == 7.0
    if body:
        # The Azure words are kept for the condition message.
        inner = body.get("error", body)
        assert inner["message"] in err.message
        assert err.code


def test_quota_message_keeps_the_numbers_users_need() -> None:
    err = classify(409, {"error": {"code": "OperationNotAllowed", "message": QUOTA_MSG}})
    assert "Current Limit: 6" in str(err) and "standardNCSv3Family" in str(err)
